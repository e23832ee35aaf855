// Build one JavaScript plugin into a Plugboard component with the pinned
// componentize-js, through its `componentize()` API (the `jco componentize`
// CLI mishandles path arguments on some machines).
//
// Usage: node plugins/js/build.mjs SOURCE WORLD OUTPUT
//
//   SOURCE   the plugin's entry module (it may import modules next to it and
//            under plugins/js/lib/ by relative paths)
//   WORLD    `connector` or `processor` (of plugboard:plugin, from wit/)
//   OUTPUT   the component file to write

import { rename, writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { componentize } from '@bytecodealliance/componentize-js';

const root = fileURLToPath(new URL('../..', import.meta.url));

/**
 * Engine features by world. `fetch-event` (an incoming-request handler) is
 * never wanted; processors have no network, so no `http` (fetch()) either.
 * `stdio` keeps console output and uncaught errors visible in the
 * invocation's log; `random` and `clocks` back `crypto`, `Math.random()`
 * and timers.
 */
const DISABLED = {
  connector: ['fetch-event'],
  processor: ['fetch-event', 'http'],
};

async function main([source, world, output]) {
  if (!source || !DISABLED[world] || !output) {
    throw new Error('usage: node plugins/js/build.mjs SOURCE connector|processor OUTPUT');
  }
  const sourcePath = resolve(source);
  const outputPath = resolve(output);
  // componentize-js maps the current folder as the module root: from the
  // repository root, relative imports between plugins/js/* folders resolve.
  process.chdir(root);
  const { component } = await componentize({
    sourcePath,
    witPath: resolve(root, 'wit'),
    worldName: `plugboard:plugin/${world}`,
    disableFeatures: DISABLED[world],
  });
  // Write then rename, so that an interrupted build never leaves a file that
  // looks up to date.
  await writeFile(`${outputPath}.tmp`, component);
  await rename(`${outputPath}.tmp`, outputPath);
}

main(process.argv.slice(2)).catch((error) => {
  console.error(`cannot build \`${process.argv[2]}\`: ${error.message}`);
  process.exit(1);
});
