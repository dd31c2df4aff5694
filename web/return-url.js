// Return URLs (`next=`, `returnTo`): the one place that decides where a user may be sent back
// to after sign-in. Used by the page client, the demo page, the service worker and the
// gateway's HTML answer for unsigned navigations.
//
// Only a path on this very origin comes back, as `path?query#hash`; anything else gives '/'.
// An absolute URL is accepted when it starts with exactly this origin followed by '/'.
// The rule, strict on purpose (a return URL is typed by nobody, it is produced by our own code,
// so refusing odd ones costs nothing):
// - the raw value starts with exactly one '/' (no scheme such as `javascript:` or `data:`, no
//   scheme-relative `//host`, no `/\host`), is at most MAX_RETURN_URL_CHARS long, and holds no
//   backslash, control character or whitespace other than a plain space (browsers drop tabs
//   and newlines and read '\' as '/' before parsing: `/\thost`, `/\\host`);
// - the same holds for the path percent-decoded up to three times (`/%5Chost`, `/%252F%252Fhost`),
//   so nothing downstream that decodes the value once more can turn it into another host;
// - `new URL(value, origin)` lands on `origin`, and its normalised path does not start with
//   '//' (`/.//host` normalises to `//host`).

/** Longer return URLs are refused (a URL in a query string; 2 kB is plenty for an app path). */
export const MAX_RETURN_URL_CHARS = 2048;
const DECODE_ROUNDS = 3;
// Backslash, C0 and C1 controls, and the Unicode spaces and line separators (a plain space in
// a path or query is harmless: the URL parser encodes it).
const FORBIDDEN = /[\\\u0000-\u001f\u007f-\u00a0\u1680\u2000-\u200f\u2028\u2029\u202f\u205f\u3000\ufeff]/;

/**
 * `next` as a same-origin `path?query#hash` when it is a safe one, else '/'. `origin` is this
 * application's origin (e.g. `location.origin`).
 */
export function returnPath(next, origin) {
  try {
    const base = new URL(origin).origin;
    if (typeof next === 'string' && next.startsWith(base + '/')) next = next.slice(base.length);
    if (!safeRaw(next)) return '/';
    const url = new URL(next, base);
    if (url.origin !== base || !safeDecoded(url.pathname)) return '/';
    return url.pathname + url.search + url.hash;
  } catch {
    return '/';
  }
}

function safeRaw(value) {
  return typeof value === 'string' && value.length <= MAX_RETURN_URL_CHARS && isLocalPath(value);
}

function isLocalPath(path) {
  return path[0] === '/' && path[1] !== '/' && !FORBIDDEN.test(path);
}

// Each decoding round must stay a local path; a value that does not decode (a lone '%') is fine
// as it is: nothing can decode it further either.
function safeDecoded(path) {
  let current = path;
  for (let round = 0; round < DECODE_ROUNDS; round++) {
    if (!isLocalPath(current)) return false;
    let decoded;
    try {
      decoded = decodeURIComponent(current);
    } catch {
      return true;
    }
    if (decoded === current) return true;
    current = decoded;
  }
  return isLocalPath(current);
}
