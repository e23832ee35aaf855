"""Helpers shared by Plugboard's Python plugins: plugin-errors, input
parsing, and JSON text written the way the Rust plugins write it.

componentize-py maps a world export's `result<_, plugin-error>` to an
exception: raising `Err(PluginError(...))` is the `err` case; any other
exception traps, which the host reports as a plugin bug (`plugin_crashed`).
`reported` turns a `Failure` raised anywhere below an export into the
`plugin-error`.
"""

import functools
import json

from componentize_py_types import Err
from wit_world.imports.plugin_types import Operation, PluginError


class Failure(Exception):
    """A failure reported on purpose: the fields of a `plugin-error`."""

    def __init__(self, code, message, retryable=False, details=None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable
        self.details = details

    def plugin_error(self):
        """The contract's `plugin-error`, `details` as JSON text."""
        details = None if self.details is None else to_json(self.details)
        return PluginError(self.code, self.message, self.retryable, details)


def invalid_input(message):
    """The input document is malformed or misses a field."""
    return Failure("invalid_input", message)


def invalid_config(message):
    """The plugin's configuration is unusable."""
    return Failure("invalid_config", message)


def reported(export):
    """Decorate a world export so that a raised `Failure` becomes its `plugin-error`."""

    @functools.wraps(export)
    def wrapper(*args):
        try:
            return export(*args)
        except Failure as failure:
            raise Err(failure.plugin_error()) from None

    return wrapper


def _refuse_constant(name):
    raise ValueError(f"`{name}` is not JSON")


def parse_json(text):
    """Strict JSON, as serde_json reads it (no `NaN` or `Infinity`)."""
    return json.loads(text, parse_constant=_refuse_constant)


def parse_input(text):
    """Parse the input document, failing with `invalid_input` when it is not JSON."""
    try:
        return parse_json(text)
    except ValueError as error:
        raise invalid_input(f"input is not JSON: {error}") from None


def to_json(value):
    """Compact JSON text with sorted keys, as serde_json writes it."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def operation(name, description, input_schema=None, output_schema=None):
    """A manifest operation; schemas are JSON values, turned into JSON text."""
    return Operation(name, description, _json_or_none(input_schema), _json_or_none(output_schema))


def _json_or_none(value):
    return None if value is None else to_json(value)
