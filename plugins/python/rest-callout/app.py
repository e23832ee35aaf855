"""`py-rest`: a Python connector that calls a JSON REST API through the
host's `callout` interface, addressing the credential slot `api`.

Operations `get`, `post`, `put`, `patch` and `delete` take
`{"path", "query"?, "headers"?, "body"?}` and return
`{"status", "headers", "body"}`, with the same error codes as the Rust
`rest-json`.
"""

import plugboard_http as http
import wit_world
from componentize_py_types import Err
from plugboard_guest import parse_input, reported, to_json
from wit_world.imports import callout, config, log
from wit_world.imports.plugin_types import CredentialSlot, Manifest

# The one credential slot this connector calls.
SLOT = "api"
# The operations this connector offers.
OFFERED = ["get", "post", "put", "patch", "delete"]


class WitWorld(wit_world.WitWorld):
    def describe(self):
        return Manifest(
            name="py-rest",
            version="0.1.0",
            description="Calls a JSON REST API through the `api` credential slot with the `callout` "
            "interface: one operation per HTTP method, JSON bodies in and out, upstream failures "
            "reported as plugin-errors.",
            operations=http.operations(OFFERED),
            credential_slots=[CredentialSlot(SLOT, "the REST API to call", True)],
        )

    @reported
    def invoke(self, context, operation, input):
        method = http.method_for(operation, OFFERED)
        request = http.Request.parse(method, parse_input(input))
        target = request.target(http.base_path(config.get("base_path")))
        call = request.into_call(method, target, context.run_id)
        return to_json(send(call).output(call))

    @reported
    def test_connection(self):
        call = http.Call("GET", http.health_path(config.get("health_path")))
        send(call).check_health(call)


def send(call):
    """Send `call` through the slot and log one line about the outcome."""
    request = callout.Request(SLOT, call.method, call.target, call.headers, call.body, None)
    try:
        response = callout.send(request)
    except Err as error:
        log.log(log.Level.INFO, http.log_line(call, error.value))
        raise http.upstream_failure(error.value, call) from None
    reply = http.Reply(response.status, response.headers, response.body)
    log.log(log.Level.INFO, http.log_line(call, reply))
    return reply
