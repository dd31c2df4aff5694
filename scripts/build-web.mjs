// Minified builds of the browser client, next to the readable sources in web/:
//   web/credbroker.min.js     the page client (credbroker.js with sigv4, signed-fetch, return-url):
//                             what a signed-in page loads
//   web/signin.min.js         the sign-in flows (signin.js), which the page client imports on
//                             first use (sign-in, callback, renewal, RP logout)
//   web/credbroker-sw.min.js  the service worker (credbroker-sw.js with the same modules)
// Built by the esbuild pinned in package.json, so the output is the same bytes on every machine.
// The minified page client registers the minified worker and imports the minified flows.
//
//   node scripts/build-web.mjs           (npm run build) writes both files
//   node scripts/build-web.mjs --check   rebuilds in memory, fails unless the checked-in files are
//                                        byte-for-byte that build and within the size budget
//                                        (tests/run does this and prints the sizes)
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { build } from 'esbuild';

const WEB = fileURLToPath(new URL('../web/', import.meta.url));

/** Gzipped size budgets in bytes (1 kB = 1000 B), from issue 12. */
export const BUDGETS = {
  // Issue 12: the page client within 8 kB, the worker within 5 kB.
  'credbroker.min.js': 8_000,
  // Loaded only to sign in, finish a callback, renew or sign out at the provider.
  'signin.min.js': 3_500,
  'credbroker-sw.min.js': 5_000,
};

const WORKER = "'./credbroker-sw.js'";

/**
 * The page client's source with its default worker script pointed at the minified worker, and
 * its dynamic import of the sign-in flows left as an import of their minified build.
 */
const minifiedWorkerPlugin = {
  name: 'minified-worker',
  setup(b) {
    b.onResolve({ filter: /^\.\/signin\.js$/ }, () => ({ path: './signin.min.js', external: true }));
    b.onLoad({ filter: /[\\/]web[\\/]credbroker\.js$/ }, (args) => {
      const source = readFileSync(args.path, 'utf8');
      if (source.split(WORKER).length !== 2) throw new Error(`credbroker.js must name ${WORKER} exactly once`);
      return { contents: source.replace(WORKER, "'./credbroker-sw.min.js'"), loader: 'js' };
    });
  },
};

/** The minified bundles, by output file name. */
export async function buildAll() {
  const outputs = {};
  for (const [entry, out] of [
    ['credbroker.js', 'credbroker.min.js'],
    ['signin.js', 'signin.min.js'],
    ['credbroker-sw.js', 'credbroker-sw.min.js'],
  ]) {
    const result = await build({
      entryPoints: [`${WEB}${entry}`],
      bundle: true,
      minify: true,
      format: 'esm',
      target: 'es2022',
      legalComments: 'none',
      charset: 'utf8',
      write: false,
      logLevel: 'warning',
      plugins: [minifiedWorkerPlugin],
    });
    outputs[out] = Buffer.from(result.outputFiles[0].contents);
  }
  return outputs;
}

/** Gzipped size (level 9), what a server sends. */
export function gzippedSize(bytes) {
  return gzipSync(bytes, { level: 9 }).length;
}

async function main() {
  const check = process.argv.includes('--check');
  const problems = [];
  for (const [name, bytes] of Object.entries(await buildAll())) {
    const path = `${WEB}${name}`;
    if (check) {
      let current = null;
      try {
        current = readFileSync(path);
      } catch {
        // reported below
      }
      if (!current?.equals(bytes)) problems.push(`web/${name} is not the build of its sources: run npm run build`);
    } else {
      writeFileSync(path, bytes);
    }
    const gz = gzippedSize(bytes);
    const budget = BUDGETS[name];
    console.log(`web/${name}: ${bytes.length} B minified, ${gz} B gzipped (budget ${budget} B)`);
    if (gz > budget) problems.push(`web/${name} is ${gz} B gzipped, over its ${budget} B budget`);
  }
  if (problems.length) {
    console.error(problems.join('\n'));
    process.exit(1);
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await main();
