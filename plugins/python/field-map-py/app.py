"""`py-field-map`: a Python processor that reshapes a JSON document like the
Rust `field-map`: each mapping of its configuration copies the value at one
JSON Pointer of the input to another pointer of the output.

Configuration: `{"mappings": [{"from", "to", "default"?, "required"?,
"transform"?}], "keep_unmapped": false}`.
"""

import copy
import math
import re

import pointer
import wit_world
from plugboard_guest import Failure, invalid_config, invalid_input, parse_input, parse_json, reported, to_json
from wit_world.imports import config
from wit_world.imports.plugin_types import Manifest

CONFIG_FIELDS = ["mappings", "keep_unmapped"]
MAPPING_FIELDS = ["from", "to", "default", "required", "transform"]


class WitWorld(wit_world.WitWorld):
    def describe(self):
        return Manifest(
            name="py-field-map",
            version="0.1.0",
            description="Reshapes a JSON document: each configured mapping copies the value at a JSON "
            "Pointer of the input to a JSON Pointer of the output, with an optional default, a required "
            "flag and a transform.",
            operations=[],
            credential_slots=[],
        )

    @reported
    def process(self, input):
        mappings, keep_unmapped = parse_config(config.get_json())
        return to_json(apply(mappings, keep_unmapped, parse_input(input)))


def parse_config(text):
    """The checked mappings and `keep_unmapped` of the configuration JSON text."""
    try:
        value = parse_json(text)
    except ValueError as error:
        raise invalid_config(f"invalid configuration: {error}") from None
    check_fields(value, CONFIG_FIELDS, "configuration")
    if "mappings" not in value:
        raise invalid_config("invalid configuration: missing field `mappings`")
    if not isinstance(value["mappings"], list):
        raise invalid_config("invalid configuration: `mappings` must be a list")
    keep_unmapped = value.get("keep_unmapped", False)
    if not isinstance(keep_unmapped, bool):
        raise invalid_config("invalid configuration: `keep_unmapped` must be `true` or `false`")
    return [Mapping.parse(item) for item in value["mappings"]], keep_unmapped


def check_fields(value, known, what):
    if not isinstance(value, dict):
        raise invalid_config(f"invalid configuration: the {what} must be an object, not `{to_json(value)}`")
    for key in value:
        if key not in known:
            expected = ", ".join(f"`{name}`" for name in known)
            raise invalid_config(f"invalid configuration: unknown field `{key}`, expected one of {expected}")


def apply(mappings, keep_unmapped, document):
    """The output document for `document`."""
    values = [mapping.value(document) for mapping in mappings]
    output = unmapped(mappings, document) if keep_unmapped else {}
    for mapping, value in zip(mappings, values):
        if value is not pointer.MISSING:
            try:
                output = pointer.write(output, mapping.target, value)
            except ValueError as error:
                raise Failure("mapping_conflict", str(error)) from None
    return output


def unmapped(mappings, document):
    """`document` without the values the mappings move elsewhere."""
    for mapping in mappings:
        pointer.remove(document, mapping.source)
    return document


class Mapping:
    """One `from` -> `to` copy."""

    def __init__(self, source, target, default, required, transform):
        self.source = source
        self.target = target
        self.default = default
        self.required = required
        self.transform = transform

    @staticmethod
    def parse(value):
        check_fields(value, MAPPING_FIELDS, "mapping")
        for key in ("from", "to"):
            if not isinstance(value.get(key), str):
                raise invalid_config(f"invalid configuration: a mapping needs the string field `{key}`")
            problem = pointer.check(value[key])
            if problem:
                raise invalid_config(problem)
        required = value.get("required", False)
        if not isinstance(required, bool):
            raise invalid_config("invalid configuration: `required` must be `true` or `false`")
        transform = value.get("transform")
        if transform is not None and transform not in TRANSFORMS:
            expected = ", ".join(f"`{name}`" for name in TRANSFORMS)
            raise invalid_config(f"invalid configuration: unknown transform `{transform}`, expected one of {expected}")
        default = value.get("default", pointer.MISSING)
        return Mapping(value["from"], value["to"], default, required, transform)

    def value(self, document):
        """The value to write at `to`, or `MISSING` to leave it out."""
        found = pointer.read(document, self.source)
        if found is not pointer.MISSING:
            return self.transformed(copy.deepcopy(found))
        if self.default is not pointer.MISSING:
            return copy.deepcopy(self.default)
        if self.required:
            raise Failure("missing_field", f"required field `{self.source}` is missing from the input")
        return pointer.MISSING

    def transformed(self, value):
        if self.transform is None:
            return value
        result = TRANSFORMS[self.transform](value)
        if result is pointer.MISSING:
            raise invalid_input(f"cannot apply `{self.transform}` to `{to_json(value)}` at `{self.source}`")
        return result


def strings_only(change):
    """A transform applying `change` to strings and to nothing else."""
    return lambda value: change(value) if isinstance(value, str) else pointer.MISSING


def to_string(value):
    return value if isinstance(value, str) else to_json(value)


def to_number(value):
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        return parse_number(value.strip())
    return pointer.MISSING


def parse_number(text):
    """`"42"` -> `42`, `"1.5"` -> `1.5`, as Rust parses `i64` then `f64`; `MISSING` otherwise."""
    if re.fullmatch(r"[+-]?[0-9]+", text) and -(2**63) <= int(text) < 2**63:
        return int(text)
    if re.fullmatch(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?", text):
        number = float(text)
        return number if math.isfinite(number) else pointer.MISSING
    return pointer.MISSING


# What each transform does; `MISSING` when it does not apply to the value.
TRANSFORMS = {
    "lowercase": strings_only(str.lower),
    "uppercase": strings_only(str.upper),
    "trim": strings_only(str.strip),
    "to_string": to_string,
    "to_number": to_number,
}
