// credbroker transparent mode: a module service worker that SigV4-signs every same-origin
// request under its scope (navigations, form posts, images, scripts, fetch/XHR) with the
// credentials the page hands it (client.enableTransparentMode()).
//
// - Credentials arrive by postMessage from window clients of this origin and are kept in this
//   worker's memory only: IndexedDB, which any page script of this origin can read, keeps who
//   is signed in and until when, never the secret key or the session token (docs/security.md,
//   "Secrets in the browser"). A worker the browser stopped and restarted asks the open pages
//   outside its scope (where the client runs) for them; with none, a navigation goes to the sign-in page, which
//   takes them from another tab or signs in again silently and sends the user on. Sign-out
//   forgets everything. The sign-in page (`signinUrl`) comes from the script URL's
//   `?signin=` (set by the page that registered the worker), never from a message, and is a
//   same-origin path (return-url.js).
// - Cross-site requests are not signed (docs/security.md, "Transparent mode and cross-site
//   requests"): a navigation is signed only when its referrer is this origin. Another site's
//   top-level navigation (any method; an empty referrer counts as another site) is sent to
//   `signinUrl?next=<path>` instead, from where the page continues to <path> with a
//   same-origin GET; another site's frame gets a 403. Requests other than navigations reach
//   this worker only from pages it controls (this origin's).
// - A navigation without usable credentials is redirected to the sign-in page
//   (`signinUrl?next=<path>`), not answered with a JSON 403.
// - Bodies are read as bytes, signed and re-sent with the same content-type (the multipart
//   boundary included).
// - Redirects are never followed with the signature on: navigations are re-sent with
//   `redirect: 'manual'`, so a redirect (a form's 303) comes back to the browser, which
//   navigates again through this worker and the next hop is signed only if it is in scope.
//   A signed subresource request that gets redirected cannot be followed here (a worker never
//   sees the target of an opaque redirect, and the browser would carry Authorization along to
//   any same-origin target): it is answered with a 502 problem `redirect_not_followed`.
// - Requests outside the scope's path or origin are not touched.

import { createSigner, SigningKeyCache } from './sigv4.js';
import { SkewClock, signedFetch } from './signed-fetch.js';
import { returnPath } from './return-url.js';

const DB_NAME = 'credbroker-sw';
const STORE = 'state';
const STATE_KEY = 'current';
/** Credentials this close to expiry are not used (the request could arrive after it). */
const MIN_USABLE_MS = 5_000;
/** How long to wait for an open page to supply fresh credentials. */
const ASK_TIMEOUT_MS = 3_000;

const clock = new SkewClock();
const keyCache = new SigningKeyCache();
// { credentials (null once signed out or expired, and after a restart), skewMs, region,
// service, session (who; null once signed out), expiration }; undefined until loaded from
// IndexedDB, null when nothing was ever stored.
let state;
let signer = null;

self.addEventListener('install', (event) => event.waitUntil(self.skipWaiting()));
self.addEventListener('activate', (event) => event.waitUntil(self.clients.claim()));
self.addEventListener('message', (event) => {
  if (!fromWindowOfThisOrigin(event.source)) return;
  // The page waits for the answer (an acknowledgement by default) before navigating into the scope.
  const answer = onMessage(event.data).catch(() => undefined);
  event.waitUntil(answer.then((reply) => event.ports[0]?.postMessage(reply ?? { type: 'credbroker:stored' })));
});
self.addEventListener('fetch', (event) => {
  if (!inScope(new URL(event.request.url))) return;
  event.respondWith(handle(event.request));
});

function fromWindowOfThisOrigin(source) {
  return source?.type === 'window' && sameOrigin(source.url);
}

function sameOrigin(url) {
  try {
    return new URL(url).origin === self.location.origin;
  } catch {
    return false;
  }
}

/** The sign-in page, from the script URL the registering page chose (`?signin=`). */
function signinUrl() {
  return returnPath(new URL(self.location.href).searchParams.get('signin') ?? '/', self.location.origin);
}

function inScope(url) {
  const scope = new URL(self.registration.scope);
  return url.origin === scope.origin && url.pathname.startsWith(scope.pathname);
}

async function onMessage(message) {
  if (message?.type === 'credbroker:credentials') await save(fromMessage(message));
  else if (message?.type === 'credbroker:signout') await forgetCredentials();
  else if (message?.type === 'credbroker:session?') return sessionAnswer(await load());
}

// A new tab asks for the session, so that it and this worker agree on who is signed in.
function sessionAnswer(current) {
  if (!usable(current)) return { type: 'credbroker:signout' };
  const { credentials, skewMs, region, service, session } = current;
  return { type: 'credbroker:credentials', credentials, skewMs, region, service, session };
}

async function forgetCredentials() {
  const current = await load();
  if (current) await save({ ...current, credentials: null, session: null, expiration: null });
}

function fromMessage(message) {
  const { accessKeyId, secretAccessKey, sessionToken, expiration, assertion } = message.credentials ?? {};
  const valid = accessKeyId && secretAccessKey && Number.isFinite(expiration);
  return {
    credentials: valid ? { accessKeyId, secretAccessKey, sessionToken, expiration, assertion } : null,
    skewMs: Number(message.skewMs) || 0,
    region: String(message.region),
    service: String(message.service ?? 'execute-api'),
    session: whoFrom(message.session),
  };
}

/** Who is signed in (no secret), kept only to hand to a new tab. */
function whoFrom(session) {
  if (!session) return null;
  const { identityId, provider, subject, claims, issuedAt } = session;
  return { identityId, provider, subject, claims, issuedAt };
}

async function save(next) {
  state = next;
  signer = null;
  keyCache.clear();
  clock.skewMs = next.skewMs;
  await idb('readwrite', (store) => store.put(withoutSecrets(next), STATE_KEY));
}

/** What outlives this worker: no key, no token. */
function withoutSecrets({ credentials, ...rest }) {
  return { ...rest, credentials: null, expiration: credentials?.expiration ?? null };
}

async function load() {
  if (state === undefined) {
    state = (await idb('readonly', (store) => store.get(STATE_KEY))) ?? null;
    if (state) clock.skewMs = state.skewMs;
  }
  return state;
}

function usable(current) {
  return !!current?.credentials && current.credentials.expiration - clock.now() > MIN_USABLE_MS;
}

/** Current state with usable credentials, asking open pages for fresh ones when needed. */
async function currentState() {
  const current = await load();
  if (usable(current)) return current;
  // Never signed in, or signed out: nobody to ask. (After a restart only `expiration` says
  // that there was a session.)
  if (!(current?.credentials || current?.expiration)) return current;
  const answer = await askPages();
  if (answer?.type === 'credbroker:credentials') await save(fromMessage(answer));
  else await forgetCredentials();
  return state;
}

// Pages running the library answer `need-credentials` (renewing first if due); pages that do
// not stay silent, hence the timeout. Only pages outside the scope are asked: those under it are
// the app's own, served through this worker (server-rendered, they never answer, and waiting for
// them after a restart only delays the way through the sign-in page). An app page under the
// scope that runs the client is reached that way too: the sign-in page takes the session from
// it over BroadcastChannel.
async function askPages() {
  const all = await self.clients.matchAll({ type: 'window', includeUncontrolled: true });
  const pages = all.filter((page) => !inScope(new URL(page.url)));
  if (pages.length === 0) return null;
  const ports = [];
  const answer = await new Promise((resolve) => {
    let waiting = pages.length;
    const timer = setTimeout(() => resolve(null), ASK_TIMEOUT_MS);
    for (const page of pages) {
      const channel = new MessageChannel();
      ports.push(channel.port1);
      channel.port1.onmessage = ({ data }) => {
        waiting--;
        if (data?.type === 'credbroker:credentials' || waiting === 0) {
          clearTimeout(timer);
          resolve(data);
        }
      };
      page.postMessage({ type: 'credbroker:need-credentials' }, [channel.port2]);
    }
  });
  for (const port of ports) port.close();
  return answer;
}

function signerFor(current) {
  signer ??= createSigner({ region: current.region, service: current.service, keyCache });
  return signer;
}

async function handle(request) {
  const navigation = request.mode === 'navigate';
  if (navigation && !sameOrigin(request.referrer)) return crossSiteNavigation(request);
  const current = await currentState();
  if (!usable(current)) return signinRequired(request);
  const response = await signedFetch(request, {
    signer: signerFor(current),
    credentials: async () => current.credentials,
    clock,
    fetch: (url, init) => fetch(url, init),
    // The browser adds and rewrites headers on the way out (accept, sec-fetch-*...): sign only
    // what is certain to arrive as it is.
    signHeader: (name) => name.toLowerCase() === 'content-type',
    // A Request cannot be re-sent as a navigation or as no-cors (which would drop Authorization).
    mode: 'same-origin',
    redirect: 'manual',
    onSkew: (skewMs) => {
      if (state) save({ ...state, skewMs });
    },
  });
  if (response.type === 'opaqueredirect' && request.redirect !== 'manual') {
    return problem(502, 'redirect_not_followed', 'A signed request was redirected; its signature does not follow.');
  }
  return response;
}

// Like a SameSite=Lax cookie, and stricter: not even another site's top-level GET is signed.
// It lands on the sign-in page, which continues to the same path with a same-origin request.
function crossSiteNavigation(request) {
  if (request.destination !== 'document') {
    return problem(403, 'cross_site_frame', 'Pages of this application cannot be framed by another site.');
  }
  return toSignin(request);
}

function signinRequired(request) {
  if (request.mode === 'navigate') return toSignin(request);
  return problem(401, 'signin_required', 'Sign in first.');
}

function toSignin(request) {
  const target = new URL(request.url);
  const signin = new URL(signinUrl(), self.location.origin);
  signin.searchParams.set('next', target.pathname + target.search);
  return Response.redirect(signin.href, 303);
}

function problem(status, code, detail) {
  return new Response(JSON.stringify({ type: 'about:blank', title: detail, status, code }), {
    status,
    headers: { 'content-type': 'application/problem+json', 'cache-control': 'no-store' },
  });
}

function idb(mode, operation) {
  return new Promise((resolve, reject) => {
    const open = indexedDB.open(DB_NAME, 1);
    open.onupgradeneeded = () => open.result.createObjectStore(STORE);
    open.onerror = () => reject(open.error);
    open.onsuccess = () => {
      const db = open.result;
      const tx = db.transaction(STORE, mode);
      const request = operation(tx.objectStore(STORE));
      tx.oncomplete = () => {
        db.close();
        resolve(request.result);
      };
      tx.onerror = tx.onabort = () => {
        db.close();
        reject(tx.error);
      };
    };
  });
}
