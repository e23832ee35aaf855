// The HTTP side of a JSON REST connector, written to behave exactly like the
// Rust plugins' `common::http` (plugins/common/src/http.rs): the operations
// and their schemas, turning an input document into a call, and turning the
// reply into the output document or a plugin-error.

import { PluginFailure, invalidConfig, invalidInput, isObject, operation, toJson } from './plugboard.js';

/** The operations an HTTP connector may offer: name, method, description. */
const OPERATIONS = [
  ['get', 'GET', 'send a GET request and return the answer'],
  ['post', 'POST', 'send a POST request with an optional JSON body'],
  ['put', 'PUT', 'send a PUT request with an optional JSON body'],
  ['patch', 'PATCH', 'send a PATCH request with an optional JSON body'],
  ['delete', 'DELETE', 'send a DELETE request with an optional JSON body'],
];

/** The fields of an operation's input. */
const FIELDS = ['path', 'query', 'headers', 'body'];

const OUTPUT_SCHEMA = {
  type: 'object',
  properties: {
    status: { type: 'integer' },
    headers: { type: 'object', additionalProperties: { type: 'string' } },
    body: { description: 'parsed JSON when the answer is JSON, else text' },
  },
  required: ['status', 'headers', 'body'],
};

/** The manifest entries of the `offered` operations. */
export function operations(offered) {
  return OPERATIONS.filter(([name]) => offered.includes(name)).map(([name, method, description]) =>
    operation(name, description, inputSchema(method), OUTPUT_SCHEMA),
  );
}

function inputSchema(method) {
  const properties = {
    path: { type: 'string', pattern: '^/', description: "path below the slot's base URL" },
    query: { type: 'object', additionalProperties: { type: ['string', 'number', 'boolean'] } },
    headers: { type: 'object', additionalProperties: { type: 'string' } },
  };
  if (method !== 'GET') {
    properties.body = { description: 'JSON body of the request' };
  }
  return { type: 'object', properties, required: ['path'], additionalProperties: false };
}

/** The HTTP method of `operation`, or an `unknown_operation` failure. */
export function methodFor(operation, offered) {
  const found = OPERATIONS.find(([name]) => name === operation && offered.includes(name));
  if (!found) {
    throw new PluginFailure('unknown_operation', `unknown operation \`${operation}\``);
  }
  return found[1];
}

/** The request fields of `input`; `GET` takes no body. */
export function parseRequest(method, input) {
  if (!isObject(input)) {
    throw invalidInput(`invalid input: expected an object, not \`${toJson(input)}\``);
  }
  const unknown = Object.keys(input).find((key) => !FIELDS.includes(key));
  if (unknown !== undefined) {
    const expected = FIELDS.map((field) => `\`${field}\``).join(', ');
    throw invalidInput(`invalid input: unknown field \`${unknown}\`, expected one of ${expected}`);
  }
  const { path = null, query = {}, headers = {}, body = null } = input;
  if (path !== null && typeof path !== 'string') {
    throw invalidInput(`invalid input: \`path\` must be a string, not \`${toJson(path)}\``);
  }
  if (!isObject(query)) {
    throw invalidInput(`invalid input: \`query\` must be an object, not \`${toJson(query)}\``);
  }
  if (!isObject(headers) || Object.values(headers).some((value) => typeof value !== 'string')) {
    throw invalidInput(`invalid input: \`headers\` must be an object of strings, not \`${toJson(headers)}\``);
  }
  if (method === 'GET' && body !== null) {
    throw invalidInput('`GET` takes no `body`');
  }
  return { path, query, headers, body };
}

/** `basePath` + `path` + query string: the target sent to the slot. */
export function target(request, basePath) {
  if (request.path === null) {
    throw invalidInput('missing field `path`');
  }
  const path = checkedPath(request.path, invalidInput);
  return appendQuery(`${basePath ?? ''}${path}`, request.query);
}

/**
 * The call to send to `target`. Non-`GET` calls carry `runId` as their
 * `idempotency-key` unless the input sets one.
 */
export function intoCall(request, method, target, runId) {
  const headers = new Map();
  for (const [name, value] of Object.entries(request.headers).sort(byKey)) {
    headers.set(name.toLowerCase(), value);
  }
  const defaults = [
    ['accept', 'application/json'],
    ['content-type', request.body === null ? null : 'application/json'],
    ['idempotency-key', method === 'GET' ? null : runId],
  ];
  for (const [name, value] of defaults) {
    if (value !== null && !headers.has(name)) {
      headers.set(name, value);
    }
  }
  const body = request.body === null ? null : toJson(request.body);
  return call(method, target, [...headers].sort(byKey), body);
}

/** A call: method, target (path and query), sorted lowercase headers, body text. */
export function call(method, target, headers = [], body = null) {
  return { method, target, headers, body, label: `${method} ${target}` };
}

function byKey([a], [b]) {
  return a < b ? -1 : a > b ? 1 : 0;
}

function checkedPath(path, failure) {
  if (!path.startsWith('/')) {
    throw failure(`path \`${path}\` must start with \`/\``);
  }
  return path;
}

/** The config's `base_path`, checked and without its trailing `/`. */
export function basePath(raw) {
  if (raw === undefined) {
    return undefined;
  }
  checkedPath(raw, (message) => invalidConfig(`base_${message}`));
  return raw.replace(/\/+$/, '');
}

/** The config's `health_path` (default `/`), checked. */
export function healthPath(raw = '/') {
  return checkedPath(raw, (message) => invalidConfig(`health_${message}`));
}

function appendQuery(target, query) {
  let out = target;
  for (const [key, value] of Object.entries(query).sort(byKey)) {
    if (!['string', 'number', 'boolean'].includes(typeof value)) {
      throw invalidInput(
        `query parameter \`${key}\` must be a string, number or boolean, not \`${toJson(value)}\``,
      );
    }
    out += `${out.includes('?') ? '&' : '?'}${percentEncode(key)}=${percentEncode(String(value))}`;
  }
  return out;
}

/** Percent-encode everything but RFC 3986's unreserved characters. */
function percentEncode(text) {
  return Array.from(new TextEncoder().encode(text), (byte) => {
    const char = String.fromCharCode(byte);
    return /[A-Za-z0-9\-._~]/.test(char) ? char : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }).join('');
}

/**
 * The operation's output for a 2xx reply (`{status, headers: [[name, value]],
 * body: Uint8Array}`), else an `upstream_status` failure.
 */
export function output(reply, call) {
  if (reply.status < 200 || reply.status >= 300) {
    throw statusFailure(reply, call);
  }
  return { status: reply.status, headers: headersValue(reply.headers), body: bodyValue(reply) };
}

/** Accept the answer to a health check: anything but 5xx, 401 and 403. */
export function checkHealth(reply, call) {
  if (reply.status === 401 || reply.status === 403 || reply.status >= 500) {
    throw statusFailure(reply, call);
  }
}

function statusFailure(reply, call) {
  const retryable = reply.status === 408 || reply.status === 429 || reply.status >= 500;
  return new PluginFailure('upstream_status', `upstream answered ${reply.status} for \`${call.label}\``, {
    retryable,
    details: { status: reply.status, body: bodyValue(reply) },
  });
}

/** Headers as an object with lowercase names; repeated names joined with `, `. */
function headersValue(headers) {
  const out = {};
  for (const [name, value] of headers) {
    const key = name.toLowerCase();
    out[key] = key in out ? `${out[key]}, ${value}` : value;
  }
  return out;
}

/** Parsed JSON when the content type says JSON and it parses, else (lossy UTF-8) text. */
function bodyValue(reply) {
  const isJson = reply.headers.some(
    ([name, value]) => name.toLowerCase() === 'content-type' && value.toLowerCase().includes('json'),
  );
  if (isJson) {
    try {
      return JSON.parse(new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(reply.body));
    } catch {
      // not JSON after all: fall through to text
    }
  }
  return new TextDecoder('utf-8', { ignoreBOM: true }).decode(reply.body);
}

/**
 * The failure for a call that got no answer. `fetch()` says only that the
 * network failed (a refused request, an unbound slot, a timeout and a
 * connection error look the same), so every such failure is
 * `upstream_unreachable`.
 */
export function unreachable(call, detail) {
  return new PluginFailure('upstream_unreachable', `cannot reach the upstream for \`${call.label}\`: ${detail}`, {
    retryable: true,
  });
}

/** The info line logged per call: `GET /v1/x -> 200` or `GET /v1/x -> unreachable`. */
export function logLine(call, outcome) {
  return `${call.label} -> ${outcome}`;
}
