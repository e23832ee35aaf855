// Helpers shared by Plugboard's JavaScript plugins: plugin-errors, input
// parsing, and JSON text written the way the Rust plugins write it.
//
// componentize-js maps a world export's `result<_, plugin-error>`: a returned
// value is `ok`; a thrown value carrying a `payload` (or a thrown plain
// object) is `err`; any other thrown `Error` traps, which the host reports as
// a plugin bug (`plugin_crashed`).

/** A failure reported on purpose; thrown from an export, it becomes the `plugin-error`. */
export class PluginFailure extends Error {
  /**
   * @param {string} code stable `snake_case` code
   * @param {string} message one lowercase sentence naming the offending value
   * @param {{retryable?: boolean, details?: unknown}} [options]
   */
  constructor(code, message, { retryable = false, details } = {}) {
    super(message);
    this.payload = {
      code,
      message,
      retryable,
      details: details === undefined ? undefined : toJson(details),
    };
  }
}

/** The input document is malformed or misses a field. */
export function invalidInput(message) {
  return new PluginFailure('invalid_input', message);
}

/** The plugin's configuration is unusable. */
export function invalidConfig(message) {
  return new PluginFailure('invalid_config', message);
}

/** Parse the input document, failing with `invalid_input` when it is not JSON. */
export function parseInput(text) {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw invalidInput(`input is not JSON: ${error.message}`);
  }
}

/** Whether `value` is a JSON object (not an array, not `null`). */
export function isObject(value) {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Compact JSON text with object keys sorted, as serde_json writes it: the
 * same document gives the same bytes in every language.
 */
export function toJson(value) {
  if (Array.isArray(value)) {
    return `[${value.map((item) => (item === undefined ? 'null' : toJson(item))).join(',')}]`;
  }
  if (isObject(value)) {
    const members = Object.keys(value)
      .filter((key) => value[key] !== undefined)
      .sort()
      .map((key) => `${JSON.stringify(key)}:${toJson(value[key])}`);
    return `{${members.join(',')}}`;
  }
  return JSON.stringify(value);
}

/** A manifest operation; schemas are JSON values, turned into JSON text. */
export function operation(name, description, inputSchema, outputSchema) {
  return {
    name,
    description,
    inputSchema: inputSchema === undefined ? undefined : toJson(inputSchema),
    outputSchema: outputSchema === undefined ? undefined : toJson(outputSchema),
  };
}
