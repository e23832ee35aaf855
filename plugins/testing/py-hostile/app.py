"""`py-hostile`: a test fixture for the host's test suite, in Python. Each
operation does one hostile or probing thing (spin, exhaust memory, read
files and the environment, call out anywhere) so that the tests can prove
the host contains a Python runtime as it contains Rust. Not a product
plugin: never ship it.
"""

import os

import wit_world
from componentize_py_types import Err
from plugboard_guest import Failure, operation, parse_input, reported, to_json
from wit_world.imports import callout
from wit_world.imports.plugin_types import CredentialSlot, Manifest

# Size of one allocation of `grow`.
MIB = 1024 * 1024


def spin(_input, _context):
    counter = 0
    while True:
        counter = (counter + 1) & 0xFFFF


def grow(_input, _context):
    chunks = []
    while True:
        chunks.append(bytearray(b"\xa5" * MIB))


def read_file(input, _context):
    """Try to read a file and to list `/`; `ok:<n>` or `err:<message>` for each."""
    path = input.get("path", "/etc/passwd") if isinstance(input, dict) else "/etc/passwd"
    return {"file": outcome(file_length, path), "root": outcome(lambda: len(os.listdir("/")))}


def file_length(path):
    with open(path) as file:
        return len(file.read())


def outcome(attempt, *args):
    try:
        return f"ok:{attempt(*args)}"
    except OSError as error:
        return f"err:{error}"


def read_env(_input, _context):
    return {"vars": dict(os.environ)}


def send(input, _context):
    """Send the input as a callout; `{"ok": ...}` or `{"err": {"kind", "detail"}}`, never a plugin-error."""
    input = input if isinstance(input, dict) else {}
    body = input.get("body")
    request = callout.Request(
        input.get("credential", "api"),
        input.get("method", "GET"),
        input.get("path", "/"),
        [tuple(pair) for pair in input.get("headers", [])],
        None if body is None else body.encode(),
        input.get("timeout_ms"),
    )
    try:
        response = callout.send(request)
    except Err as error:
        kind = type(error.value).__name__.removeprefix("CalloutError_")
        return {"err": {"kind": KINDS[kind], "detail": error.value.value}}
    body = response.body.decode(errors="replace")
    return {"ok": {"status": response.status, "headers": response.headers, "body": body}}


def echo(input, context):
    return {"run_id": context.run_id, "input": input}


# Callout error variants as the contract spells them.
KINDS = {
    "UnboundSlot": "unbound-slot",
    "Denied": "denied",
    "BudgetExhausted": "budget-exhausted",
    "Timeout": "timeout",
    "TooLarge": "too-large",
    "Unreachable": "unreachable",
}

# Every operation: description and function.
OPERATIONS = {
    "spin": ("loop forever", spin),
    "grow": ("allocate 1 MiB byte arrays until allocation fails", grow),
    "read-file": ("try to read `path` (default `/etc/passwd`) and to list `/`", read_file),
    "read-env": ("return the environment variables", read_env),
    "callout": ("send the input as a callout request and return what came back", send),
    "echo": ("return the run id and the input", echo),
}


class WitWorld(wit_world.WitWorld):
    def describe(self):
        return Manifest(
            name="py-hostile",
            version="0.1.0",
            description="Test fixture: each operation misbehaves or probes the sandbox on purpose.",
            operations=[operation(name, description) for name, (description, _) in OPERATIONS.items()],
            credential_slots=[
                CredentialSlot("api", "the API probed by callouts", False),
                CredentialSlot("other", "a second slot", False),
            ],
        )

    @reported
    def invoke(self, context, name, input):
        if name not in OPERATIONS:
            raise Failure("unknown_operation", f"unknown operation `{name}`")
        return to_json(OPERATIONS[name][1](parse_input(input), context))

    def test_connection(self):
        pass
