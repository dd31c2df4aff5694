// The browser client under an API Gateway stage prefix, in Debian's Chromium. Deployed by
// `sam deploy`, a REST API serves everything under its stage:
// https://{restapi_id}.execute-api.{region}.amazonaws.com/{stage_name}/… ("Invoke a REST API in
// API Gateway", https://docs.aws.amazon.com/apigateway/latest/developerguide/how-to-call-api.html),
// so the client is at /prod/web/index.html, the broker at /prod/auth/ and the API at /prod/api/,
// and a path without the stage gets 403 Missing Authentication Token. `credbroker dev --stage prod`
// serves the stack that way (the dev provider stays at the root, like any provider); clients sign
// the stage-prefixed path, as against AWS. The same web/ files serve e2e.test.mjs at the root.
//
// Needs /usr/bin/chromium (CHROMIUM overrides the path) and builds the binary with cargo first
// (CREDBROKER_BIN names a ready one instead). Nothing is downloaded.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { callWhoami, launchChromium, navigates, startStack, stepper, STEP_MS } from './stack.mjs';

const STAGE = 'prod';

/** Signs in as Bob through the dev provider from the demo page, landing back on `back`. */
async function signInAsBob(page, origin, back) {
  await page.getByRole('button', { name: 'Sign in with dev' }).click();
  await page.waitForURL(`${origin}/dev-idp/authorize?**`);
  // The provider is asked to send the answer back to the page under the stage.
  assert.equal(new URL(page.url()).searchParams.get('redirect_uri'), `${origin}/${STAGE}/web/index.html`);
  const exchanged = page.waitForResponse((r) => r.url() === `${origin}/${STAGE}/auth/signin/dev`);
  await navigates(page, back, () => page.getByRole('button', { name: /Bob Admin/ }).click());
  assert.equal((await exchanged).status(), 200);
}

/**
 * Every request the pages and the worker of `context` make to the stack's origin outside the
 * stage and the dev provider (another service in AWS) goes to `found`: none may assume the root.
 */
function recordOutsideStage(context, origin, found) {
  context.on('request', (request) => {
    const { origin: to, pathname } = new URL(request.url());
    // Chromium asks for /favicon.ico by itself on pages without an icon (the app's pages).
    if (to !== origin || pathname === '/favicon.ico') return;
    if (!pathname.startsWith(`/${STAGE}/`) && !pathname.startsWith('/dev-idp/')) found.push(`${request.method()} ${pathname}`);
  });
}

test('the demo page works under an API Gateway stage prefix (/prod/web/)', { timeout: 5 * 60_000 }, async (t) => {
  const stack = await startStack(['--stage', STAGE]);
  t.after(() => stack.stop());
  const origin = new URL(stack.url).origin;
  assert.equal(stack.url, `${origin}/${STAGE}/web/`, 'credbroker dev --stage opens the client under the stage');
  const demo = `${origin}/${STAGE}/web/index.html`;
  const browser = await launchChromium();
  t.after(() => browser.close());
  const context = await browser.newContext();
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_MS);

  const outsideStage = [];
  recordOutsideStage(context, origin, outsideStage);
  const pageErrors = [];
  context.on('weberror', (error) => pageErrors.push(error.error().message));

  const step = stepper(t, page, stack);

  await step('loads its configuration from /prod/auth/config', async () => {
    const config = page.waitForResponse((r) => r.url() === `${origin}/${STAGE}/auth/config`);
    await page.goto(demo);
    assert.equal((await config).status(), 200);
    await page.getByRole('button', { name: 'Sign in with dev' }).waitFor();
    // Without the stage there is nothing, as in AWS.
    const bare = await page.request.get(`${origin}/auth/config`);
    assert.equal(bare.status(), 403);
    assert.deepEqual(await bare.json(), { message: 'Missing Authentication Token' });
  });

  await step('signs in with the dev provider, exchanging at /prod/auth/signin/dev', async () => {
    await signInAsBob(page, origin, demo);
    await page.getByRole('status').filter({ hasText: 'Signed in as bob@corp.example.' }).waitFor();
    assert.equal(page.url(), demo);
  });

  await step('a signed fetch to /prod/api/whoami succeeds', async () => {
    const sent = page.waitForRequest((r) => r.url() === `${origin}/${STAGE}/api/whoami`);
    const whoami = await callWhoami(page);
    assert.match((await sent).headers().authorization ?? '', /^AWS4-HMAC-SHA256 Credential=ASIA/);
    assert.equal(whoami.subject, 'bob');
    assert.equal(whoami.authType, 'header');
  });

  await step('transparent mode: the worker controls /prod/api/ and signs a plain link to /prod/api/app/', async () => {
    const link = page.locator('#app-link[aria-disabled="false"]');
    await link.waitFor();
    assert.equal(await link.getAttribute('href'), `/${STAGE}/api/app/`);
    const scope = await page.evaluate(async () => (await navigator.serviceWorker.getRegistrations()).map((r) => r.scope));
    assert.deepEqual(scope, [`${origin}/${STAGE}/api/`]);
    await navigates(page, `${origin}/${STAGE}/api/app/`, () => link.click());
    await page.getByRole('heading', { name: 'Hello, Bob Admin!' }).waitFor();
    assert.ok(await page.evaluate(() => !!navigator.serviceWorker.controller), 'the app page is not controlled by the worker');
  });

  await step('an unsigned deep link in a fresh browser goes to /prod/web/index.html?next= and back', async () => {
    const fresh = await browser.newContext();
    t.after(() => fresh.close());
    recordOutsideStage(fresh, origin, outsideStage);
    const other = await fresh.newPage();
    other.setDefaultTimeout(STEP_MS);
    const path = `/${STAGE}/api/app/notes`;
    await other.goto(`${origin}${path}`);
    // The gateway's 403 page for Accept: text/html sends the browser to sign-in under the stage.
    await other.waitForURL(`${demo}?next=${encodeURIComponent(path)}`);
    await other.getByRole('status').filter({ hasText: `Sign in to continue to ${path}` }).waitFor();
    await signInAsBob(other, origin, `${origin}${path}`);
    await other.getByRole('heading', { name: 'Notes of Bob Admin' }).waitFor();
  });

  await step('nothing was asked of the origin outside the stage', async () => {
    assert.deepEqual(outsideStage, []);
    assert.deepEqual(pageErrors, []);
  });
});
