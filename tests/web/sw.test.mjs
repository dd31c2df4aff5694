// The transparent-mode service worker, run in node with a minimal worker global (`self`,
// clients, an in-memory IndexedDB) and a fake gateway that verifies what the worker sends.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { ORIGIN, FakeClock, FakeServers } from './fakes.mjs';

const WORKER_FILE = process.env.CREDBROKER_MINIFIED ? 'credbroker-sw.min.js' : 'credbroker-sw.js';

const clock = new FakeClock(Date.now());
const gateway = new FakeServers(clock);
const listeners = new Map();
const idbData = new Map();
const pages = [];

globalThis.self = {
  registration: { scope: `${ORIGIN}/api/` },
  location: new URL(`${ORIGIN}/credbroker-sw.js?signin=%2F`),
  addEventListener: (type, fn) => listeners.set(type, fn),
  skipWaiting: async () => {},
  clients: { claim: async () => {}, matchAll: async () => pages },
};
globalThis.fetch = gateway.fetch;
globalThis.indexedDB = {
  open() {
    const request = {};
    const db = {
      createObjectStore() {},
      close() {},
      transaction() {
        const tx = {};
        const done = (result) => {
          setTimeout(() => tx.oncomplete());
          return { result };
        };
        tx.objectStore = () => ({
          put: (value, key) => done(idbData.set(key, structuredClone(value)) && key),
          get: (key) => done(structuredClone(idbData.get(key))),
          delete: (key) => done(idbData.delete(key) && undefined),
        });
        return tx;
      },
    };
    setTimeout(() => {
      request.result = db;
      request.onupgradeneeded?.();
      request.onsuccess();
    });
    return request;
  },
};

let generation = 0;
/** Loads (or, to simulate the browser restarting the worker, reloads) the worker module. */
async function startWorker() {
  listeners.clear();
  // CREDBROKER_MINIFIED=1 runs these tests against the minified build (tests/web/build.test.mjs).
  await import(`../../web/${WORKER_FILE}?generation=${generation++}`);
}

/** A window of this origin (a page running the client). */
const PAGE = { type: 'window', url: `${ORIGIN}/` };

async function message(data, source = PAGE) {
  let done;
  const acks = [];
  listeners.get('message')({ data, source, ports: [{ postMessage: (m) => acks.push(m) }], waitUntil: (p) => (done = p) });
  await done;
  return acks;
}

/**
 * Dispatches a fetch event; returns the response promise, or null when the worker let it pass.
 * Navigations come from this origin's demo page unless `referrer` says otherwise, as a
 * top-level document unless `destination` does.
 */
function dispatch(request, mode, { referrer = `${ORIGIN}/`, destination = 'document' } = {}) {
  if (mode) Object.defineProperty(request, 'mode', { value: mode });
  if (mode === 'navigate') {
    Object.defineProperty(request, 'referrer', { value: referrer });
    Object.defineProperty(request, 'destination', { value: destination });
  }
  let response = null;
  listeners.get('fetch')({ request, respondWith: (p) => (response = p) });
  return response;
}

const credentialsMessage = (expiresInMs = 3600_000) => ({
  type: 'credbroker:credentials',
  credentials: {
    accessKeyId: 'ASIA7',
    secretAccessKey: 'secret-7',
    sessionToken: 'token-7',
    expiration: clock.now() + expiresInMs,
    assertion: 'assertion-7',
  },
  skewMs: 0,
  region: 'eu-west-1',
  service: 'execute-api',
});

test('without credentials a navigation is redirected to the sign-in page with ?next=', async () => {
  await startWorker();
  const response = await dispatch(new Request(`${ORIGIN}/api/app/page?x=1`), 'navigate');
  assert.equal(response.status, 303);
  assert.equal(response.headers.get('location'), `${ORIGIN}/?next=%2Fapi%2Fapp%2Fpage%3Fx%3D1`);
  assert.equal(gateway.calls.length, 0);
});

test('requests outside the scope pass through untouched', async () => {
  assert.equal(dispatch(new Request(`${ORIGIN}/static/app.js`)), null);
  assert.equal(dispatch(new Request('https://cdn.example/api/x.js')), null);
});

test('with credentials, a navigation is signed and re-sent with manual redirects', async () => {
  const acks = await message(credentialsMessage());
  assert.deepEqual(acks, [{ type: 'credbroker:stored' }]);
  const response = await dispatch(new Request(`${ORIGIN}/api/app/`), 'navigate');
  assert.equal(response.status, 200, 'the gateway verified the signature');
  const { init } = gateway.calls.at(-1);
  assert.equal(init.mode, 'same-origin');
  assert.equal(init.redirect, 'manual');
  assert.match(new Headers(init.headers).get('authorization'), /^AWS4-HMAC-SHA256 Credential=ASIA7\//);
  // The page's identity assertion goes with every signed request of the worker too.
  assert.equal(new Headers(init.headers).get('x-credbroker-assertion'), 'assertion-7');
});

test('a multipart form post is signed over its exact bytes and keeps its content-type', async () => {
  const form = new FormData();
  form.append('note', 'hello');
  form.append('upload', new Blob(['%PDF-1.7 bytes']), 'doc.pdf');
  const request = new Request(`${ORIGIN}/api/app/upload`, { method: 'POST', body: form });
  const contentType = request.headers.get('content-type');
  const response = await dispatch(request, 'navigate');
  assert.equal(response.status, 200);
  const { init } = gateway.calls.at(-1);
  const headers = new Headers(init.headers);
  assert.equal(headers.get('content-type'), contentType);
  assert.match(headers.get('authorization'), /SignedHeaders=content-type;host;x-amz-date;x-amz-security-token,/);
  const parsed = await new Response(init.body, { headers: { 'content-type': contentType } }).formData();
  assert.equal(parsed.get('note'), 'hello');
  assert.equal(await parsed.get('upload').text(), '%PDF-1.7 bytes');
});

test('an image (no-cors) request is signed too, as same-origin so Authorization survives', async () => {
  const response = await dispatch(new Request(`${ORIGIN}/api/app/logo.png`), 'no-cors');
  assert.equal(response.status, 200);
  assert.equal(gateway.calls.at(-1).init.mode, 'same-origin');
});

test('the key stays in memory: after a restart the worker takes it again from an open page', async () => {
  await message(credentialsMessage());
  // Page scripts of this origin can read IndexedDB: it holds no key and no token.
  assert.doesNotMatch(JSON.stringify([...idbData.values()]), /secret-7|token-7|assertion-7/);
  assert.ok(idbData.get('current').expiration > clock.now(), 'it knows a session is open');
  await startWorker();
  const asked = [];
  // An app page under the scope (server-rendered: it would never answer) is not even asked.
  pages.push({ url: `${ORIGIN}/api/app/`, postMessage: () => assert.fail('a page under the scope was asked') });
  pages.push({
    url: `${ORIGIN}/`,
    postMessage: (data, [port]) => {
      asked.push(data.type);
      port.postMessage(credentialsMessage());
    },
  });
  const response = await dispatch(new Request(`${ORIGIN}/api/whoami`));
  assert.deepEqual(asked, ['credbroker:need-credentials']);
  assert.equal(response.status, 200);
  assert.match(new Headers(gateway.calls.at(-1).init.headers).get('authorization'), /Credential=ASIA7\//);
  pages.splice(1);
  // Restarted with only the app's own page open: a navigation goes to the sign-in page, unsigned.
  await startWorker();
  const before = gateway.calls.length;
  const nav = await dispatch(new Request(`${ORIGIN}/api/app/`), 'navigate');
  assert.equal(nav.status, 303);
  assert.equal(gateway.calls.length, before);
  pages.length = 0;
});

test('expiring credentials: open pages are asked; without an answer, sign in again', async () => {
  await message(credentialsMessage(2_000));
  const asked = [];
  pages.push({
    url: `${ORIGIN}/`,
    postMessage: (data, [port]) => {
      asked.push(data.type);
      port.postMessage({ type: 'credbroker:no-credentials', reason: 'login_required' });
    },
  });
  const before = gateway.calls.length;
  const response = await dispatch(new Request(`${ORIGIN}/api/app/`), 'navigate');
  assert.deepEqual(asked, ['credbroker:need-credentials']);
  assert.equal(response.status, 303);
  assert.equal(new URL(response.headers.get('location')).pathname, '/');
  assert.equal(gateway.calls.length, before);
  pages.length = 0;
});

test('a page that answers with fresh credentials keeps requests flowing', async () => {
  await message(credentialsMessage(2_000));
  pages.push({ url: `${ORIGIN}/`, postMessage: (_data, [port]) => port.postMessage(credentialsMessage()) });
  const response = await dispatch(new Request(`${ORIGIN}/api/whoami`));
  assert.equal(response.status, 200);
  pages.length = 0;
});

test('after sign-out, fetches get a 401 problem and navigations go to sign-in', async () => {
  await message({ type: 'credbroker:signout' });
  const api = await dispatch(new Request(`${ORIGIN}/api/whoami`));
  assert.equal(api.status, 401);
  assert.equal((await api.json()).code, 'signin_required');
  const nav = await dispatch(new Request(`${ORIGIN}/api/app/`), 'navigate');
  assert.equal(nav.status, 303);
  assert.equal(idbData.get('current').credentials, null, 'the secret is gone from IndexedDB');
});

test('messages from anything but a window of this origin are ignored', async () => {
  await message(credentialsMessage());
  for (const source of [null, { type: 'worker', url: `${ORIGIN}/other-sw.js` }, { type: 'window', url: 'https://evil.test/' }]) {
    // Not even acknowledged (a handled message is: see above).
    assert.deepEqual(await message({ type: 'credbroker:signout' }, source), []);
  }
  const response = await dispatch(new Request(`${ORIGIN}/api/whoami`));
  assert.equal(response.status, 200, 'still signed in');
});

test('the sign-in page comes from the script URL, and only as a same-origin path', async () => {
  for (const [signin, expected] of [['%2Fsignin%3Fa%3D1', '/signin'], ['https%3A%2F%2Fevil.test%2F', '/'], ['%2F%5Cevil.test', '/']]) {
    self.location = new URL(`${ORIGIN}/credbroker-sw.js?signin=${signin}`);
    await startWorker();
    await message({ type: 'credbroker:signout' });
    const response = await dispatch(new Request(`${ORIGIN}/api/app/`), 'navigate');
    const location = new URL(response.headers.get('location'));
    assert.equal(location.origin, ORIGIN);
    assert.equal(location.pathname, expected);
  }
  self.location = new URL(`${ORIGIN}/credbroker-sw.js?signin=%2F`);
  await startWorker();
});

test('navigations from another site, or with no referrer, are not signed: they go through the sign-in page', async () => {
  await message(credentialsMessage());
  const before = gateway.calls.length;
  for (const referrer of ['https://evil.test/form.html', '', 'about:client', 'http://127.0.0.1:9999/']) {
    for (const method of ['GET', 'POST']) {
      const body = method === 'POST' ? new URLSearchParams({ text: 'forged' }) : undefined;
      const response = await dispatch(new Request(`${ORIGIN}/api/app/notes?x=1`, { method, body }), 'navigate', { referrer });
      assert.equal(response.status, 303, `${method} from ${JSON.stringify(referrer)}`);
      assert.equal(response.headers.get('location'), `${ORIGIN}/?next=%2Fapi%2Fapp%2Fnotes%3Fx%3D1`);
    }
  }
  assert.equal(gateway.calls.length, before, 'nothing was sent to the API');
  // The same navigation from this origin is signed.
  const response = await dispatch(new Request(`${ORIGIN}/api/app/notes?x=1`), 'navigate', { referrer: `${ORIGIN}/?next=x` });
  assert.equal(response.status, 200);
  assert.match(new Headers(gateway.calls.at(-1).init.headers).get('authorization'), /Credential=ASIA7\//);
});

test('another site framing an app page gets a 403, unsigned', async () => {
  const before = gateway.calls.length;
  const response = await dispatch(new Request(`${ORIGIN}/api/app/`), 'navigate', { referrer: 'https://evil.test/', destination: 'iframe' });
  assert.equal(response.status, 403);
  assert.equal((await response.json()).code, 'cross_site_frame');
  assert.equal(gateway.calls.length, before);
});

test('a redirected signed subresource request is not followed with its signature', async () => {
  await message(credentialsMessage());
  gateway.api = (u, init) => {
    assert.equal(init.redirect, 'manual', 'every signed request is sent with manual redirects');
    return { type: 'opaqueredirect', status: 0, headers: new Headers() };
  };
  try {
    const followed = await dispatch(new Request(`${ORIGIN}/api/app/old`));
    assert.equal(followed.status, 502);
    assert.equal((await followed.json()).code, 'redirect_not_followed');
    // A caller that asked for manual redirects gets the opaque redirect as it is.
    const manual = await dispatch(new Request(`${ORIGIN}/api/app/old`, { redirect: 'manual' }));
    assert.equal(manual.type, 'opaqueredirect');
  } finally {
    gateway.api = null;
  }
});
