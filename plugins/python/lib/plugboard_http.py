"""The HTTP side of a JSON REST connector, written to behave exactly like
the Rust plugins' `common::http` (plugins/common/src/http.rs): the operations
and their schemas, turning an input document into a `Call`, turning a
`Reply` into the output document, and mapping callout errors to
plugin-errors.
"""

from dataclasses import dataclass, field

from plugboard_guest import Failure, invalid_config, invalid_input, operation, parse_json, to_json

# The operations an HTTP connector may offer: name, method, description.
OPERATIONS = [
    ("get", "GET", "send a GET request and return the answer"),
    ("post", "POST", "send a POST request with an optional JSON body"),
    ("put", "PUT", "send a PUT request with an optional JSON body"),
    ("patch", "PATCH", "send a PATCH request with an optional JSON body"),
    ("delete", "DELETE", "send a DELETE request with an optional JSON body"),
]

# The fields of an operation's input.
FIELDS = ["path", "query", "headers", "body"]

OUTPUT_SCHEMA = {
    "type": "object",
    "properties": {
        "status": {"type": "integer"},
        "headers": {"type": "object", "additionalProperties": {"type": "string"}},
        "body": {"description": "parsed JSON when the answer is JSON, else text"},
    },
    "required": ["status", "headers", "body"],
}

# Callout error kinds: log name, plugin-error code, retryable, message.
UPSTREAM_ERRORS = {
    "UnboundSlot": ("unbound slot", "unbound_slot", False, "no credential is bound for `{call}`: {detail}"),
    "Denied": ("denied", "denied", False, "the host refused the request `{call}`: {detail}"),
    "BudgetExhausted": (
        "budget exhausted",
        "callout_budget_exhausted",
        False,
        "the budget of {detail} callouts is used up before `{call}`",
    ),
    "Timeout": ("timeout", "upstream_timeout", True, "no answer to `{call}` within {detail} ms"),
    "TooLarge": (
        "too large",
        "response_too_large",
        False,
        "the answer to `{call}` exceeds the size limit of {detail} bytes",
    ),
    "Unreachable": ("unreachable", "upstream_unreachable", True, "cannot reach the upstream for `{call}`: {detail}"),
}


def operations(offered):
    """The manifest entries of the `offered` operations."""
    return [
        operation(name, description, input_schema(method), OUTPUT_SCHEMA)
        for name, method, description in OPERATIONS
        if name in offered
    ]


def input_schema(method):
    properties = {
        "path": {"type": "string", "pattern": "^/", "description": "path below the slot's base URL"},
        "query": {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]}},
        "headers": {"type": "object", "additionalProperties": {"type": "string"}},
    }
    if method != "GET":
        properties["body"] = {"description": "JSON body of the request"}
    return {"type": "object", "properties": properties, "required": ["path"], "additionalProperties": False}


def method_for(operation_name, offered):
    """The HTTP method of `operation_name`, or an `unknown_operation` failure."""
    for name, method, _ in OPERATIONS:
        if name == operation_name and name in offered:
            return method
    raise Failure("unknown_operation", f"unknown operation `{operation_name}`")


@dataclass
class Call:
    """An HTTP request ready to send through a slot."""

    method: str
    target: str
    headers: list = field(default_factory=list)
    body: bytes | None = None

    @property
    def label(self):
        """`GET /v1/x`: how messages and log lines name the call."""
        return f"{self.method} {self.target}"


@dataclass
class Request:
    """The request part of an operation's input."""

    path: str | None
    query: dict
    headers: dict
    body: object

    @staticmethod
    def parse(method, value):
        """The request fields of `value`; `GET` takes no body."""
        if not isinstance(value, dict):
            raise invalid_input(f"invalid input: expected an object, not `{to_json(value)}`")
        for key in value:
            if key not in FIELDS:
                expected = ", ".join(f"`{name}`" for name in FIELDS)
                raise invalid_input(f"invalid input: unknown field `{key}`, expected one of {expected}")
        request = Request(value.get("path"), value.get("query", {}), value.get("headers", {}), value.get("body"))
        request.check(method)
        return request

    def check(self, method):
        if self.path is not None and not isinstance(self.path, str):
            raise invalid_input(f"invalid input: `path` must be a string, not `{to_json(self.path)}`")
        if not isinstance(self.query, dict):
            raise invalid_input(f"invalid input: `query` must be an object, not `{to_json(self.query)}`")
        if not isinstance(self.headers, dict) or not all(isinstance(v, str) for v in self.headers.values()):
            raise invalid_input(
                f"invalid input: `headers` must be an object of strings, not `{to_json(self.headers)}`"
            )
        if method == "GET" and self.body is not None:
            raise invalid_input("`GET` takes no `body`")

    def target(self, base_path):
        """`base_path` + `path` + query string: the target sent to the slot."""
        if self.path is None:
            raise invalid_input("missing field `path`")
        path = checked_path(self.path, invalid_input)
        return append_query(f"{base_path or ''}{path}", self.query)

    def into_call(self, method, target, run_id):
        """The call to send to `target`. Non-`GET` calls carry `run_id` as
        their `idempotency-key` unless the input sets one."""
        headers = {name.lower(): value for name, value in sorted(self.headers.items())}
        defaults = [
            ("accept", "application/json"),
            ("content-type", None if self.body is None else "application/json"),
            ("idempotency-key", None if method == "GET" else run_id),
        ]
        for name, value in defaults:
            if value is not None:
                headers.setdefault(name, value)
        body = None if self.body is None else to_json(self.body).encode()
        return Call(method, target, sorted(headers.items()), body)


def checked_path(path, failure):
    if not path.startswith("/"):
        raise failure(f"path `{path}` must start with `/`")
    return path


def base_path(raw):
    """The config's `base_path`, checked and without its trailing `/`."""
    if raw is None:
        return None
    checked_path(raw, lambda message: invalid_config(f"base_{message}"))
    return raw.rstrip("/")


def health_path(raw):
    """The config's `health_path` (default `/`), checked."""
    return checked_path("/" if raw is None else raw, lambda message: invalid_config(f"health_{message}"))


def append_query(target, query):
    out = target
    for key, value in sorted(query.items()):
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, (str, int, float)):
            text = value if isinstance(value, str) else to_json(value)
        else:
            raise invalid_input(
                f"query parameter `{key}` must be a string, number or boolean, not `{to_json(value)}`"
            )
        out += f"{'&' if '?' in out else '?'}{percent_encode(key)}={percent_encode(text)}"
    return out


UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def percent_encode(text):
    """Percent-encode everything but RFC 3986's unreserved characters."""
    return "".join(chr(b) if b in UNRESERVED else f"%{b:02X}" for b in text.encode())


@dataclass
class Reply:
    """The external system's answer."""

    status: int
    headers: list
    body: bytes

    def body_value(self):
        """Parsed JSON when the content type says JSON and it parses, else (lossy UTF-8) text."""
        is_json = any(n.lower() == "content-type" and "json" in v.lower() for n, v in self.headers)
        if is_json:
            try:
                return parse_json(self.body.decode())
            except ValueError:
                pass
        return self.body.decode(errors="replace")

    def headers_value(self):
        """Headers as an object with lowercase names; repeated names joined with `, `."""
        headers = {}
        for name, value in self.headers:
            name = name.lower()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        return headers

    def output(self, call):
        """The operation's output for a 2xx answer, else an `upstream_status` failure."""
        if not 200 <= self.status < 300:
            raise self.status_failure(call)
        return {"status": self.status, "headers": self.headers_value(), "body": self.body_value()}

    def check_health(self, call):
        """Accept the answer to a health check: anything but 5xx, 401 and 403."""
        if self.status in (401, 403) or self.status >= 500:
            raise self.status_failure(call)

    def status_failure(self, call):
        retryable = self.status in (408, 429) or self.status >= 500
        message = f"upstream answered {self.status} for `{call.label}`"
        details = {"status": self.status, "body": self.body_value()}
        return Failure("upstream_status", message, retryable, details)


def error_kind(error):
    """The variant name of a callout error: `CalloutError_Timeout` -> `Timeout`."""
    return type(error).__name__.removeprefix("CalloutError_")


def upstream_failure(error, call):
    """The plugin-error reporting the callout error `error` of `call`."""
    _, code, retryable, message = UPSTREAM_ERRORS[error_kind(error)]
    return Failure(code, message.format(call=call.label, detail=error.value), retryable)


def log_line(call, outcome):
    """`GET /v1/x -> 200` for a reply, `GET /v1/x -> timeout` for a callout error."""
    what = outcome.status if isinstance(outcome, Reply) else UPSTREAM_ERRORS[error_kind(outcome)][0]
    return f"{call.label} -> {what}"
