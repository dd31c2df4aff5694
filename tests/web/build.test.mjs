// The minified builds (scripts/build-web.mjs): the checked-in files are exactly the build of the
// readable sources, within their size budgets, and they pass the client's and the worker's own
// unit tests.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

import { BUDGETS, buildAll, gzippedSize } from '../../scripts/build-web.mjs';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

test('the minified builds are the build of the sources, byte for byte, within budget', async () => {
  const built = await buildAll();
  assert.deepEqual(Object.keys(built).sort(), Object.keys(BUDGETS).sort());
  for (const [name, bytes] of Object.entries(built)) {
    const checkedIn = readFileSync(`${ROOT}web/${name}`);
    assert.ok(checkedIn.equals(bytes), `web/${name} is not the build of its sources: run npm run build`);
    assert.ok(gzippedSize(bytes) <= BUDGETS[name], `web/${name}: ${gzippedSize(bytes)} B gzipped > ${BUDGETS[name]} B`);
  }
  // The minified page client registers the minified worker.
  assert.match(built['credbroker.min.js'].toString(), /"\.\/credbroker-sw\.min\.js"/);
});

for (const suite of ['client.test.mjs', 'sw.test.mjs']) {
  test(`the minified build passes ${suite}`, () => {
    // A test run of its own (NODE_TEST_CONTEXT would make it report to this runner instead).
    const { NODE_TEST_CONTEXT: _, ...env } = process.env;
    const run = spawnSync(process.execPath, ['--test', '--test-reporter=tap', `${ROOT}tests/web/${suite}`], {
      env: { ...env, CREDBROKER_MINIFIED: '1' },
      encoding: 'utf8',
      timeout: 120_000,
    });
    assert.equal(run.status, 0, `${suite} failed against the minified build:\n${run.stdout.slice(-4000)}`);
    assert.match(run.stdout, /^# fail 0$/m);
  });
}
