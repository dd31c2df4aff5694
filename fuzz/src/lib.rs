//! Shared checks for credbroker's fuzz targets (see `docs/fuzzing.md`).
//!
//! The targets live in `fuzz_targets/`; what they have in common is the rule that an error
//! message shown to a client or written to a log must stay short, on one line, and free of
//! anything secret the request carried.

use std::time::{Duration, SystemTime};

/// Longest error message any target accepts, in bytes. The longest legitimate message quotes
/// one untrusted value of at most 80 characters (each escaped to at most 10 bytes) inside a
/// sentence, far below this.
pub const MAX_MESSAGE_BYTES: usize = 1024;

/// Secrets shorter than this are not searched for in messages: a two-character "secret" would
/// match ordinary words and report nothing real.
const MIN_SECRET_BYTES: usize = 8;

/// Asserts that `message` is bounded, single-line, free of terminal or bidi control characters,
/// and contains none of `secrets`.
pub fn assert_safe_message(what: &str, message: &str, secrets: &[&str]) {
    assert!(
        message.len() <= MAX_MESSAGE_BYTES,
        "{what}: a {}-byte error message (limit {MAX_MESSAGE_BYTES})",
        message.len()
    );
    if let Some(c) = message.chars().find(|c| c.is_control() || is_bidi_control(*c)) {
        panic!(
            "{what}: the error message contains the control character {:?}: {message:?}",
            c.escape_unicode().to_string()
        );
    }
    assert_no_secret(what, message, secrets);
}

/// Asserts that `message` contains none of `secrets`.
pub fn assert_no_secret(what: &str, message: &str, secrets: &[&str]) {
    for secret in secrets.iter().filter(|s| s.len() >= MIN_SECRET_BYTES) {
        assert!(
            !message.contains(secret),
            "{what}: the error message repeats a secret from the input"
        );
    }
}

/// Characters that reorder displayed text, which a message must not carry unescaped.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// The instant `seconds` after the Unix epoch.
pub fn unix_time(seconds: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(seconds)
}
