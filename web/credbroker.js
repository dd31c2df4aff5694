// credbroker browser client: OpenID sign-in, temporary AWS credentials from the broker, renewal,
// SigV4-signed fetch and presigned URLs, and a signing service worker ("transparent mode").
//
// No dependencies, no build step: import it as an ES module.
//
//   import { createClient } from './credbroker.js';
//   const client = createClient({ broker: 'https://auth.example.com', api: 'https://api.example.com/prod/' });
//   await client.handleRedirect();            // on the page the provider redirects back to
//   if (!client.session) await client.signIn('google');
//   const res = await client.fetch('https://api.example.com/prod/items');
//
// Sign-in flows, chosen per provider by `flow` in GET /auth/config (the broker's `flow`
// setting, else by `publicClient`):
// - `code`, `publicClient: true` (Microsoft SPA, Salesforce, Cognito hosted UI, the dev provider, any
//   OpenID provider that lets a browser redeem a code): authorization code + PKCE (S256), with
//   `state` and `nonce`; the code is redeemed at the token endpoint from the browser.
// - `id_token` (Google web clients, whose token endpoint wants a client secret a page cannot
//   keep): `response_type=id_token`, the implicit ID-token flow, answered in the URL fragment;
//   the `nonce` binds the token to this sign-in.
// Either way the ID token's signature, issuer, audience and expiry are verified by the broker;
// the page only checks `state` (this sign-in was started here) and `nonce` (this token was
// issued for it).
//
// Renewal, at expiration - max(60 s, 10% of the lifetime) in server time (at most half the
// lifetime early), and again when the expiry timer finds the credentials run out (after sleep):
// 1. a refresh token, if the provider gave one to the page (Microsoft with offline_access,
//    Cognito, Salesforce with the refresh_token scope, the dev provider);
// 2. else `prompt=none` in a hidden iframe (works where the provider's session cookie is
//    readable in a frame: the dev provider, same-site providers; often blocked by third-party
//    cookie rules for others);
// 3. else a `signin-required` event. The library never navigates the page away by itself: the
//    application decides when to call signIn() (a top-level redirect) without losing user state.
//
// Events (the client is an EventTarget): `credentials` (new credentials or signed out; detail:
// the session summary or null), `expired` (credentials ran out unrenewed), `error` (detail:
// the error), `signin-required` (detail: { reason }).
//
// Storage: the AWS credentials (secret key, session token), the refresh token and the ID token
// live in memory only, never in web storage or IndexedDB, which any script of this origin can
// read (docs/security.md, "Secrets in the browser"). `storage` (sessionStorage by default,
// `'local'`, `'memory'` for none) keeps only who is signed in, with which provider and until
// when: a reloaded tab takes the credentials from an open tab or the service worker, else signs
// in again silently with that provider (`client.ready` settles when it is done). Sign-in flow
// state (state, nonce, PKCE verifier, one use, 15 minutes) goes to sessionStorage.
// The sign-in flows live in signin.js, loaded on first use.
//
// Tabs (BroadcastChannel `credbroker`, Web Locks `credbroker.renew`): unless `storage` is
// 'memory', a new tab takes the session of an open tab or of the service worker (from their
// memory) instead of asking for a new sign-in, and a renewal in one tab reaches all. One renewal at a time across
// the origin's tabs: the tab that gets the lock second finds the credentials renewed and takes
// them. A sign-out in any tab signs out every tab and the service worker.

import { createSigner, presign, SigningKeyCache } from './sigv4.js';
import { SkewClock, signedFetch } from './signed-fetch.js';
import { returnPath } from './return-url.js';

const SESSION_KEY = 'credbroker.session';
const MIN_RENEW_LEAD_MS = 60_000;
const RENEW_LEAD_FRACTION = 0.1;
/** Credentials this close to expiry are not handed out: a request signed now could arrive late. */
const MIN_USABLE_MS = 5_000;
const RENEW_RETRY_MS = 30_000;
const WORKER_ACK_TIMEOUT_MS = 1_000;
const TABS_CHANNEL = 'credbroker';
const RENEW_LOCK = 'credbroker.renew';
/** How long a tab holding the renewal lock waits for other tabs' fresher credentials. */
const PEER_WAIT_MS = 300;
const MAX_TIMER_MS = 2 ** 31 - 1;
const MAX_JSON_BYTES = 256 * 1024;
/** API Gateway refuses a presigned URL five minutes after signing, whatever X-Amz-Expires says. */
export const API_GATEWAY_PRESIGN_SECONDS = 300;
const SIGNIN_REQUIRED_ERRORS = new Set([
  'login_required', 'interaction_required', 'consent_required', 'account_selection_required',
  'invalid_grant', 'silent_timeout', 'no_silent_renewal', 'not_signed_in',
]);

/** An error with a machine-readable `code` (the broker's problem `code`, an OAuth `error`...). */
export class CredbrokerError extends Error {
  constructor(code, message, { status, cause } = {}) {
    super(message, { cause });
    this.name = 'CredbrokerError';
    this.code = code;
    this.status = status;
  }
}

/** Creates a client; see CredbrokerClient for the options. */
export function createClient(options) {
  return new CredbrokerClient(options);
}

/**
 * Options:
 * - `broker` (required): the broker's base URL.
 * - `api`: URL prefix(es) whose requests may be signed (default: the broker's origin). Nothing
 *   else is ever signed, so signatures cannot leak to third parties.
 * - `region` (default: from /auth/config), `service` (default `execute-api`).
 * - `storage`: where who is signed in (no secret) is kept for a reload: 'session' (default),
 *   'local', 'memory' (nowhere, and no sharing with other tabs or the worker), or a Storage-like
 *   object.
 * - `redirectUri` (default: this page without query or fragment), or `{ providerName: uri }` to
 *   give each provider its own (which binds each answer to its provider where the provider
 *   sends no `iss`); `silentRedirectUri` (for the prompt=none iframe; default `redirectUri`; a
 *   blank page such as silent.html is lighter).
 * - `scope`: OpenID scopes, a string for every provider (default `openid email profile`, plus
 *   what each kind needs for a refresh token; a provider's `scopes` from config win over it) or
 *   `{ providerName: scopes }`; `clientIds`: { providerName: clientId } (default: the provider's
 *   `clientId` from config). The flow is the provider's `flow` from config.
 * - `signBody`: also send x-amz-content-sha256.
 * - Injectable for tests and other runtimes: `fetch`, `now` (ms), `setTimeout`, `clearTimeout`,
 *   `window` (location, history, document, navigator, sessionStorage, localStorage),
 *   `flowStorage`.
 */
export class CredbrokerClient extends EventTarget {
  #options;
  #env;
  #clock;
  #keyCache = new SigningKeyCache();
  #configPromise = null;
  #signer = null;
  #session = null;
  #renewing = null;
  #timers = new Set();
  #apiPrefixes;
  #worker = null;
  #workerListening = false;
  #peerAnswered = null;
  #flowsModule = null;
  #ctx;
  /** Bumped by every sign-out: a renewal that started before it must not sign back in. */
  #epoch = 0;
  /** Resolves (never rejects) with the session summary once this page took or renewed the
   * session it had before a reload, or found none. */
  ready;

  constructor(options) {
    super();
    if (!options?.broker) throw new TypeError('createClient needs { broker }');
    const win = options.window ?? globalThis;
    this.#options = {
      service: 'execute-api',
      scope: 'openid email profile',
      clientIds: {},
      ...options,
      broker: new URL(options.broker, win.location?.href),
    };
    this.#env = {
      window: win,
      fetch: options.fetch ?? ((...args) => globalThis.fetch(...args)),
      setTimeout: options.setTimeout ?? ((fn, ms) => globalThis.setTimeout(fn, ms)),
      clearTimeout: options.clearTimeout ?? ((id) => globalThis.clearTimeout(id)),
      storage: pickStorage(options.storage ?? 'session', win),
      flowStorage: options.flowStorage ?? win.sessionStorage,
      // A copy of the app loaded in the silent-renewal iframe must neither act on the callback
      // nor run its own renewals: the parent does both.
      embedded: win.top !== undefined && win.top !== win.self,
      locks: win.navigator?.locks ?? null,
      shares: (options.storage ?? 'session') !== 'memory',
    };
    this.#env.channel = win.BroadcastChannel && !this.#env.embedded ? new win.BroadcastChannel(TABS_CHANNEL) : null;
    this.#clock = new SkewClock(options.now ?? (() => Date.now()));
    this.#apiPrefixes = [options.api ?? this.#options.broker.origin + '/'].flat().map((p) => new URL(p));
    // What the sign-in flows (signin.js) get from the client.
    this.#ctx = {
      env: this.#env,
      options: this.#options,
      clock: this.#clock,
      config: () => this.config(),
      brokerBase: () => this.#brokerBase(),
      CredbrokerError,
      readJson,
      problemError,
      decodeJwtPayload,
      safeParse,
    };
    this.#env.channel?.addEventListener('message', (event) => this.#onTabMessage(event.data));
    this.ready = this.#resume();
  }

  /** The sign-in flows module, loaded on first use. */
  #flows() {
    this.#flowsModule ??= import('./signin.js');
    return this.#flowsModule;
  }

  // ---- configuration -------------------------------------------------------------------

  /** GET {broker}/auth/config, fetched once (a failure is retried on the next call). */
  config() {
    this.#configPromise ??= this.#loadConfig().catch((error) => {
      this.#configPromise = null;
      throw error;
    });
    return this.#configPromise;
  }

  // No clock reading here: /auth/config is cacheable for minutes, so its time could be stale.
  // The sign-in answer's serverTime sets the clock.
  async #loadConfig() {
    const response = await this.#env.fetch(new URL('auth/config', this.#brokerBase()).href, {
      headers: { accept: 'application/json' },
    });
    const config = await readJson(response);
    if (!response.ok) throw problemError(config, response.status, 'config_failed');
    if (!Array.isArray(config.providers)) throw new CredbrokerError('bad_config', '/auth/config has no providers');
    return config;
  }

  #brokerBase() {
    const base = this.#options.broker.href;
    return base.endsWith('/') ? base : base + '/';
  }

  async #provider(name) {
    const provider = (await this.config()).providers.find((p) => p.name === name);
    if (!provider) throw new CredbrokerError('unknown_provider', `no provider named ${name} in /auth/config`);
    return provider;
  }

  async #getSigner() {
    if (!this.#signer) {
      const region = this.#options.region ?? (await this.config()).region;
      this.#signer = createSigner({ region, service: this.#options.service, keyCache: this.#keyCache });
    }
    return this.#signer;
  }

  // ---- state -----------------------------------------------------------------------------

  /** Who is signed in, without secrets (null when signed out). */
  get session() {
    const s = this.#session;
    if (!s) return null;
    return {
      identityId: s.identityId,
      provider: s.provider,
      subject: s.subject,
      claims: s.claims,
      expiration: new Date(s.credentials.expiration),
    };
  }

  /** Server time in ms (local clock corrected by the measured skew). */
  serverNow() {
    return this.#clock.now();
  }

  /** Measured clock skew (server - local), in ms. */
  get skewMs() {
    return this.#clock.skewMs;
  }

  /** When (server time, ms) renewal is due, or null when signed out. */
  get renewAt() {
    const s = this.#session;
    if (!s) return null;
    const lifetime = Math.max(0, s.credentials.expiration - s.issuedAt);
    // At most half the lifetime early: 60 s credentials (credbroker dev's shortest) would
    // otherwise be due for renewal the moment they arrive, renewing in a loop.
    const lead = Math.min(Math.max(MIN_RENEW_LEAD_MS, lifetime * RENEW_LEAD_FRACTION), lifetime / 2);
    return s.credentials.expiration - lead;
  }

  // After a reload: the credentials are in an open tab's or the worker's memory, or nowhere any
  // more; then a silent sign-in with the same provider (the IdP's session) gets new ones.
  async #resume() {
    if (this.#env.embedded) return null;
    let saved = safeParse(this.#env.storage?.getItem(SESSION_KEY));
    const skewMs = Number(saved?.skewMs) || 0;
    if (!(saved?.expiration > this.#clock.localNow() + skewMs)) {
      this.#env.storage?.removeItem(SESSION_KEY);
      saved = null;
    }
    if (this.#env.shares) await this.#adoptFromElsewhere();
    // A sign-in callback being handled brings its own session.
    if (this.#session || !saved || isCallback(this.#env.window.location.href)) return this.session;
    this.#clock.skewMs = skewMs;
    // One silent sign-in across the tabs a restored browser reloads at once: the first to get the
    // renewal lock signs in; the others, holding it next, ask the tabs again and take its session.
    const resume = async () => this.#session ? this.session : this.#renewOnce(saved);
    const locks = this.#env.locks;
    const exclusive = async () => {
      if (!this.#session) await this.#askTabs();
      return resume();
    };
    return (locks ? locks.request(RENEW_LOCK, exclusive) : resume()).catch(() => {
      if (!this.#session) this.#env.storage?.removeItem(SESSION_KEY);
      return this.session;
    });
  }

  // Who is signed in, until when, and the measured skew: never a key or a token.
  #persist() {
    const s = this.#session;
    if (!s) return;
    s.skewMs = this.#clock.skewMs;
    const { identityId, provider, subject, claims, issuedAt, skewMs } = s;
    this.#env.storage?.setItem(SESSION_KEY, JSON.stringify({ identityId, provider, subject, claims, issuedAt, skewMs, expiration: s.credentials.expiration }));
  }

  /** The session without what stays in this tab's memory (refresh token, ID token). */
  #shareable() {
    const { refreshToken, idToken, ...rest } = this.#session;
    return rest;
  }

  #setSession(session) {
    this.#session = session;
    this.#persist();
    this.#schedule();
    this.#emit('credentials', this.session);
    this.#tell({ type: 'session', session: this.#shareable() });
    return this.#postToWorker();
  }

  // ---- other tabs and the worker --------------------------------------------------------------

  #tell(message) {
    if (this.#env.shares) this.#env.channel?.postMessage(message);
  }

  #onTabMessage(message) {
    if (message?.type === 'signout') {
      if (!this.#session) return;
      this.#clearSession();
      this.#emit('credentials', null);
    } else if (message?.type === 'session?') {
      if (this.#usable()) this.#tell({ type: 'session', session: this.#shareable() });
    } else if (message?.type === 'session' && this.#env.shares) {
      this.#adopt(message.session);
    }
  }

  // Takes a session another tab or the worker holds, when it is later than this tab's own.
  #adopt(session) {
    const expiration = session?.credentials?.expiration;
    if (!session?.credentials?.accessKeyId || !(expiration - this.#clock.localNow() - (Number(session.skewMs) || 0) > MIN_USABLE_MS)) return;
    const own = this.#session;
    if (own && own.credentials.expiration >= expiration) return;
    const sameUser = own?.identityId === session.identityId;
    this.#clock.skewMs = Number(session.skewMs) || 0;
    this.#session = { ...session, refreshToken: sameUser ? own.refreshToken : undefined, idToken: sameUser ? own.idToken : undefined };
    this.#persist();
    this.#schedule();
    this.#emit('credentials', this.session);
    this.#peerAnswered?.();
  }

  // A new or reloaded tab: any open tab answers on the channel; the worker from its memory.
  async #adoptFromElsewhere() {
    await this.#askTabs();
    if (this.#session) return;
    for (const worker of await this.#credbrokerWorkers()) {
      const answer = await askWorker(worker, { type: 'credbroker:session?' }, this.#env);
      if (answer?.type === 'credbroker:credentials' && answer.session) {
        this.#adopt({ ...answer.session, credentials: answer.credentials, skewMs: answer.skewMs });
      }
    }
  }

  /** Active credbroker workers of this origin (their script URL carries `?signin=`). */
  async #credbrokerWorkers() {
    const container = this.#env.window.navigator?.serviceWorker;
    try {
      const registrations = (await container?.getRegistrations?.()) ?? [];
      return registrations.map((r) => r.active).filter((w) => w && new URL(w.scriptURL).searchParams.has('signin'));
    } catch {
      return [];
    }
  }

  // Asks the other tabs for their session; settles once one answered, or after a moment.
  async #askTabs() {
    if (!this.#env.channel || !this.#env.shares) return;
    await new Promise((resolve) => {
      const timer = this.#env.setTimeout(resolve, PEER_WAIT_MS);
      this.#peerAnswered = () => {
        this.#env.clearTimeout(timer);
        resolve();
      };
      this.#tell({ type: 'session?' });
    });
    this.#peerAnswered = null;
  }

  // Holding the renewal lock: did another tab renew meanwhile?
  async #renewedElsewhere() {
    await this.#askTabs();
    return this.#fresh();
  }

  #fresh() {
    return !!this.#session && this.#clock.now() < this.renewAt;
  }

  #emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  // ---- timers ------------------------------------------------------------------------------

  #timer(delayMs, fn) {
    const id = this.#env.setTimeout(() => {
      this.#timers.delete(id);
      fn();
    }, Math.min(Math.max(0, delayMs), MAX_TIMER_MS));
    this.#timers.add(id);
  }

  #clearTimers() {
    for (const id of this.#timers) this.#env.clearTimeout(id);
    this.#timers.clear();
  }

  #schedule() {
    this.#clearTimers();
    if (!this.#session || this.#env.embedded) return;
    const now = this.#clock.now();
    this.#timer(this.renewAt - now, () => this.#renewInBackground());
    this.#timer(this.#session.credentials.expiration - now, () => this.#expire());
  }

  #renewInBackground() {
    this.renew().catch((error) => {
      const s = this.#session;
      if (!s || SIGNIN_REQUIRED_ERRORS.has(error.code)) return;
      // A network or broker hiccup: try again while the current credentials still work.
      const left = s.credentials.expiration - this.#clock.now();
      if (left > 2 * MIN_USABLE_MS) this.#timer(Math.min(RENEW_RETRY_MS, left / 2), () => this.#renewInBackground());
    });
  }

  // A device that slept past the renewal time wakes up with both timers due: the renewal (or
  // one more attempt) decides whether the session ends, so a refresh token is not wasted.
  #expire() {
    const s = this.#session;
    if (!s || this.#usable()) return;
    this.renew().catch(() => {
      if (this.#session !== s || this.#usable()) return;
      this.#clearSession();
      this.#emit('expired', null);
      this.#emit('credentials', null);
    });
  }

  #clearSession() {
    this.#epoch++;
    this.#session = null;
    this.#clearTimers();
    this.#keyCache.clear();
    this.#env.storage?.removeItem(SESSION_KEY);
    this.#postToWorker();
  }

  // ---- credentials -------------------------------------------------------------------------

  /**
   * Current credentials `{ accessKeyId, secretAccessKey, sessionToken, expiration: Date,
   * assertion }` (`assertion`: the broker's identity assertion, when it sends one),
   * renewed first when renewal is due. Concurrent callers share one renewal. Rejects with a
   * CredbrokerError (code `not_signed_in`, `login_required`...) when there are none.
   */
  async credentials() {
    if (!this.#session) await this.ready;
    if (!this.#session) throw new CredbrokerError('not_signed_in', 'sign in first');
    if (this.#clock.now() >= this.renewAt) {
      try {
        await this.renew();
      } catch (error) {
        if (!this.#usable()) throw error;
      }
    }
    if (!this.#usable()) throw new CredbrokerError('expired', 'the credentials have expired; sign in again');
    const { expiration, ...keys } = this.#session.credentials;
    return { ...keys, expiration: new Date(expiration) };
  }

  #usable() {
    return !!this.#session && this.#session.credentials.expiration - this.#clock.now() > MIN_USABLE_MS;
  }

  /**
   * Renews now (shared by concurrent callers, and one tab at a time across the origin's tabs):
   * refresh token, else silent iframe.
   */
  renew() {
    this.#renewing ??= this.#renewExclusive().finally(() => {
      this.#renewing = null;
    });
    return this.#renewing;
  }

  #renewExclusive() {
    const locks = this.#env.locks;
    if (!locks || !this.#env.shares) return this.#renewOnce();
    const due = this.#session?.credentials.expiration;
    return locks.request(RENEW_LOCK, async () => {
      // The tab that held the lock before this one may have renewed: its credentials came here.
      const renewed = () => this.#session && this.#session.credentials.expiration !== due && this.#fresh();
      if (renewed() || ((await this.#renewedElsewhere()) && renewed())) return this.session;
      return this.#renewOnce();
    });
  }

  // `s`: the session to renew (a reloaded page's summary while it resumes).
  async #renewOnce(s = this.#session) {
    const epoch = this.#epoch;
    try {
      if (!s) throw new CredbrokerError('not_signed_in', 'sign in first');
      const provider = await this.#provider(s.provider);
      const tokens = await (await this.#flows()).renewTokens(this.#ctx, provider, s.refreshToken);
      if (this.#epoch !== epoch) throw new CredbrokerError('not_signed_in', 'signed out during renewal');
      return await this.#finishSignIn(provider, tokens.id_token, tokens.refresh_token ?? s.refreshToken, s);
    } catch (error) {
      this.#emit('error', error);
      if (SIGNIN_REQUIRED_ERRORS.has(error.code)) this.#emit('signin-required', { reason: error.code });
      throw error;
    }
  }

  // ---- sign-in -----------------------------------------------------------------------------

  /**
   * Starts a sign-in: redirects this tab to the provider's authorization endpoint. Options:
   * `returnTo` (same-origin path to land on afterwards, default: here; anything else lands on
   * '/', see return-url.js), `prompt`, `loginHint`.
   */
  async signIn(providerName, { returnTo, prompt, loginHint } = {}) {
    const provider = await this.#provider(providerName);
    returnTo = this.#returnPath(returnTo ?? this.#env.window.location.href);
    await (await this.#flows()).startSignIn(this.#ctx, provider, { returnTo, prompt, loginHint });
  }

  #returnPath(url) {
    return returnPath(url, this.#env.window.location.href);
  }

  /**
   * Finishes a sign-in on the redirect page: checks `state` against the flow this tab started,
   * redeems the code (PKCE) or takes the fragment's ID token, checks its `nonce`, exchanges it at
   * the broker, stores the credentials and puts back the URL the user was on. Returns the
   * session summary plus `returnTo`, or null when `url` is not a sign-in callback.
   */
  async handleRedirect(url = this.#env.window.location.href) {
    // Only a URL with a `state` can be an answer: other pages never load the flows module.
    if (this.#env.embedded || !isCallback(url)) return null;
    const flows = await this.#flows();
    const params = flows.callbackParams(new URL(url));
    if (!params) return null;
    try {
      const { provider, tokens, returnTo } = await flows.readCallback(this.#ctx, url, params, (name) => this.#provider(name));
      await this.#finishSignIn(provider, tokens.id_token, tokens.refresh_token);
      // Checked again: the flow sat in storage any script of this origin can write.
      const back = this.#returnPath(returnTo);
      this.#restoreLocation(url, back);
      return { ...this.session, returnTo: back };
    } catch (error) {
      // Leave no code or token in the address bar, success or not.
      this.#env.window.history?.replaceState(null, '', flows.stripCallback(new URL(url)));
      this.#emit('error', error);
      throw error;
    }
  }

  // Back on the page the user was on: without a reload when it is this very page.
  #restoreLocation(callbackUrl, returnTo) {
    const here = new URL(callbackUrl);
    const target = new URL(returnTo, here);
    if (target.origin + target.pathname === here.origin + here.pathname) {
      this.#env.window.history?.replaceState(null, '', target.href);
    } else {
      this.#env.window.location.replace(target.href);
    }
  }

  /**
   * Exchanges an ID token at the broker (POST {broker}/auth/signin/{provider}) and makes the
   * result the current session. For apps that obtain ID tokens themselves (Google Identity
   * Services, a native bridge...).
   */
  async signInWithIdToken(providerName, idToken) {
    const provider = await this.#provider(providerName);
    return this.#finishSignIn(provider, idToken);
  }

  // `renewing`: the session being renewed, whose identity id goes along.
  async #finishSignIn(provider, idToken, refreshToken, renewing) {
    const session = await (await this.#flows()).exchangeIdToken(this.#ctx, provider, idToken, renewing);
    this.#setSession({ ...session, refreshToken, idToken });
    return this.session;
  }

  /**
   * Signs out: this tab, every other tab of the origin and the service worker forget the
   * credentials at once. Then, with `atProvider` (default) and a provider that has an
   * `endSessionEndpoint` (RP-initiated logout), this tab goes there to end the provider's
   * session too, and comes back to `postLogoutRedirectUri` (default: this page; it must be
   * registered at the provider). Resolves once the workers were told.
   */
  async signOut({ atProvider = true, postLogoutRedirectUri } = {}) {
    const s = this.#session;
    this.#clearSession();
    this.#tell({ type: 'signout' });
    if (s) this.#emit('credentials', null);
    // Workers this page never registered hold the session too (another tab enabled them).
    const workers = await this.#credbrokerWorkers();
    await Promise.all(workers.map((worker) => askWorker(worker, { type: 'credbroker:signout' }, this.#env)));
    if (s && atProvider) await this.#endProviderSession(s, postLogoutRedirectUri);
  }

  async #endProviderSession(s, postLogoutRedirectUri) {
    const provider = (await this.config().catch(() => null))?.providers.find((p) => p.name === s.provider);
    const here = new URL(this.#env.window.location.href);
    const back = new URL(this.#returnPath(postLogoutRedirectUri ?? here.href), here).href;
    const url = provider?.endSessionEndpoint && (await this.#flows()).endSessionUrl(this.#ctx, provider, s.idToken, back);
    if (url) this.#env.window.location.assign(url);
  }

  // ---- signed requests ---------------------------------------------------------------------

  /** Whether requests to `url` may be signed (it is under a configured API prefix). */
  isApiUrl(url) {
    const target = new URL(url, this.#env.window.location?.href);
    return this.#apiPrefixes.some((p) => target.origin === p.origin && target.pathname.startsWith(p.pathname));
  }

  /**
   * fetch(), SigV4-signed with the current credentials (Authorization header). Bodies of every
   * kind fetch accepts are read to their exact bytes, hashed and sent as signed. Throws for URLs
   * outside the configured API prefixes instead of sending a signature there.
   */
  async fetch(input, init) {
    const request = new Request(input instanceof Request ? input : new URL(input, this.#env.window.location?.href), init);
    if (!this.isApiUrl(request.url)) {
      throw new CredbrokerError('not_api_url', `refusing to sign a request to ${new URL(request.url).origin}: not a configured API URL`);
    }
    return signedFetch(request, {
      signer: await this.#getSigner(),
      credentials: () => this.credentials(),
      clock: this.#clock,
      fetch: this.#env.fetch,
      signBody: this.#options.signBody,
      onSkew: () => this.#persist(),
    });
  }

  /**
   * A presigned (query-signed) GET URL, valid `expires` seconds (default and most: 300). API
   * Gateway refuses a query-signed request five minutes after its X-Amz-Date whatever
   * X-Amz-Expires says, so a longer promise is refused rather than made.
   */
  async presign(url, { expires = API_GATEWAY_PRESIGN_SECONDS, method = 'GET' } = {}) {
    const target = new URL(url, this.#env.window.location?.href);
    if (!this.isApiUrl(target)) throw new CredbrokerError('not_api_url', `refusing to presign a URL on ${target.origin}`);
    if (!(expires >= 1 && expires <= API_GATEWAY_PRESIGN_SECONDS)) {
      throw new CredbrokerError('expires_too_long', `API Gateway honours presigned URLs for at most ${API_GATEWAY_PRESIGN_SECONDS} s`);
    }
    const signer = await this.#getSigner();
    const signed = await presign(
      signer,
      { method, host: target.host, path: target.pathname, query: target.search },
      await this.credentials(),
      new Date(this.#clock.now()),
      Math.floor(expires),
    );
    return `${target.origin}${target.pathname}?${signed.query}${target.hash}`;
  }

  // ---- transparent mode (service worker) ---------------------------------------------------

  /**
   * Registers credbroker-sw.js for `scope` and keeps it supplied with credentials: every
   * same-origin request under the scope (navigations, forms, images, scripts, fetch) is then
   * signed by the worker, navigations only when they come from this origin. `signinUrl` (a
   * same-origin path) is where the worker sends navigations that have no valid credentials or
   * come from another site (with `?next=`); it travels in the script URL. Needs module service
   * workers. Defaults: `scope` is `api/` under the broker's path (`/api/`, or `/prod/api/` for a
   * broker at an API Gateway stage URL), `signinUrl` this page.
   */
  async enableTransparentMode({ scope, script = new URL('./credbroker-sw.js', import.meta.url), signinUrl } = {}) {
    const container = this.#env.window.navigator?.serviceWorker;
    if (!container) throw new CredbrokerError('no_service_worker', 'service workers are unavailable here');
    const here = this.#env.window.location.href;
    scope ??= new URL('api/', this.#brokerBase()).pathname;
    const scriptUrl = new URL(script, here);
    scriptUrl.searchParams.set('signin', this.#returnPath(signinUrl ?? new URL(here).pathname));
    const registration = await container.register(scriptUrl, { scope, type: 'module' });
    this.#worker = { worker: await activeWorker(registration) };
    if (!this.#workerListening) {
      this.#workerListening = true;
      container.addEventListener('message', (event) => this.#answerWorker(event));
      container.startMessages?.();
    }
    await this.#postToWorker();
    return registration;
  }

  // The worker asks when its credentials are about to run out and no page has pushed new ones.
  async #answerWorker(event) {
    if (event.data?.type !== 'credbroker:need-credentials' || !event.ports?.[0]) return;
    try {
      await this.credentials();
      event.ports[0].postMessage(await this.#workerMessage());
    } catch (error) {
      event.ports[0].postMessage({ type: 'credbroker:no-credentials', reason: error.code ?? 'error' });
    }
  }

  async #workerMessage() {
    const s = this.#session;
    if (!s) return { type: 'credbroker:signout' };
    const signer = await this.#getSigner();
    const { identityId, provider, subject, claims, issuedAt } = s;
    return {
      type: 'credbroker:credentials',
      credentials: s.credentials,
      skewMs: this.#clock.skewMs,
      region: signer.region,
      service: signer.service,
      // Who, for a new tab that takes the session from the worker.
      session: { identityId, provider, subject, claims, issuedAt },
    };
  }

  // Resolves once the worker has stored the message (or after a second, if it never says so),
  // so a navigation right after enableTransparentMode() finds the credentials there.
  async #postToWorker() {
    if (!this.#worker) return;
    try {
      await askWorker(this.#worker.worker, await this.#workerMessage(), this.#env);
    } catch (error) {
      this.#emit('error', error);
    }
  }
}

/** Posts `message` to a service worker; resolves with its answer, or null after a second. */
function askWorker(worker, message, env) {
  const channel = new MessageChannel();
  return new Promise((resolve) => {
    const timer = env.setTimeout(() => resolve(null), WORKER_ACK_TIMEOUT_MS);
    channel.port1.onmessage = ({ data }) => {
      env.clearTimeout(timer);
      resolve(data);
    };
    worker.postMessage(message, [channel.port2]);
  }).finally(() => channel.port1.close());
}

// ---- helpers -------------------------------------------------------------------------------

function pickStorage(storage, win) {
  if (storage === 'session') return win.sessionStorage ?? null;
  if (storage === 'local') return win.localStorage ?? null;
  if (storage === 'memory') return null;
  return storage;
}

function activeWorker(registration) {
  if (registration.active) return Promise.resolve(registration.active);
  const pending = registration.installing ?? registration.waiting;
  return new Promise((resolve, reject) => {
    pending.addEventListener('statechange', function onChange() {
      if (pending.state === 'activated') resolve(pending);
      else if (pending.state === 'redundant') reject(new CredbrokerError('worker_failed', 'the service worker failed to install'));
    });
  });
}

/** The claims of a JWT, decoded without verification (the broker verifies). */
export function decodeJwtPayload(token) {
  const part = String(token).split('.')[1];
  if (!part) throw new CredbrokerError('bad_id_token', 'the ID token is not a JWT');
  try {
    const binary = atob(part.replace(/-/g, '+').replace(/_/g, '/'));
    return JSON.parse(new TextDecoder().decode(Uint8Array.from(binary, (c) => c.charCodeAt(0))));
  } catch (cause) {
    throw new CredbrokerError('bad_id_token', 'the ID token payload is not JSON', { cause });
  }
}

/** Whether `url` may carry an OAuth answer (signin.js's callbackParams tells for sure). */
function isCallback(url) {
  return /[?#&]state=/.test(url);
}

function safeParse(text) {
  try {
    return text ? JSON.parse(text) : null;
  } catch {
    return null;
  }
}

async function readJson(response) {
  const text = await response.text();
  if (text.length > MAX_JSON_BYTES) throw new CredbrokerError('bad_response', `response over ${MAX_JSON_BYTES} bytes`);
  try {
    return text ? JSON.parse(text) : {};
  } catch {
    throw new CredbrokerError('bad_response', `expected JSON, got ${response.headers.get('content-type') ?? 'no content type'}`, {
      status: response.status,
    });
  }
}

function problemError(problem, status, fallbackCode) {
  return new CredbrokerError(problem.code ?? fallbackCode, problem.detail ?? problem.title ?? `HTTP ${status}`, { status });
}
