// The browser client in node: sign-in flows (state, nonce, PKCE), renewal scheduling, clock
// skew, signed fetch for every body type, and the API-origin guard. Browser parts (location,
// storages, timers, fetch) are injected; the server side is tests/web/fakes.mjs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';

// CREDBROKER_MINIFIED=1 runs these tests against the minified build (tests/web/build.test.mjs).
const { createClient, decodeJwtPayload } = await import(
  process.env.CREDBROKER_MINIFIED ? '../../web/credbroker.min.js' : '../../web/credbroker.js'
);
import { ORIGIN, FakeClock, FakeLocks, FakeServers, fakeDocument, fakeWindow, jwt, settle } from './fakes.mjs';
import { presign } from '../../web/sigv4.js';

const START = Date.parse('2024-05-01T10:00:00Z');
const DEV_ISSUER = `${ORIGIN}/dev-idp`;

function setup({ skewMs = 0, lifetimeMs, storage, window = fakeWindow(), signBody, clock = new FakeClock(START), servers } = {}) {
  servers ??= new FakeServers(clock, { skewMs, lifetimeMs });
  const client = createClient({
    broker: ORIGIN,
    api: `${ORIGIN}/api/`,
    storage,
    window,
    fetch: servers.fetch,
    now: clock.now,
    setTimeout: clock.setTimeout,
    clearTimeout: clock.clearTimeout,
    signBody,
  });
  const events = [];
  for (const type of ['credentials', 'expired', 'error', 'signin-required']) {
    client.addEventListener(type, (e) => events.push({ type, detail: e.detail }));
  }
  return { clock, servers, client, window, events };
}

/** Runs the whole code flow: signIn, the provider's answer, handleRedirect. */
async function signInWithCode(env, provider = 'dev') {
  await env.client.signIn(provider);
  const code = env.servers.authorize(env.window.location.assigned);
  const state = new URL(env.window.location.assigned).searchParams.get('state');
  return env.client.handleRedirect(`${ORIGIN}/app/page?code=${code}&state=${state}&iss=${encodeURIComponent(DEV_ISSUER)}`);
}

function sha256Hex(bytes) {
  return createHash('sha256').update(bytes).digest('hex');
}

test('signIn uses the code flow with PKCE S256, state and nonce for public clients', async () => {
  const env = setup();
  await env.client.signIn('dev');
  const url = new URL(env.window.location.assigned);
  assert.equal(url.origin + url.pathname, `${ORIGIN}/dev-idp/authorize`);
  const p = url.searchParams;
  assert.equal(p.get('response_type'), 'code');
  assert.equal(p.get('client_id'), 'credbroker-dev');
  assert.equal(p.get('redirect_uri'), `${ORIGIN}/app/page`);
  assert.equal(p.get('code_challenge_method'), 'S256');
  assert.match(p.get('state'), /^[A-Za-z0-9_-]{43}$/);
  assert.match(p.get('nonce'), /^[A-Za-z0-9_-]{43}$/);
  assert.notEqual(p.get('state'), p.get('nonce'));
  assert.match(p.get('scope'), /^openid\b/);
  // The verifier stays in this tab's sessionStorage, never in the URL.
  const saved = JSON.parse(env.window.sessionStorage.getItem(`credbroker.flow.${p.get('state')}`));
  assert.equal(createHash('sha256').update(saved.verifier).digest('base64url'), p.get('code_challenge'));
  assert.ok(!url.href.includes(saved.verifier));
});

test('handleRedirect redeems the code, signs in at the broker and restores the URL', async () => {
  const env = setup();
  const result = await signInWithCode(env);
  assert.equal(result.identityId, 'eu-west-1:0000');
  assert.equal(result.subject, 'alice');
  assert.equal(result.returnTo, '/app/page?tab=2');
  assert.equal(env.window.location.href, `${ORIGIN}/app/page?tab=2`);
  const [signin] = env.servers.callsTo('/auth/signin/dev');
  assert.equal(decodeJwtPayload(JSON.parse(signin.init.body).id_token).sub, 'alice');
  assert.equal(env.events.filter((e) => e.type === 'credentials').length, 1);
  const creds = await env.client.credentials();
  assert.equal(creds.accessKeyId, 'ASIA1');
  assert.equal(creds.expiration.getTime(), START + 3600_000);
  // Who is signed in went to sessionStorage, not localStorage; no key, no token went anywhere.
  const saved = JSON.parse(env.window.sessionStorage.getItem('credbroker.session'));
  assert.deepEqual([saved.identityId, saved.provider, saved.expiration], ['eu-west-1:0000', 'dev', START + 3600_000]);
  assert.doesNotMatch(JSON.stringify(saved), /ASIA1|secret-1|token-1|rt-1|eyJ/);
  assert.equal(env.window.localStorage.length, 0);
});

test('a callback whose state this tab did not start is rejected before any token request', async () => {
  const env = setup();
  await env.client.signIn('dev');
  const code = env.servers.authorize(env.window.location.assigned);
  await assert.rejects(env.client.handleRedirect(`${ORIGIN}/app/page?code=${code}&state=forged`), { code: 'state_mismatch' });
  assert.equal(env.servers.callsTo('/dev-idp/token').length, 0);
  assert.equal(env.servers.callsTo('/auth/signin/dev').length, 0);
  assert.equal(env.client.session, null);
  // The code does not linger in the address bar.
  assert.ok(!env.window.location.href.includes('code='));
});

/** Starts a sign-in with `provider`; returns its code (issued by the fake dev provider) and state. */
async function startSignIn(env, provider = 'dev') {
  await env.client.signIn(provider);
  const code = env.servers.authorize(env.window.location.assigned);
  return { code, state: new URL(env.window.location.assigned).searchParams.get('state') };
}

test('IdP mix-up: an answer whose iss is another provider is refused before the code goes anywhere', async () => {
  for (const iss of ['https://evil.example', `${DEV_ISSUER}/`, 'https://accounts.google.com', null]) {
    const env = setup();
    const { code, state } = await startSignIn(env);
    const callback = `${ORIGIN}/app/page?code=${code}&state=${state}${iss === null ? '' : `&iss=${encodeURIComponent(iss)}`}`;
    // The dev provider advertises the iss parameter: an answer without one is refused too.
    await assert.rejects(env.client.handleRedirect(callback), { code: 'iss_mismatch' }, String(iss));
    assert.equal(env.servers.callsTo('/dev-idp/token').length, 0, 'neither code nor PKCE verifier was sent');
    assert.equal(env.client.session, null);
  }
});

test('IdP mix-up: an error answer is checked for iss too; a provider without iss support may omit it', async () => {
  const env = setup();
  const { state } = await startSignIn(env);
  await assert.rejects(env.client.handleRedirect(`${ORIGIN}/app/page?error=access_denied&state=${state}&iss=https%3A%2F%2Fevil.example`), {
    code: 'iss_mismatch',
  });
  // Google (no iss support advertised): the fragment answer without iss is taken.
  const google = setup();
  await google.client.signIn('google');
  const nonce = new URL(google.window.location.assigned).searchParams.get('nonce');
  const gstate = new URL(google.window.location.assigned).searchParams.get('state');
  const idToken = jwt({ sub: 'alice', nonce });
  assert.ok(await google.client.handleRedirect(`${ORIGIN}/app/page#id_token=${idToken}&state=${gstate}`));
});

test('each flow is bound to its redirect URI, which can differ per provider', async () => {
  const env = setup();
  const { code, state } = await startSignIn(env);
  await assert.rejects(env.client.handleRedirect(`${ORIGIN}/other/page?code=${code}&state=${state}&iss=${encodeURIComponent(DEV_ISSUER)}`), {
    code: 'redirect_mismatch',
  });
  assert.equal(env.servers.callsTo('/dev-idp/token').length, 0);
  const window = fakeWindow();
  const clock = new FakeClock(START);
  const servers = new FakeServers(clock);
  const client = createClient({
    broker: ORIGIN,
    window,
    fetch: servers.fetch,
    now: clock.now,
    setTimeout: clock.setTimeout,
    clearTimeout: clock.clearTimeout,
    redirectUri: { dev: '/callback/dev', google: '/callback/google' },
  });
  await client.signIn('dev');
  assert.equal(new URL(window.location.assigned).searchParams.get('redirect_uri'), `${ORIGIN}/callback/dev`);
  await client.signIn('google');
  assert.equal(new URL(window.location.assigned).searchParams.get('redirect_uri'), `${ORIGIN}/callback/google`);
});

test('a callback cannot be replayed', async () => {
  const env = setup();
  await env.client.signIn('dev');
  const code = env.servers.authorize(env.window.location.assigned);
  const state = new URL(env.window.location.assigned).searchParams.get('state');
  const callback = `${ORIGIN}/app/page?code=${code}&state=${state}&iss=${encodeURIComponent(DEV_ISSUER)}`;
  await env.client.handleRedirect(callback);
  await assert.rejects(env.client.handleRedirect(callback), { code: 'state_mismatch' });
});

test('an ID token with another nonce is refused and never reaches the broker', async () => {
  const env = setup();
  env.servers.nonceOverride = 'someone-elses-nonce';
  await assert.rejects(signInWithCode(env), { code: 'nonce_mismatch' });
  assert.equal(env.servers.callsTo('/auth/signin/dev').length, 0);
  assert.equal(env.events.at(-1).type, 'error');
});

test('a provider error in the callback is surfaced with its OAuth code', async () => {
  const env = setup();
  await env.client.signIn('dev');
  const state = new URL(env.window.location.assigned).searchParams.get('state');
  await assert.rejects(env.client.handleRedirect(`${ORIGIN}/app/page?error=access_denied&state=${state}&iss=${encodeURIComponent(DEV_ISSUER)}`), {
    code: 'access_denied',
  });
});

test('a page that is not a callback is left alone', async () => {
  const env = setup();
  assert.equal(await env.client.handleRedirect(`${ORIGIN}/app/page?tab=2`), null);
  assert.equal(env.servers.calls.length, 0);
});

test('Google web clients get the implicit id_token flow, answered in the fragment', async () => {
  const env = setup();
  await env.client.signIn('google', { returnTo: 'https://evil.example/steal' });
  const url = new URL(env.window.location.assigned);
  assert.equal(url.origin, 'https://accounts.google.com');
  assert.equal(url.searchParams.get('response_type'), 'id_token');
  assert.equal(url.searchParams.get('code_challenge'), null);
  const state = url.searchParams.get('state');
  const idToken = jwt({ sub: 'alice', nonce: url.searchParams.get('nonce') });
  const result = await env.client.handleRedirect(`${ORIGIN}/app/page#id_token=${idToken}&state=${state}`);
  assert.equal(result.provider, 'google');
  // A cross-origin returnTo is not followed.
  assert.equal(result.returnTo, '/');
  assert.equal(env.servers.callsTo('/dev-idp/token').length, 0);
});

test("a provider's client id, scopes and flow come from the broker's config", async () => {
  const env = setup();
  await env.client.signIn('corp');
  const url = new URL(env.window.location.assigned);
  assert.equal(url.origin, 'https://idp.example.com');
  assert.equal(url.searchParams.get('client_id'), 'corp-web');
  assert.equal(url.searchParams.get('scope'), 'openid email groups');
  assert.equal(url.searchParams.get('response_type'), 'id_token');
  assert.equal(url.searchParams.get('code_challenge'), null);
});

test('renewal is scheduled from the real expiration: max(60 s, 10% of the lifetime) early, at most half', async (t) => {
  for (const [lifetimeMin, leadSec] of [[60, 360], [15, 90], [5, 60], [1, 30]]) {
    await t.test(`${lifetimeMin}-minute credentials renew ${leadSec} s early`, async () => {
      // The page's clock is 2 minutes behind: timers still land at the server-time instants.
      const env = setup({ lifetimeMs: lifetimeMin * 60_000, skewMs: 120_000 });
      await signInWithCode(env);
      assert.equal(env.client.skewMs, 120_000);
      const lifetime = lifetimeMin * 60_000;
      assert.deepEqual(env.clock.pendingDelays(), [lifetime - leadSec * 1000, lifetime]);
    });
  }
});

test('the renewal timer renews with the refresh token and reschedules', async () => {
  const env = setup({ lifetimeMs: 3600_000 });
  await signInWithCode(env);
  await env.clock.advance(3240_000 - 1);
  assert.equal(env.servers.callsTo('/auth/signin/dev').length, 1);
  await env.clock.advance(1);
  assert.equal(env.servers.callsTo('/auth/signin/dev').length, 2);
  const refresh = new URLSearchParams(env.servers.callsTo('/dev-idp/token').at(-1).init.body);
  assert.equal(refresh.get('grant_type'), 'refresh_token');
  const [first, renewal] = env.servers.callsTo('/auth/signin/dev').map((call) => JSON.parse(call.init.body));
  assert.equal(first.identity_id, undefined, 'a first sign-in has no identity id to send');
  assert.equal(renewal.identity_id, 'eu-west-1:0000', 'a renewal sends back the identity id it was given');
  assert.equal((await env.client.credentials()).accessKeyId, 'ASIA2');
  assert.deepEqual(env.clock.pendingDelays(), [3240_000, 3600_000]);
  assert.equal(env.events.filter((e) => e.type === 'credentials').length, 2);
});

test('60-second credentials are renewed once per half lifetime, not in a loop', async () => {
  const env = setup({ lifetimeMs: 60_000 });
  await signInWithCode(env);
  await env.clock.advance(29_000);
  assert.equal(env.servers.callsTo('/auth/signin/dev').length, 1);
  await env.clock.advance(1_000);
  assert.equal(env.servers.callsTo('/auth/signin/dev').length, 2);
  assert.deepEqual(env.clock.pendingDelays(), [30_000, 60_000]);
});

test('a device that slept past the expiry renews with its refresh token instead of signing out', async () => {
  const env = setup();
  await signInWithCode(env);
  await env.clock.wake(3600_000 + 60_000);
  assert.equal(env.servers.callsTo('/auth/signin/dev').length, 2, 'one renewal, shared by both timers');
  assert.ok(!env.events.some((e) => e.type === 'expired'));
  assert.equal(env.client.session.subject, 'alice');
  assert.equal((await env.client.credentials()).accessKeyId, 'ASIA2');
});

test('concurrent callers share one renewal', async () => {
  const env = setup();
  await signInWithCode(env);
  env.clock.time += 3300_000; // past renewAt, timers not fired
  const all = await Promise.all([env.client.credentials(), env.client.credentials(), env.client.credentials()]);
  assert.deepEqual(all.map((c) => c.accessKeyId), ['ASIA2', 'ASIA2', 'ASIA2']);
  assert.equal(env.servers.callsTo('/auth/signin/dev').length, 2);
  assert.equal(env.servers.callsTo('/dev-idp/token').length, 2);
});

/** Advances the fake clock through each throttled wait, checking that it honours Retry-After with jitter. */
async function waitOutThrottling(env, waits, retryAfterMs) {
  for (let i = 0; i < waits; i++) {
    await settle();
    const wait = env.clock.pendingDelays().find((ms) => ms >= retryAfterMs && ms <= 2 * retryAfterMs);
    assert.ok(wait !== undefined, `a wait of Retry-After plus jitter, got ${env.clock.pendingDelays()}`);
    await env.clock.advance(wait);
  }
}

test('a sign-in throttled with 429 pool_throttled waits Retry-After (plus jitter) and asks again', async () => {
  const env = setup();
  env.servers.throttle = 3;
  env.servers.retryAfter = '3';
  const signedIn = env.client.signInWithIdToken('dev', jwt({ sub: 'alice' }));
  await waitOutThrottling(env, 3, 3_000);
  assert.equal((await signedIn).subject, 'alice');
  assert.equal(env.servers.callsTo('/auth/signin/dev').length, 4);
  assert.ok(!env.events.some((e) => e.type === 'error'), 'no error while retries remain');
});

test('a throttled renewal is retried without an error event; the credentials keep working', async () => {
  const env = setup();
  await signInWithCode(env);
  env.servers.throttle = 2;
  const renewal = env.client.renew();
  await waitOutThrottling(env, 2, 2_000);
  await renewal;
  assert.equal((await env.client.credentials()).accessKeyId, 'ASIA2');
  assert.ok(!env.events.some((e) => e.type === 'error'));
});

test('throttling is retried a bounded number of times, then surfaces as pool_throttled', async () => {
  const env = setup();
  env.servers.throttle = 100;
  env.servers.retryAfter = 'Wed, 21 Oct 2015 07:28:00 GMT'; // not seconds: one second is assumed
  const signedIn = env.client.signInWithIdToken('dev', jwt({ sub: 'alice' }));
  const outcome = signedIn.then(() => null, (error) => error);
  await waitOutThrottling(env, 4, 1_000);
  const error = await outcome;
  assert.equal(error?.code, 'pool_throttled');
  assert.equal(error.status, 429);
  assert.equal(env.servers.callsTo('/auth/signin/dev').length, 5);
});

test('a huge Retry-After is capped at 30 s', async () => {
  const env = setup();
  env.servers.throttle = 1;
  env.servers.retryAfter = '86400';
  const signedIn = env.client.signInWithIdToken('dev', jwt({ sub: 'alice' }));
  await waitOutThrottling(env, 1, 30_000);
  assert.equal((await signedIn).subject, 'alice');
});

test('without a way to renew silently: signin-required, then expired', async () => {
  const env = setup();
  // The implicit flow gives no refresh token, and there is no document for an iframe.
  await env.client.signIn('google');
  const url = new URL(env.window.location.assigned);
  const idToken = jwt({ sub: 'alice', nonce: url.searchParams.get('nonce') });
  await env.client.handleRedirect(`${ORIGIN}/app/page#id_token=${idToken}&state=${url.searchParams.get('state')}`);
  await env.clock.advance(3240_000);
  assert.ok(env.events.some((e) => e.type === 'signin-required'));
  // Still valid: the old credentials keep working until they expire.
  assert.equal((await env.client.credentials()).accessKeyId, 'ASIA1');
  await env.clock.advance(360_000);
  assert.ok(env.events.some((e) => e.type === 'expired'));
  assert.equal(env.client.session, null);
  await assert.rejects(env.client.credentials(), { code: 'not_signed_in' });
});

test('signed requests carry the identity assertion of the current credentials, renewed with them', async () => {
  const env = setup({ lifetimeMs: 3600_000 });
  await signInWithCode(env);
  await env.client.fetch(`${ORIGIN}/api/whoami`);
  const sent = () => new Headers(env.servers.callsTo('/api/whoami').at(-1).init.headers);
  assert.equal(sent().get('x-credbroker-assertion'), 'assertion-1');
  // Not part of the signature: the gateway forwards it, the app verifies it (docs/identity.md).
  assert.doesNotMatch(sent().get('authorization'), /x-credbroker-assertion/);
  await env.clock.advance(3240_000);
  assert.equal((await env.client.credentials()).assertion, 'assertion-2');
  await env.client.fetch(`${ORIGIN}/api/whoami`);
  assert.equal(sent().get('x-credbroker-assertion'), 'assertion-2');
});

test('the signing clock follows the broker serverTime', async () => {
  const env = setup({ skewMs: -15 * 60_000 }); // the page's clock is 15 minutes fast
  await signInWithCode(env);
  assert.equal(env.client.skewMs, -15 * 60_000);
  const response = await env.client.fetch(`${ORIGIN}/api/whoami`);
  assert.equal(response.status, 200);
  const sent = new Headers(env.servers.callsTo('/api/whoami')[0].init.headers);
  assert.equal(sent.get('x-amz-date'), '20240501T094500Z');
});

test('a 403 "Signature expired" re-measures the clock from Date and retries once', async () => {
  const env = setup();
  await signInWithCode(env);
  env.servers.skewMs = 10 * 60_000; // the server clock jumps ahead after sign-in
  const response = await env.client.fetch(`${ORIGIN}/api/whoami`);
  assert.equal(response.status, 200);
  const calls = env.servers.callsTo('/api/whoami');
  assert.equal(calls.length, 2);
  assert.equal(new Headers(calls[0].init.headers).get('x-amz-date'), '20240501T100000Z');
  assert.equal(new Headers(calls[1].init.headers).get('x-amz-date'), '20240501T101000Z');
  assert.ok(Math.abs(env.client.skewMs - 600_000) <= 1000);
});

test('other 403s are returned as they are, without a retry', async () => {
  const env = setup();
  await signInWithCode(env);
  env.servers.api = () => new Response('{"message":"User is not authorized"}', { status: 403 });
  const response = await env.client.fetch(`${ORIGIN}/api/admin`);
  assert.equal(response.status, 403);
  assert.equal((await response.json()).message, 'User is not authorized');
  assert.equal(env.servers.callsTo('/api/admin').length, 1);
});

test('requests outside the API prefixes are never signed nor sent', async () => {
  const env = setup();
  await signInWithCode(env);
  const before = env.servers.calls.length;
  for (const url of ['https://evil.example/api/x', `${ORIGIN}/auth/config`, 'http://127.0.0.1:9999/api/x']) {
    await assert.rejects(env.client.fetch(url), { code: 'not_api_url' });
  }
  assert.equal(env.servers.calls.length, before);
});

const form = new FormData();
form.append('title', 'héllo');
form.append('file', new Blob(['file body'], { type: 'text/plain' }), 'a.txt');
const bodies = [
  ['string', 'héllo wörld', new TextEncoder().encode('héllo wörld'), /^text\/plain/],
  ['ArrayBuffer', new Uint8Array([1, 2, 3]).buffer, new Uint8Array([1, 2, 3]), null],
  ['Uint8Array view', new Uint8Array([9, 1, 2, 3, 9]).subarray(1, 4), new Uint8Array([1, 2, 3]), null],
  ['DataView', new DataView(new Uint8Array([7, 8]).buffer), new Uint8Array([7, 8]), null],
  ['Blob', new Blob(['blob ', 'parts'], { type: 'application/x-thing' }), new TextEncoder().encode('blob parts'), /^application\/x-thing$/],
  ['URLSearchParams', new URLSearchParams({ a: '1', b: 'é &' }), new TextEncoder().encode('a=1&b=%C3%A9+%26'), /^application\/x-www-form-urlencoded/],
  ['FormData', form, null, /^multipart\/form-data; ?boundary=/],
];

for (const [name, body, expected, contentType] of bodies) {
  test(`signed fetch hashes and sends the exact bytes of a ${name} body`, async () => {
    const env = setup({ signBody: true });
    await signInWithCode(env);
    const { client } = env;
    const response = await client.fetch(`${ORIGIN}/api/echo`, { method: 'POST', body });
    assert.equal(response.status, 200, 'the fake gateway verified the signature over the sent bytes');
    const { init } = env.servers.callsTo('/api/echo')[0];
    const sent = new Uint8Array(init.body);
    const headers = new Headers(init.headers);
    assert.equal(headers.get('x-amz-content-sha256'), sha256Hex(sent));
    if (expected) assert.deepEqual(sent, expected);
    if (contentType) {
      assert.match(headers.get('content-type'), contentType);
      assert.match(headers.get('authorization'), /SignedHeaders=content-type;host;/);
    }
    if (name === 'FormData') {
      const parsed = await new Response(sent, { headers: { 'content-type': headers.get('content-type') } }).formData();
      assert.equal(parsed.get('title'), 'héllo');
      assert.equal(await parsed.get('file').text(), 'file body');
    }
  });
}

test('presigned URLs carry a verifiable query signature', async () => {
  const env = setup();
  await signInWithCode(env);
  const url = new URL(await env.client.presign(`${ORIGIN}/api/files/report.pdf?v=2`, { expires: 240 }));
  const p = url.searchParams;
  assert.equal(p.get('v'), '2');
  assert.equal(p.get('X-Amz-Expires'), '240');
  assert.equal(p.get('X-Amz-Credential'), 'ASIA1/20240501/eu-west-1/execute-api/aws4_request');
  assert.equal(p.get('X-Amz-Security-Token'), 'token-1');
  const signature = p.get('X-Amz-Signature');
  p.delete('X-Amz-Signature');
  const again = await presign(
    env.servers.signer,
    { method: 'GET', host: url.host, path: url.pathname, query: '?v=2' },
    { accessKeyId: 'ASIA1', secretAccessKey: 'secret-1', sessionToken: 'token-1' },
    new Date(START),
    240,
  );
  assert.equal(again.signature, signature);
  await assert.rejects(env.client.presign('https://evil.example/x'), { code: 'not_api_url' });
});

test('presign promises no more than the five minutes API Gateway honours', async () => {
  const env = setup();
  await signInWithCode(env);
  const byDefault = new URL(await env.client.presign(`${ORIGIN}/api/files/a.pdf`));
  assert.equal(byDefault.searchParams.get('X-Amz-Expires'), '300');
  for (const expires of [301, 3600, 0, -1, Number.NaN]) {
    await assert.rejects(env.client.presign(`${ORIGIN}/api/files/a.pdf`, { expires }), { code: 'expires_too_long' });
  }
});

test("storage: 'local' must be asked for; 'memory' keeps nothing", async () => {
  const local = setup({ storage: 'local' });
  await signInWithCode(local);
  assert.ok(local.window.localStorage.getItem('credbroker.session'));
  assert.equal(local.window.sessionStorage.getItem('credbroker.session'), null);

  const memory = setup({ storage: 'memory' });
  await signInWithCode(memory);
  assert.equal(memory.window.localStorage.getItem('credbroker.session'), null);
  assert.equal(memory.window.sessionStorage.getItem('credbroker.session'), null);
  assert.equal((await memory.client.credentials()).accessKeyId, 'ASIA1');
});

test('a reload keeps no key: with no open tab, worker or silent sign-in to take them from, it is signed out', async () => {
  const env = setup();
  await signInWithCode(env);
  const reloaded = setup({ window: env.window });
  reloaded.clock.time = env.clock.time + 60_000;
  assert.equal(reloaded.client.session, null);
  assert.equal(await reloaded.client.ready, null);
  // It tried to sign in silently with the same provider (here: no document for the iframe).
  assert.ok(reloaded.events.some((e) => e.type === 'signin-required' && e.detail.reason === 'no_silent_renewal'));
  assert.equal(env.window.sessionStorage.getItem('credbroker.session'), null);
  await assert.rejects(reloaded.client.credentials(), { code: 'not_signed_in' });
  assert.deepEqual(reloaded.clock.pendingDelays(), []);
});

/** A BroadcastChannel that does not keep the test process alive once the test is done. */
class TestChannel extends BroadcastChannel {
  constructor(name) {
    super(name);
    this.unref();
  }
}

/** Keeps the event loop running (for the unref'd channels' messages) while `fn` runs. */
async function whileAlive(fn) {
  const keep = setInterval(() => {}, 1_000);
  try {
    return await fn();
  } finally {
    clearInterval(keep);
  }
}

test('a reloaded or new tab takes the credentials from an open tab, over the channel, not from storage', () => whileAlive(async () => {
  const first = setup({ window: Object.assign(fakeWindow(), { BroadcastChannel: TestChannel }) });
  await signInWithCode(first);
  const second = setup({ window: Object.assign(fakeWindow(), { BroadcastChannel: TestChannel }) });
  second.clock.time = first.clock.time + 60_000;
  const session = await second.client.ready;
  assert.equal(session.identityId, 'eu-west-1:0000');
  assert.equal((await second.client.credentials()).accessKeyId, 'ASIA1');
  assert.equal(second.servers.callsTo('/auth/signin/dev').length, 0, 'no new sign-in');
  // Signing out in one tab signs out the other.
  await first.client.signOut({ atProvider: false });
  await settle();
  assert.equal(second.client.session, null);
  assert.equal(second.window.sessionStorage.getItem('credbroker.session'), null);
}));

test('a reloaded tab with no tab or worker to take the session from signs in again silently, as the same identity', async () => {
  const env = setup();
  await signInWithCode(env);
  // The reload: same tab storage (who, no key), the provider's session alive for an iframe.
  env.window.document = fakeDocument(env.servers);
  const reloaded = setup({ window: env.window, clock: env.clock, servers: env.servers });
  const session = await reloaded.client.ready;
  assert.equal(session.identityId, 'eu-west-1:0000');
  assert.equal((await reloaded.client.credentials()).accessKeyId, 'ASIA2');
  const [, again] = env.servers.callsTo('/auth/signin/dev');
  assert.equal(JSON.parse(again.init.body).identity_id, 'eu-west-1:0000', 'the renewal sends the identity id back');
  assert.doesNotMatch(env.window.sessionStorage.getItem('credbroker.session'), /ASIA2|secret-2|token-2/);
});

test('tabs a restored browser reloads at once sign in silently once between them (Web Locks)', () => whileAlive(async () => {
  const first = setup();
  await signInWithCode(first);
  const locks = new FakeLocks();
  const reloads = [];
  for (let i = 0; i < 3; i++) {
    // Each restored tab has its own copy of sessionStorage.
    const window = Object.assign(fakeWindow(), { BroadcastChannel: TestChannel, document: fakeDocument(first.servers), navigator: { locks } });
    window.sessionStorage.setItem('credbroker.session', first.window.sessionStorage.getItem('credbroker.session'));
    reloads.push(setup({ window, clock: first.clock, servers: first.servers }));
  }
  // The tabs wait a moment (fake time) for each other's answers.
  const ready = Promise.all(reloads.map((tab) => tab.client.ready));
  let settled = false;
  ready.finally(() => (settled = true));
  for (let i = 0; i < 100 && !settled; i++) await first.clock.wake(100);
  const sessions = await ready;
  assert.equal(first.servers.callsTo('/auth/signin/dev').length, 2, 'one sign-in, then one silent sign-in for all three tabs');
  assert.deepEqual(sessions.map((s) => s?.identityId), ['eu-west-1:0000', 'eu-west-1:0000', 'eu-west-1:0000']);
  const keys = await Promise.all(reloads.map(async (tab) => (await tab.client.credentials()).accessKeyId));
  assert.deepEqual(keys, ['ASIA2', 'ASIA2', 'ASIA2']);
  for (const tab of reloads) await tab.client.signOut({ atProvider: false });
}));
