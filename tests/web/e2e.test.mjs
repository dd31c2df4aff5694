// The browser client end to end, in Debian's Chromium (headless, driven by playwright-core)
// against a real `credbroker dev` stack started here: sign-in through the dev OpenID provider,
// a signed call to /api/whoami, server-rendered /api/app/ pages, a link, an urlencoded form and
// a multipart upload through the signing service worker, renewal after the credentials ran out,
// and sign-out. Screenshots of the signed-in demo page go to test-output/e2e/.
//
// Needs /usr/bin/chromium (tests/run installs it; CHROMIUM overrides the path) and builds the
// binary with cargo first (CREDBROKER_BIN names a ready one instead). Nothing is downloaded.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import { callWhoami, launchChromium, navigates, startStack, stepper, STEP_MS } from './stack.mjs';

const OUTPUT = fileURLToPath(new URL('../../test-output/e2e/', import.meta.url));
/**
 * Short credentials (the client renews them after half their lifetime), yet long enough that the
 * worker's copy outlives the /api/app/ steps on a busy machine.
 */
const CREDENTIAL_LIFETIME_S = 120;
/** The request the service worker sends for `method url` (the page's own is never sent). */
function sentByWorker(context, method, url, timeout = STEP_MS) {
  return context.waitForEvent('request', {
    predicate: (r) => !!r.serviceWorker() && r.method() === method && r.url() === url,
    timeout,
  });
}

/** A SigV4 Authorization header with these signed headers and the stack's scope. */
function assertSigned(request, signedHeaders) {
  const authorization = request.headers().authorization ?? '';
  assert.match(authorization, /^AWS4-HMAC-SHA256 Credential=ASIA\w+\/\d{8}\/us-east-1\/execute-api\/aws4_request, /);
  assert.match(authorization, new RegExp(`SignedHeaders=${signedHeaders}, Signature=[0-9a-f]{64}$`));
}

/** The header set web/ files are served with (src/assets.rs). */
const STRICT_CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
  "connect-src 'self' https:; frame-src 'self' https:; worker-src 'self'; form-action 'self' https:; " +
  "base-uri 'none'; object-src 'none'; frame-ancestors 'self'";

/** Another site (served by the test through request interception; nothing leaves the machine). */
const EVIL = 'http://evil.test/';

/** Serves `html` as the page at `url` of the other site. */
async function serveEvilPage(context, path, html) {
  await context.route(`${EVIL}${path}`, (route) => route.fulfill({ contentType: 'text/html; charset=utf-8', body: html }));
  return `${EVIL}${path}`;
}

/** Requests the service worker sent for `url` (any method) while `action` ran. */
async function workerRequestsDuring(context, url, action) {
  const seen = [];
  const listener = (request) => {
    if (request.serviceWorker() && request.url().split('?')[0] === url) seen.push(request);
  };
  context.on('request', listener);
  try {
    await action();
  } finally {
    context.off('request', listener);
  }
  return seen;
}

/**
 * What a script of the app's origin finds in every storage it can read: sessionStorage and
 * localStorage (this tab's), every IndexedDB database (the worker's included) and every cache.
 */
async function dumpStorage() {
  const found = [];
  for (const store of [sessionStorage, localStorage]) {
    for (let i = 0; i < store.length; i++) found.push(store.key(i), store.getItem(store.key(i)));
  }
  const request = (r) => new Promise((resolve, reject) => {
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
  for (const { name } of await indexedDB.databases()) {
    const db = await request(indexedDB.open(name));
    for (const store of db.objectStoreNames) found.push(name, JSON.stringify(await request(db.transaction(store).objectStore(store).getAll())));
    db.close();
  }
  for (const name of await caches.keys()) {
    const cache = await caches.open(name);
    for (const entry of await cache.keys()) found.push(entry.url, await (await cache.match(entry)).text());
  }
  return found.join('\n');
}

/**
 * Clicks "Sign out" and waits for the whole round trip: the dev provider's logout (RP-initiated,
 * after the worker and the other tabs were told) and the way back, so that the test's next
 * navigation is not aborted by it.
 */
async function signOutAndReturn(page, base) {
  const loggedOut = page.waitForRequest((r) => r.url().startsWith(`${base}dev-idp/logout?`));
  const back = page.waitForEvent('framenavigated', {
    predicate: (frame) => frame === page.mainFrame() && frame.url().startsWith(base) && !frame.url().includes('/dev-idp/'),
  });
  await page.getByRole('button', { name: 'Sign out' }).click();
  await loggedOut;
  await back;
  await page.waitForLoadState('load');
  await page.locator('#signin').waitFor();
}

test('the browser client signs in, calls the API, browses /api/app/, renews and signs out', { timeout: 10 * 60_000 }, async (t) => {
  const stack = await startStack(['--credential-lifetime', String(CREDENTIAL_LIFETIME_S)]);
  t.after(() => stack.stop());
  const browser = await launchChromium();
  t.after(() => browser.close());
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  // The page's clock, so the test can move it past the credentials' expiration.
  await context.clock.install();
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_MS);
  const problems = [];
  context.on('weberror', (error) => problems.push(`page error: ${error.error().message}`));
  context.on('console', (message) => {
    if (message.type() === 'error') problems.push(`console error on ${message.location().url}: ${message.text()}`);
  });
  const base = stack.url;
  const appUrl = `${base}api/app/`;
  // The demo page as the embedded web/ files are served: a strict CSP and no referrer by
  // default (the page itself asks for same-origin referrers, which the worker's rule needs).
  await context.route(`${base}*`, async (route) => {
    if (route.request().resourceType() !== 'document') return route.fallback();
    const response = await route.fetch();
    await route.fulfill({ response, headers: { ...response.headers(), 'referrer-policy': 'no-referrer', 'content-security-policy': STRICT_CSP } });
  });

  const step = stepper(t, page, stack);

  // Every secret the browser is handed (the broker's credentials, the provider's tokens), to
  // look for in storage later.
  const secrets = new Set();
  context.on('response', async (response) => {
    const { pathname } = new URL(response.url());
    if (!['/auth/signin/dev', '/dev-idp/token'].includes(pathname) || response.status() !== 200) return;
    const body = await response.json().catch(() => ({}));
    const { secretAccessKey, sessionToken } = body.credentials ?? {};
    for (const value of [secretAccessKey, sessionToken, body.identityAssertion, body.refresh_token, body.id_token]) {
      if (value) secrets.add(value);
    }
  });

  let firstKey;
  let identityId;

  await step('signs in through the dev provider and shows the session', async () => {
    await page.goto(base);
    await page.getByRole('button', { name: 'Sign in with dev' }).click();
    await page.waitForURL(`${base}dev-idp/authorize?**`);
    await navigates(page, base, () => page.getByRole('button', { name: /Bob Admin/ }).click());
    const session = page.locator('#session');
    await session.waitFor();
    // The callback's code and state are gone from the address bar.
    assert.equal(page.url(), base);
    await page.getByRole('status').filter({ hasText: 'Signed in as bob@corp.example.' }).waitFor();
    identityId = await page.locator('#identity-id').textContent();
    assert.match(identityId, /^us-east-1:[0-9a-f-]{36}$/);
    assert.equal(await page.locator('#provider').textContent(), 'dev');
    assert.equal(await page.locator('#subject').textContent(), 'bob');
    const countdown = await page.locator('#countdown').textContent();
    assert.match(countdown, /^(1 min [0-5]\d|[1-5]?\d) s$/, `countdown of ${CREDENTIAL_LIFETIME_S} s credentials: ${countdown}`);
    // The countdown ticks.
    await page.waitForFunction((shown) => document.getElementById('countdown').textContent !== shown, countdown);
    assert.equal(await page.locator('#signin').isVisible(), false);
  });

  await step('calls /api/whoami signed with the credentials', async () => {
    const whoami = await callWhoami(page);
    assert.equal(whoami.subject, 'bob');
    assert.equal(whoami.identityId, identityId);
    assert.equal(whoami.authType, 'header');
    assert.deepEqual(whoami.claims.groups, ['admins']);
    assert.match(whoami.accessKeyId, /^ASIA/);
    firstKey = whoami.accessKeyId;
  });

  await step('saves screenshots of the signed-in demo page', async () => {
    mkdirSync(OUTPUT, { recursive: true });
    await page.screenshot({ path: `${OUTPUT}signed-in.png`, fullPage: true });
    await page.setViewportSize({ width: 390, height: 844 });
    await page.screenshot({ path: `${OUTPUT}signed-in-phone.png`, fullPage: true });
    // Nothing sticks out sideways on a phone.
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    assert.equal(overflow, 0, 'the demo page scrolls sideways at 390 px');
    await page.setViewportSize({ width: 1280, height: 900 });
  });

  await step('a plain link into /api/app/ shows the server-rendered page through the service worker', async () => {
    const link = page.getByRole('link', { name: 'Open /api/app/' });
    await page.locator('#app-link[aria-disabled="false"]').waitFor();
    await navigates(page, appUrl, () => link.click());
    await page.getByRole('heading', { name: 'Hello, Bob Admin!' }).waitFor();
    assert.match(await page.locator('body').textContent(), new RegExp(`identity ${identityId}`));
    // The page is controlled by the worker, and its image came through it, signed, too.
    assert.ok(await page.evaluate(() => !!navigator.serviceWorker.controller), 'the app page is not controlled by the service worker');
    await page.waitForFunction(() => document.querySelector('img[alt="credbroker logo"]')?.complete);
    assert.ok(await page.locator('img[alt="credbroker logo"]').evaluate((img) => img.naturalWidth > 0), 'the logo did not load');
  });

  await step('an uploaded page of the same origin finds no secret key, session token or token in any storage', async () => {
    assert.ok(secrets.size >= 4, `the test saw the secrets it looks for (${secrets.size})`);
    const uploaded = `${base}uploads/report.html`;
    await context.route(uploaded, (route) => route.fulfill({ contentType: 'text/html; charset=utf-8', body: '<!doctype html><p>Quarterly report</p>' }));
    await navigates(page, uploaded, () => page.evaluate((url) => location.assign(url), uploaded));
    const dump = await page.evaluate(dumpStorage);
    // The dump does read storage: who is signed in is there (the page's and the worker's).
    assert.ok(dump.includes(identityId) && dump.includes('credbroker-sw'), `the dump reads storage: ${dump.slice(0, 300)}`);
    for (const secret of secrets) assert.ok(!dump.includes(secret), `a secret (${secret.slice(0, 6)}…) is readable in storage`);
    await navigates(page, appUrl, () => page.evaluate((url) => location.assign(url), appUrl));
    await page.getByRole('heading', { name: 'Hello, Bob Admin!' }).waitFor();
  });

  await step('follows a plain link to another app page', async () => {
    await navigates(page, `${appUrl}notes`, () => page.getByRole('link', { name: 'Your notes' }).click());
    await page.getByRole('heading', { name: 'Notes of Bob Admin' }).waitFor();
    await page.getByText('No notes yet.').waitFor();
  });

  await step("another site's auto-submitting form cannot post a note with the user's signature", async () => {
    for (const [variant, meta] of [['a', ''], ['b', '<meta name="referrer" content="no-referrer">']]) {
      const target = `${appUrl}notes?forged=${variant}`;
      const attack = await serveEvilPage(context, `csrf-${variant}.html`, `<!doctype html>${meta}<form method="post" action="${target}">
        <input name="text" value="forged ${variant}"></form><script>document.forms[0].submit()</script>`);
      const sent = await workerRequestsDuring(context, `${appUrl}notes`, async () => {
        // The worker sends it through the sign-in page, which continues with a GET of the same path.
        await navigates(page, target, () => page.goto(attack));
        await page.getByRole('heading', { name: 'Notes of Bob Admin' }).waitFor();
      });
      assert.deepEqual(sent.map((r) => r.method()), ['GET'], `variant ${variant}: only the same-origin GET was sent`);
      assert.equal(await page.getByRole('listitem').filter({ hasText: 'forged' }).count(), 0, 'no forged note');
    }
    await page.getByText('No notes yet.').waitFor();
  });

  await step('a link from another site is not signed on arrival: it lands through the sign-in page', async () => {
    const attack = await serveEvilPage(context, 'link.html', `<!doctype html><a href="${base}api/whoami">whoami</a>`);
    await page.goto(attack);
    const visited = [];
    const record = (frame) => frame === page.mainFrame() && visited.push(frame.url());
    page.on('framenavigated', record);
    await navigates(page, `${base}api/whoami`, () => page.getByRole('link', { name: 'whoami' }).click());
    page.off('framenavigated', record);
    assert.ok(visited.includes(`${base}?next=${encodeURIComponent('/api/whoami')}`), `went ${visited.join(' -> ')}`);
    assert.equal(JSON.parse(await page.locator('body').textContent()).subject, 'bob');
  });

  await step('another site cannot frame an app page with the signature', async () => {
    const attack = await serveEvilPage(context, 'frame.html', `<!doctype html><iframe src="${appUrl}" width="600" height="300"></iframe>`);
    const sent = await workerRequestsDuring(context, appUrl, async () => {
      await page.goto(attack);
      await page.waitForFunction(() => document.querySelector('iframe').contentWindow !== null);
      await page.waitForTimeout(1_000);
    });
    assert.deepEqual(sent.map((r) => r.headers().authorization ?? 'unsigned'), sent.map(() => 'unsigned'));
    const framed = page.frames().find((f) => f.url().startsWith(appUrl));
    const text = framed ? await framed.locator('body').textContent() : '';
    assert.doesNotMatch(text, /Hello, Bob/);
  });

  await step('submits the urlencoded notes form and sees the note after the redirect', async () => {
    await page.goto(base);
    await page.locator('#app-link[aria-disabled="false"]').waitFor();
    await navigates(page, appUrl, () => page.getByRole('link', { name: 'Open /api/app/' }).click());
    await navigates(page, `${appUrl}notes`, () => page.getByRole('link', { name: 'Your notes' }).click());
    const note = `Signed form post ✓ ${Date.now()}`;
    await page.getByLabel('New note').fill(note);
    const posted = sentByWorker(context, 'POST', `${appUrl}notes`);
    await navigates(page, `${appUrl}notes`, () => page.getByRole('button', { name: 'Add' }).click());
    const post = await posted;
    assert.equal(post.postData(), new URLSearchParams({ text: note }).toString());
    assertSigned(post, 'content-type;host;x-amz-date;x-amz-security-token');
    await page.getByRole('listitem').filter({ hasText: note }).waitFor();
    assert.equal(await page.getByRole('listitem').count(), 1, 'exactly the one note');
  });

  await step('submits the multipart upload form with a file and sees its name and size', async () => {
    const content = Buffer.from('credbroker e2e upload: multipart body signed by the worker\n');
    await page.locator('input[type=file][name=file]').setInputFiles({ name: 'hello e2e.txt', mimeType: 'text/plain', buffer: content });
    const posted = sentByWorker(context, 'POST', `${appUrl}upload`);
    await navigates(page, `${appUrl}upload`, () => page.getByRole('button', { name: 'Upload' }).click());
    const post = await posted;
    assert.match(post.headers()['content-type'], /^multipart\/form-data; boundary=/);
    assert.ok(post.postDataBuffer().includes(content), 'the worker re-sent the file bytes');
    assertSigned(post, 'content-type;host;x-amz-date;x-amz-security-token');
    await page.getByRole('heading', { name: 'Upload received' }).waitFor();
    assert.equal(await page.locator('p').first().textContent(), `File hello e2e.txt, ${content.length} bytes.`);
  });

  await step('a service worker stopped by the browser comes back without a key and gets one through the sign-in page', async () => {
    const cdp = await context.newCDPSession(page);
    await cdp.send('ServiceWorker.enable');
    await cdp.send('ServiceWorker.stopAllWorkers');
    await cdp.detach();
    const visited = [];
    const record = (frame) => frame === page.mainFrame() && visited.push(frame.url());
    page.on('framenavigated', record);
    // The detour: the worker waits for an answer from open client pages (there are none), the
    // sign-in page asks the tabs and the worker, then signs in silently at the provider.
    const detourMs = 2 * STEP_MS;
    const sent = sentByWorker(context, 'GET', `${appUrl}about`, detourMs);
    // A same-origin link: only the missing key can send it through the sign-in page.
    await page.evaluate((url) => location.assign(url), `${appUrl}about`);
    await page.getByRole('heading', { name: 'About' }).waitFor({ timeout: detourMs });
    page.off('framenavigated', record);
    assertSigned(await sent, 'host;x-amz-date;x-amz-security-token');
    assert.ok(visited.includes(`${base}?next=${encodeURIComponent('/api/app/about')}`), `went ${visited.join(' -> ')}`);
  });

  await step('renews the credentials after they expire and keeps calling the API', async () => {
    await page.goto(base);
    await page.locator('#session').waitFor();
    const renewed = page
      .waitForResponse((r) => r.url() === `${base}auth/signin/dev` && r.status() === 200, { timeout: STEP_MS })
      .catch((error) => assert.fail(`no renewal once the page's clock passed the expiration (${error.message})`));
    // As after a sleep: the page's clock jumps past the expiration, both timers are overdue.
    await page.clock.fastForward((CREDENTIAL_LIFETIME_S + 5) * 1000);
    await renewed;
    const whoami = await callWhoami(page);
    assert.notEqual(whoami.accessKeyId, firstKey, 'the credentials were not renewed');
    assert.equal(whoami.identityId, identityId, 'renewal keeps the identity');
    assert.equal(await page.locator('#session').isVisible(), true);
    assert.equal(await page.locator('#error').isVisible(), false, `the page shows: ${await page.locator('#error').textContent()}`);
    // The page handed the new credentials to the worker too.
    const sent = sentByWorker(context, 'GET', `${appUrl}notes`);
    await page.goto(`${appUrl}notes`);
    await page.getByRole('heading', { name: 'Notes of Bob Admin' }).waitFor();
    assert.match((await sent).headers().authorization, new RegExp(`Credential=${whoami.accessKeyId}/`));
  });

  let secondTab;

  await step('a new tab of the signed-in user needs no new sign-in', async () => {
    const signins = [];
    const count = (response) => response.url() === `${base}auth/signin/dev` && signins.push(response.status());
    context.on('response', count);
    secondTab = await context.newPage();
    secondTab.setDefaultTimeout(STEP_MS);
    await secondTab.goto(base);
    await secondTab.getByRole('status').filter({ hasText: 'Signed in as bob@corp.example.' }).waitFor();
    assert.equal(await secondTab.locator('#identity-id').textContent(), identityId);
    context.off('response', count);
    assert.deepEqual(signins, [], 'the new tab took the open tab\'s session');
  });

  await step('two tabs renew once, and both use the new credentials', async () => {
    await page.goto(base);
    await page.locator('#session').waitFor();
    const before = (await callWhoami(page)).accessKeyId;
    const signins = [];
    const count = (response) => response.url() === `${base}auth/signin/dev` && signins.push(response.status());
    context.on('response', count);
    // Both tabs' renewal timers come due at the same moment.
    await page.clock.fastForward((CREDENTIAL_LIFETIME_S + 5) * 1000);
    await page.waitForFunction(() => !document.getElementById('session').hidden);
    const first = await callWhoami(page);
    const second = await callWhoami(secondTab);
    // Give a second renewal, if any, time to show up.
    await page.waitForTimeout(2_000);
    context.off('response', count);
    assert.deepEqual(signins, [200], 'exactly one renewal across the two tabs');
    assert.notEqual(first.accessKeyId, before, 'renewed');
    assert.equal(second.accessKeyId, first.accessKeyId, 'the second tab took the renewed credentials');
  });

  await step('signs out in one tab: the other tab and the worker forget the credentials at once', async () => {
    await page.goto(base);
    await page.locator('#session').waitFor();
    // RP-initiated logout: the tab that signs out also ends the dev provider's session.
    const logout = secondTab.waitForRequest((r) => r.url().startsWith(`${base}dev-idp/logout?`));
    await secondTab.getByRole('button', { name: 'Sign out' }).click();
    const endSession = new URL((await logout).url()).searchParams;
    assert.equal(endSession.get('post_logout_redirect_uri'), base);
    assert.equal(endSession.get('client_id'), 'credbroker-dev');
    await secondTab.waitForURL(base);
    await secondTab.locator('#signin').waitFor();
    // The first tab says so without a reload.
    await page.getByRole('status').filter({ hasText: 'Not signed in.' }).waitFor();
    assert.equal(await page.locator('#session').isVisible(), false);
    await secondTab.close();
    await page.goto(appUrl);
    await page.waitForURL(`${base}?next=${encodeURIComponent('/api/app/')}`);
    await page.getByRole('status').filter({ hasText: 'Sign in to continue to /api/app/.' }).waitFor();
    await page.getByRole('button', { name: 'Sign in with dev' }).waitFor();
    await page.screenshot({ path: `${OUTPUT}signed-out.png`, fullPage: true });
  });

  await step('a hostile ?next= sends nobody off-site after sign-in', async () => {
    const offsite = [];
    await context.route(`${EVIL}**`, (route) => {
      offsite.push(route.request().url());
      return route.fulfill({ contentType: 'text/plain', body: 'off-site' });
    });
    for (const next of ['/\\evil.test', '/%5Cevil.test', '/%09/evil.test', '//evil.test', '/.//evil.test']) {
      const start = `${base}?next=${encodeURIComponent(next)}`;
      await page.goto(start);
      await page.getByRole('button', { name: 'Sign in with dev' }).click();
      await page.waitForURL(`${base}dev-idp/authorize?**`);
      await navigates(page, start, () => page.getByRole('button', { name: /Bob Admin/ }).click());
      await page.locator('#session').waitFor();
      await page.waitForTimeout(300);
      assert.equal(page.url(), start, `after sign-in with next=${next}`);
      await signOutAndReturn(page, base);
    }
    assert.deepEqual(offsite, []);
    await context.unroute(`${EVIL}**`);
    await page.goto(appUrl);
    await page.waitForURL(`${base}?next=${encodeURIComponent('/api/app/')}`);
  });

  await step("IdP mix-up: an answer that says another provider sent it is refused before the code goes anywhere", async () => {
    await page.getByRole('button', { name: 'Sign in with dev' }).click();
    await page.waitForURL(`${base}dev-idp/authorize?**`);
    const request = new URL(page.url()).searchParams;
    const tokenCalls = [];
    const count = (r) => r.url() === `${base}dev-idp/token` && tokenCalls.push(r.method());
    context.on('request', count);
    // What a malicious provider would send the browser back with: a code for this flow's state.
    const forged = new URL(request.get('redirect_uri'));
    forged.search = new URLSearchParams({ code: 'stolen', state: request.get('state'), iss: 'http://evil.test/' }).toString();
    await page.goto(forged.href);
    await page.locator('#error').filter({ hasText: 'iss_mismatch' }).waitFor();
    context.off('request', count);
    assert.deepEqual(tokenCalls, [], 'neither the code nor the PKCE verifier went to a token endpoint');
    assert.equal(new URL(page.url()).searchParams.get('code'), null, 'the code left the address bar');
    await page.goto(appUrl);
    await page.waitForURL(`${base}?next=${encodeURIComponent('/api/app/')}`);
  });

  await step('signing in again continues to the /api/app/ page the worker sent us from', async () => {
    await page.getByRole('button', { name: 'Sign in with dev' }).click();
    await page.waitForURL(`${base}dev-idp/authorize?**`);
    await navigates(page, appUrl, () => page.getByRole('button', { name: /Bob Admin/ }).click());
    await page.getByRole('heading', { name: 'Hello, Bob Admin!' }).waitFor();
  });

  await step('the browser reported no errors', async () => {
    assert.deepEqual(problems, []);
  });
});

// Unsigned navigations (a bookmark in a fresh browser, a hard reload that bypasses the worker, a
// browser that lost the worker): the gateway answers Accept: text/html with a page that goes to
// sign-in and back to the very URL asked for, query and fragment included.
test('unsigned navigations land on sign-in and come back to the URL asked for', { timeout: 3 * 60_000 }, async (t) => {
  const stack = await startStack(['--credential-lifetime', String(CREDENTIAL_LIFETIME_S)]);
  t.after(() => stack.stop());
  const browser = await launchChromium();
  t.after(() => browser.close());
  const context = await browser.newContext();
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_MS);
  const problems = [];
  context.on('weberror', (error) => problems.push(`page error: ${error.error().message}`));
  context.on('console', (message) => {
    // The unsigned navigation itself is a 403 the browser logs; anything else is a problem.
    if (message.type() === 'error' && !/status of 403/.test(message.text())) problems.push(`console error: ${message.text()}`);
  });
  const base = stack.url;
  const signinFor = (path) => `${base}index.html?next=${encodeURIComponent(path)}`;

  const step = stepper(t, page, stack);

  await step('a deep link in a fresh browser goes to sign-in and back to it, query and fragment included', async () => {
    const path = '/api/app/notes?sort=new&q=a%20b#latest';
    const deepLink = `${base}${path.slice(1)}`;
    await page.goto(deepLink);
    await page.waitForURL(signinFor(path));
    await page.getByRole('status').filter({ hasText: `Sign in to continue to ${path}` }).waitFor();
    await page.getByRole('button', { name: 'Sign in with dev' }).click();
    await page.waitForURL(`${base}dev-idp/authorize?**`);
    await navigates(page, deepLink, () => page.getByRole('button', { name: /Bob Admin/ }).click());
    await page.getByRole('heading', { name: 'Notes of Bob Admin' }).waitFor();
    assert.equal(page.url(), deepLink);
  });

  await step('a hard reload that bypasses the worker comes back signed, without a new sign-in', async () => {
    const about = `${base}api/app/about?from=mail`;
    // A link on this origin (a typed URL would take the worker's cross-site detour via sign-in).
    await navigates(page, about, () => page.evaluate((url) => location.assign(url), about));
    await page.getByRole('heading', { name: 'About' }).waitFor();
    // Shift+Reload: Chromium's cache-bypassing reload, which also skips the service worker for
    // that one load (the page's later navigations go through the worker again).
    const cdp = await context.newCDPSession(page);
    const unsigned = page.waitForResponse((r) => r.url() === about && r.status() === 403);
    await cdp.send('Page.reload', { ignoreCache: true });
    const answer = await unsigned;
    assert.match(answer.headers()['content-type'], /^text\/html/);
    await page.waitForURL(signinFor('/api/app/about?from=mail'));
    await page.waitForURL(about);
    await page.getByRole('heading', { name: 'About' }).waitFor();
    await cdp.detach();
  });

  await step('a worker unregistered mid-session is re-installed silently on the next navigation', async () => {
    const home = `${base}api/app/?tab=3`;
    const unregistered = await page.evaluate(async () =>
      (await Promise.all((await navigator.serviceWorker.getRegistrations()).map((r) => r.unregister()))).filter(Boolean).length,
    );
    assert.equal(unregistered, 1);
    await page.evaluate((url) => location.assign(url), home);
    await page.waitForURL(signinFor('/api/app/?tab=3'));
    await page.waitForURL(home);
    await page.getByRole('heading', { name: 'Hello, Bob Admin!' }).waitFor();
    assert.equal(await page.evaluate(async () => (await navigator.serviceWorker.getRegistrations()).length), 1);
  });

  await step('API clients keep the JSON 403 and the browser reported no errors', async () => {
    const answer = await page.request.get(`${base}api/app/`, { headers: { accept: 'application/json' } });
    assert.equal(answer.status(), 403);
    assert.deepEqual(await answer.json(), { message: 'Missing Authentication Token' });
    assert.deepEqual(problems, []);
  });
});
