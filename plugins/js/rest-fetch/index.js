// `js-rest`: a JavaScript connector that calls a JSON REST API with the
// standard `fetch()`, addressing the credential slot `api` as
// `https://api/<path>`; the host routes the request through the same callout
// policy as the `callout` interface and adds the credential's authentication.
//
// Operations `get`, `post`, `put`, `patch` and `delete` take `{"path", "query"?, "headers"?, "body"?}`
// and return `{"status", "headers", "body"}`, like the Rust `rest-json`.

import { get as configValue } from 'plugboard:plugin/config@0.1.0';
import { log } from 'plugboard:plugin/log@0.1.0';

import * as http from '../lib/http.js';
import { parseInput, toJson } from '../lib/plugboard.js';

/** The one credential slot this connector calls. */
const SLOT = 'api';
/** The operations this connector offers. */
const OFFERED = ['get', 'post', 'put', 'patch', 'delete'];

export function describe() {
  return {
    name: 'js-rest',
    version: '0.1.0',
    description:
      'Calls a JSON REST API with fetch() through the `api` credential slot: one operation per HTTP ' +
      'method, JSON bodies in and out, upstream failures reported as plugin-errors.',
    operations: http.operations(OFFERED),
    credentialSlots: [{ name: SLOT, description: 'the REST API to call', required: true }],
  };
}

export async function invoke(context, operation, input) {
  const method = http.methodFor(operation, OFFERED);
  const request = http.parseRequest(method, parseInput(input));
  const target = http.target(request, http.basePath(configValue('base_path')));
  const call = http.intoCall(request, method, target, context.runId);
  return toJson(http.output(await send(call), call));
}

export async function testConnection() {
  const call = http.call('GET', http.healthPath(configValue('health_path')));
  http.checkHealth(await send(call), call);
}

/** Send `call` to the slot with fetch() and log one line about the outcome. */
async function send(call) {
  let response;
  try {
    response = await fetch(`https://${SLOT}${call.target}`, {
      method: call.method,
      headers: call.headers,
      body: call.body ?? undefined,
      // The host follows redirects that stay inside the credential's base
      // URL; any other is the plugin's to report, as rest-json does.
      redirect: 'manual',
    });
  } catch (error) {
    log('info', http.logLine(call, 'unreachable'));
    throw http.unreachable(call, error.message);
  }
  const reply = {
    status: response.status,
    headers: [...response.headers],
    body: new Uint8Array(await response.arrayBuffer()),
  };
  log('info', http.logLine(call, reply.status));
  return reply;
}
