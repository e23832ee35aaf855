// `js-hostile`: a test fixture for the host's test suite, in JavaScript.
// Each operation does one hostile or probing thing (spin, exhaust memory,
// fetch() anywhere, look for an environment) so that the tests can prove the
// host contains a JavaScript runtime as it contains Rust. Not a product
// plugin: never ship it.

import { PluginFailure, isObject, operation, parseInput, toJson } from '../../js/lib/plugboard.js';

/** Size of one allocation of `grow`. */
const MIB = 1024 * 1024;

const OPERATIONS = {
  spin: ['loop forever', spin],
  grow: ['allocate and touch 1 MiB arrays until allocation fails', grow],
  fetch: ['fetch() `url` with `method` and `headers`; `{"ok": {"status"}}` or `{"err": message}`', fetchUrl],
  env: ['return the environment the runtime shows (`process.env`), or `{}`', env],
  echo: ['return the run id and the input', echo],
};

export function describe() {
  return {
    name: 'js-hostile',
    version: '0.1.0',
    description: 'Test fixture: each operation misbehaves or probes the sandbox on purpose.',
    operations: Object.entries(OPERATIONS).map(([name, [description]]) => operation(name, description)),
    credentialSlots: [
      { name: 'api', description: 'the API probed by fetch()', required: false },
      { name: 'other', description: 'a second slot', required: false },
    ],
  };
}

export async function invoke(context, name, input) {
  const found = OPERATIONS[name];
  if (!found) {
    throw new PluginFailure('unknown_operation', `unknown operation \`${name}\``);
  }
  return toJson(await found[1](parseInput(input), context));
}

export function testConnection() {}

function spin() {
  let counter = 0;
  for (;;) {
    counter = (counter + 1) | 0;
  }
}

function grow() {
  const chunks = [];
  for (;;) {
    chunks.push(new Uint8Array(MIB).fill(0xa5));
  }
}

/** fetch() the input's `url`; never a plugin-error, whatever happens. */
async function fetchUrl(input) {
  const { url, method = 'GET', headers = {} } = isObject(input) ? input : {};
  try {
    const response = await fetch(url, { method, headers, redirect: 'manual' });
    return { ok: { status: response.status } };
  } catch (error) {
    return { err: String(error?.message ?? error) };
  }
}

function env() {
  return { env: globalThis.process?.env ?? {} };
}

function echo(input, context) {
  return { run_id: context.runId, input };
}
