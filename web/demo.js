// The demo page: sign in with any provider from /auth/config, watch the credentials, call the
// API with client.fetch(), and browse /api/app/ through the signing service worker.
import { createClient } from './credbroker.js';
import { returnPath } from './return-url.js';

const $ = (id) => document.getElementById(id);

// Where the broker's routes hang from: the folder above web/, found from this file's own URL,
// never from the origin's root. Deployed, API Gateway serves everything under the stage
// (https://{api}.execute-api.{region}.amazonaws.com/prod/web/index.html: /prod/auth/config,
// /prod/api/); `credbroker dev` serves these files at / (and /web/) with no prefix. The same
// files thus work at /, /web/ and /prod/web/.
const HERE = new URL('.', import.meta.url);
const BASE = HERE.pathname.endsWith('/web/') ? new URL('..', HERE) : HERE;
const API = new URL('api/', BASE);

const client = createClient({ broker: BASE.href, api: API.href });
let transparent = false;
let countdownTimer = 0;

// Where the service worker sent us from (`?next=`): a same-origin path only (null for none or '/').
function nextPath() {
  const next = returnPath(new URLSearchParams(location.search).get('next'), location.origin);
  return next === '/' ? null : next;
}

// The service worker sends navigations from other sites (and unsigned ones) here with ?next=;
// a signed-in page continues there with a same-origin navigation, which the worker signs. Once
// per path within seconds: should the worker bounce it back (a Referrer-Policy of no-referrer on
// this page would), the user gets a link instead of a redirect loop.
const FOLLOWED_KEY = 'credbroker.demo.followed';
const FOLLOW_AGAIN_MS = 5_000;

function continueTo(next) {
  if (!next || !transparent) return;
  const last = JSON.parse(sessionStorage.getItem(FOLLOWED_KEY) ?? 'null');
  if (last?.next === next && Date.now() - last.at < FOLLOW_AGAIN_MS) {
    const link = $('continue');
    link.href = next;
    link.textContent = `Continue to ${next}`;
    show('continue', true);
    return;
  }
  sessionStorage.setItem(FOLLOWED_KEY, JSON.stringify({ next, at: Date.now() }));
  location.replace(next);
}

function show(id, visible) {
  $(id).hidden = !visible;
}

function showError(error) {
  $('error').textContent = error ? `${error.message}${error.code ? ` (${error.code})` : ''}` : '';
  show('error', !!error);
}

function setStatus(text) {
  $('status').textContent = text;
}

function formatDuration(ms) {
  if (ms <= 0) return 'expired';
  const total = Math.floor(ms / 1000);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = String(total % 60).padStart(2, '0');
  if (h) return `${h} h ${String(m).padStart(2, '0')} min ${s} s`;
  return m ? `${m} min ${s} s` : `${total} s`;
}

function tick() {
  const session = client.session;
  if (!session) return;
  const left = session.expiration.getTime() - client.serverNow();
  const countdown = $('countdown');
  countdown.textContent = formatDuration(left);
  countdown.dateTime = session.expiration.toISOString();
  countdown.title = session.expiration.toLocaleString();
}

function render() {
  const session = client.session;
  show('signin', !session);
  show('session', !!session);
  clearInterval(countdownTimer);
  if (!session) {
    setStatus('Not signed in.');
    return;
  }
  setStatus(`Signed in as ${session.claims?.email ?? session.subject}.`);
  $('identity-id').textContent = session.identityId;
  $('provider').textContent = session.provider;
  $('subject').textContent = session.subject;
  $('skew').textContent = `${(client.skewMs / 1000).toFixed(1)} s (server minus this device)`;
  $('app-link').setAttribute('aria-disabled', String(!transparent));
  tick();
  countdownTimer = setInterval(tick, 1000);
}

function renderProviders(providers) {
  const list = $('providers');
  list.replaceChildren(
    ...providers.map((provider) => {
      const button = document.createElement('button');
      button.type = 'button';
      button.textContent = `Sign in with ${provider.name}`;
      button.title = `${provider.kind} · ${provider.issuer}`;
      button.addEventListener('click', () => {
        button.disabled = true;
        // The default returnTo is this URL, ?next= included: after sign-in we continue there.
        client.signIn(provider.name).catch((error) => {
          button.disabled = false;
          showError(error);
        });
      });
      return button;
    }),
  );
  if (providers.length === 0) list.textContent = 'The broker has no providers configured.';
}

async function enableTransparentMode() {
  try {
    // The sign-in page is this folder's index (/, /web/ or /prod/web/): where the gateway's
    // sign-in answer and the worker send the user.
    await client.enableTransparentMode({ scope: API.pathname, signinUrl: HERE.pathname });
    transparent = true;
    $('transparent').textContent = `Transparent mode is on: pages under ${API.pathname} are signed by the service worker.`;
  } catch (error) {
    $('transparent').textContent = `Transparent mode unavailable: ${error.message}`;
  }
  render();
}

async function callWhoami() {
  const button = $('whoami');
  button.disabled = true;
  try {
    const response = await client.fetch(new URL('whoami', API));
    const text = await response.text();
    let body = text;
    try {
      body = JSON.stringify(JSON.parse(text), null, 2);
    } catch {
      // Not JSON: show it as it came.
    }
    $('output').textContent = `HTTP ${response.status}\n${body}`;
    show('output', true);
    showError(null);
  } catch (error) {
    showError(error);
  } finally {
    button.disabled = false;
  }
}

async function main() {
  $('app-link').href = new URL('app/', API).pathname;
  client.addEventListener('credentials', () => {
    // New credentials (a renewal, a sign-in) make an earlier "expired" or renewal warning moot.
    if (client.session) showError(null);
    render();
  });
  client.addEventListener('expired', () => {
    render();
    showError({ message: 'Your credentials expired. Sign in again.' });
  });
  client.addEventListener('signin-required', () =>
    showError({ message: 'Your session could not be renewed silently; sign in again before it expires.' }),
  );
  $('whoami').addEventListener('click', callWhoami);
  $('signout').addEventListener('click', () => {
    client.signOut().catch(showError);
    $('output').textContent = '';
    show('output', false);
  });

  try {
    await client.handleRedirect();
  } catch (error) {
    showError(error);
  }
  // After a reload: the credentials from another tab or the worker, or a silent sign-in.
  await client.ready;
  try {
    renderProviders((await client.config()).providers);
  } catch (error) {
    setStatus('Cannot reach the broker.');
    showError(error);
    return;
  }
  render();
  if (client.session) {
    await enableTransparentMode();
    continueTo(nextPath());
  } else if (nextPath()) {
    setStatus(`Sign in to continue to ${nextPath()}.`);
  }
  client.addEventListener('credentials', () => {
    if (client.session && !transparent) enableTransparentMode();
  });
}

// In the silent-renewal iframe the parent page does the work: this copy stays inert.
if (window.top === window.self) main();
