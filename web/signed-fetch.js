// Sending one `Request` signed with SigV4: shared by the page library (credbroker.js) and the
// service worker (credbroker-sw.js), so both read bodies, pick headers and recover from clock
// skew the same way.

import { sha256Hex, EMPTY_SHA256 } from './sigv4.js';

/** Largest body signed in memory (SigV4 needs its hash before sending), in bytes. */
export const DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024;
/** Largest error body read to look for a clock-skew message, in bytes. */
const MAX_ERROR_BODY_BYTES = 64 * 1024;

// Headers the browser owns (the Fetch spec's forbidden request headers, plus the ones we set):
// it drops or rewrites them, so a signature over them could never verify.
const UNSIGNABLE = new Set([
  'accept-charset', 'accept-encoding', 'access-control-request-headers', 'access-control-request-method',
  'authorization', 'connection', 'content-length', 'cookie', 'cookie2', 'date', 'dnt', 'expect', 'host',
  'keep-alive', 'origin', 'referer', 'set-cookie', 'te', 'trailer', 'transfer-encoding', 'upgrade',
  'user-agent', 'via', 'x-amz-date', 'x-amz-security-token', 'x-amz-content-sha256',
]);

/** Whether a header can be part of a signature the server will be able to verify. */
export function isSignableHeader(name) {
  const lower = name.toLowerCase();
  return !UNSIGNABLE.has(lower) && !lower.startsWith('sec-') && !lower.startsWith('proxy-');
}

/**
 * The server's clock as seen from here: `now()` is local time plus the measured skew. Signing
 * with it keeps a device whose clock is off by minutes inside the 5-minute SigV4 window.
 */
export class SkewClock {
  #localNow;

  constructor(localNow = () => Date.now(), skewMs = 0) {
    this.#localNow = localNow;
    this.skewMs = skewMs;
  }

  /** Local time, for timers. */
  localNow() {
    return this.#localNow();
  }

  /** Server time, for signatures and expiry decisions. */
  now() {
    return this.#localNow() + this.skewMs;
  }

  /**
   * Measures skew from a server timestamp taken while a request was in flight: the server read
   * its clock somewhere between `sentAt` and `receivedAt`, the midpoint is the best guess.
   */
  observe(serverMs, sentAt, receivedAt = sentAt) {
    if (!Number.isFinite(serverMs)) return false;
    this.skewMs = Math.round(serverMs - (sentAt + receivedAt) / 2);
    return true;
  }
}

/** Whether a 403 message is SigV4's "your clock is off" (API Gateway and AWS wording). */
export function isClockSkewMessage(message) {
  return /Signature expired|not yet current|RequestTimeTooSkewed/i.test(message);
}

/**
 * The server's time when it sent a response: the `Date` header (second resolution, so the
 * middle of that second), else the server time API Gateway puts in its skew message,
 * e.g. `... is now earlier than 20240501T115500Z (20240501T120000Z - 5 min.)`.
 */
export function serverTimeOf(response, message = '') {
  const date = Date.parse(response.headers.get('date') ?? '');
  if (Number.isFinite(date)) return date + 500;
  const stamp = /\((\d{8}T\d{6}Z)\s*[-+]/.exec(message)?.[1];
  if (!stamp) return NaN;
  const iso = `${stamp.slice(0, 4)}-${stamp.slice(4, 6)}-${stamp.slice(6, 11)}:${stamp.slice(11, 13)}:${stamp.slice(13)}`;
  return Date.parse(iso);
}

/** The body of a request as bytes (null when empty), refusing more than `maxBytes`. */
export async function requestBytes(request, maxBytes = DEFAULT_MAX_BODY_BYTES) {
  if (request.method === 'GET' || request.method === 'HEAD') return null;
  // Not `request.body === null`: Firefox has no Request.body.
  const bytes = new Uint8Array(await request.arrayBuffer());
  if (bytes.byteLength === 0) return null;
  if (bytes.byteLength > maxBytes) {
    throw new RangeError(`request body of ${bytes.byteLength} bytes exceeds the ${maxBytes}-byte signing limit`);
  }
  return bytes;
}

async function errorMessageOf(response) {
  const length = Number(response.headers.get('content-length') ?? 0);
  if (length > MAX_ERROR_BODY_BYTES) return '';
  const text = (await response.clone().text()).slice(0, MAX_ERROR_BODY_BYTES);
  try {
    const json = JSON.parse(text);
    return String(json.message ?? json.Message ?? json.detail ?? text);
  } catch {
    return text;
  }
}

/**
 * Signs `request` (headers form) and sends it; on a 403 that says the signature's time is off,
 * re-measures the clock from that response and retries once.
 *
 * The body is read to bytes first (FormData, URLSearchParams, Blob, strings... all end up as the
 * exact bytes the Request would send, and its content-type, multipart boundary included, stays
 * as the Request computed it); those bytes are hashed, signed and sent.
 *
 * Options: `signer` (from createSigner), `credentials` (async () => credentials), `clock`
 * (SkewClock), `fetch`, `signHeader` (which request headers to sign; default: every one the
 * browser will send unchanged), `signBody` (add x-amz-content-sha256), `maxBodyBytes`, and
 * `mode` / `redirect` overrides (the service worker cannot re-send a navigation as one).
 */
export async function signedFetch(request, options) {
  const { signer, clock, fetch, signHeader = isSignableHeader } = options;
  const body = await requestBytes(request, options.maxBodyBytes);
  const payloadHash = body ? await sha256Hex(body) : EMPTY_SHA256;
  const url = new URL(request.url);
  const kept = [...request.headers].filter(([name]) => isSignableHeader(name));

  async function send() {
    const credentials = await options.credentials();
    const signed = await signer.sign(
      {
        method: request.method,
        host: url.host,
        path: url.pathname,
        query: url.search,
        headers: kept.filter(([name]) => signHeader(name)),
        payloadHash,
      },
      credentials,
      new Date(clock.now()),
      { signBody: options.signBody },
    );
    const headers = new Headers(kept);
    for (const [name, value] of signed.headers) headers.set(name, value);
    // Who the caller is, for the app (docs/identity.md); not signed: the gateway does not need it.
    if (credentials.assertion) headers.set('x-credbroker-assertion', credentials.assertion);
    const sentAt = clock.localNow();
    const response = await fetch(url.href, {
      method: request.method,
      headers,
      body,
      mode: options.mode ?? request.mode,
      credentials: request.credentials,
      cache: request.cache,
      redirect: options.redirect ?? request.redirect,
      referrerPolicy: request.referrerPolicy,
      integrity: request.integrity,
      keepalive: request.keepalive,
      signal: request.signal,
    });
    return { response, sentAt };
  }

  const first = await send();
  if (first.response.status !== 403) return first.response;
  const message = await errorMessageOf(first.response);
  if (!isClockSkewMessage(message)) return first.response;
  if (!clock.observe(serverTimeOf(first.response, message), first.sentAt, clock.localNow())) {
    return first.response;
  }
  options.onSkew?.(clock.skewMs);
  return (await send()).response;
}
