// What the Chromium tests share: the `credbroker dev` stack they start, the browser, and the
// demo page's moves (call whoami, wait for a navigation, run steps in order).
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';

import { chromium } from 'playwright-core';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const STACK_START_MS = 30_000;
const CARGO_BUILD_MS = 15 * 60_000;
/** How long one step of a test may wait for the page. */
export const STEP_MS = 15_000;
const STOP_MS = 5_000;
/** Kept of the stack's stderr, for failure messages. */
const MAX_LOG_CHARS = 8_000;
const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  // The machine's network is closed: nothing may phone home.
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

/** `target/debug/credbroker`, built now so the test never runs a stale binary. */
function credbrokerBinary() {
  if (process.env.CREDBROKER_BIN) return process.env.CREDBROKER_BIN;
  const build = spawnSync('cargo', ['build', '--locked', '--quiet', '--bin', 'credbroker'], {
    cwd: ROOT,
    stdio: ['ignore', 'inherit', 'inherit'],
    timeout: CARGO_BUILD_MS,
  });
  assert.equal(build.status, 0, `cargo build failed (${build.error?.message ?? `exit ${build.status}`})`);
  return `${ROOT}target/debug/credbroker`;
}

/**
 * Starts `credbroker dev` on a free port with these extra arguments; resolves once it prints the
 * URL to open (the origin, or `{origin}/{stage}/web/` with `--stage`).
 */
export async function startStack(args = []) {
  const child = spawn(
    credbrokerBinary(),
    ['dev', '--listen', '127.0.0.1:0', ...args],
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1' } },
  );
  // Whatever happens to this test process, the stack goes with it.
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  let log = '';
  child.stderr.setEncoding('utf8').on('data', (chunk) => {
    log = (log + chunk).slice(-MAX_LOG_CHARS);
  });
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const stop = async () => {
    process.off('exit', killOnExit);
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGINT'); // like Ctrl-C: a graceful shutdown
    const timer = setTimeout(() => child.kill('SIGKILL'), STOP_MS);
    await exited;
    clearTimeout(timer);
  };
  const lines = createInterface({ input: child.stdout });
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`credbroker dev printed no URL within ${STACK_START_MS} ms\n${log}`)), STACK_START_MS);
    lines.once('line', (line) => {
      clearTimeout(timer);
      const found = /Open (http:\/\/127\.0\.0\.1:\d+\/\S*)/.exec(line)?.[1];
      if (found) resolve(found);
      else reject(new Error(`unexpected first line from credbroker dev: ${line}`));
    });
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`credbroker dev exited (${code ?? signal}) before serving\n${log}`));
    });
  }).catch(async (error) => {
    await stop();
    throw error;
  });
  // readline keeps reading stdout, so the stack never blocks on a full pipe.
  return { url, stop, log: () => log };
}

export async function launchChromium() {
  assert.ok(existsSync(CHROMIUM), `no Chromium at ${CHROMIUM}: apt-get install chromium (tests/run does), or set CHROMIUM`);
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
}

/** The JSON the demo page shows after "Call /api/whoami" (its first line is `HTTP <status>`). */
export async function callWhoami(page) {
  const output = page.locator('#output');
  const before = (await output.isVisible()) ? await output.textContent() : null;
  await page.getByRole('button', { name: 'Call /api/whoami' }).click();
  // The button is disabled while the call runs; the output changes when it is done.
  await page.waitForFunction((old) => {
    const el = document.getElementById('output');
    return !el.hidden && el.textContent !== old && !document.getElementById('whoami').disabled;
  }, before);
  const [status, ...body] = (await output.textContent()).split('\n');
  assert.equal(status, 'HTTP 200', `whoami failed: ${status}\n${body.join('\n')}`);
  return JSON.parse(body.join('\n'));
}

/** Runs `action` and waits for the navigation it causes to land on a URL matching `url`. */
export async function navigates(page, url, action) {
  await Promise.all([page.waitForURL(url, { waitUntil: 'load' }), action()]);
}

/** Runs one step after another; once one fails the rest are skipped instead of piling up errors. */
export function stepper(t, page, stack) {
  let failed = false;
  return (name, fn) =>
    t.test(name, { skip: failed && 'an earlier step failed' }, async () => {
      try {
        await fn();
      } catch (error) {
        failed = true;
        const shown = await page.locator('body').innerText({ timeout: 1_000 }).catch(() => '(unreadable)');
        throw new Error(
          `${error.message}\n-- page: ${page.url()}\n-- it shows: ${shown.slice(0, 600)}\n-- stack log:\n${stack.log()}`,
          { cause: error },
        );
      }
    });
}
