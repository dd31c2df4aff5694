//! Bounded, expiring, in-memory stores for the dev provider's one-time values (sign-in pages,
//! authorization codes, sessions, refresh tokens), and the random tokens that key them.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// 256 bits: unguessable, and short enough for URLs and cookies.
const TOKEN_BYTES: usize = 32;

/// A fresh random token, base64url without padding (safe in URLs, cookies and HTML).
pub(super) fn random_token() -> String {
    let mut bytes = [0u8; TOKEN_BYTES];
    // Without a working system RNG no token the provider hands out would be safe; there is no
    // sensible way to continue.
    aws_lc_rs::rand::fill(&mut bytes).expect("the system random number generator failed");
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Values keyed by random tokens, each living `lifetime`; at most `capacity` are kept, the oldest
/// making room for a new one, so a client looping on `/authorize` cannot grow memory without
/// bound.
pub(super) struct BoundedStore<V> {
    inner: Mutex<Inner<V>>,
    capacity: usize,
    lifetime: Duration,
}

struct Inner<V> {
    entries: HashMap<String, Entry<V>>,
    /// Insertion counter: orders entries even when two share an `Instant`.
    next_sequence: u64,
}

struct Entry<V> {
    value: V,
    expires_at: Instant,
    sequence: u64,
}

impl<V: Clone> BoundedStore<V> {
    /// An empty store.
    pub(super) fn new(capacity: usize, lifetime: Duration) -> Self {
        BoundedStore {
            inner: Mutex::new(Inner {
                entries: HashMap::new(),
                next_sequence: 0,
            }),
            capacity: capacity.max(1),
            lifetime,
        }
    }

    /// Stores `value` under a fresh random key and returns the key.
    pub(super) fn insert(&self, value: V) -> String {
        let key = random_token();
        let now = Instant::now();
        let mut inner = self.lock();
        inner.entries.retain(|_, entry| entry.expires_at > now);
        if inner.entries.len() >= self.capacity {
            let oldest = inner
                .entries
                .iter()
                .min_by_key(|(_, entry)| entry.sequence)
                .map(|(key, _)| key.clone());
            if let Some(oldest) = oldest {
                inner.entries.remove(&oldest);
            }
        }
        let sequence = inner.next_sequence;
        inner.next_sequence += 1;
        inner.entries.insert(
            key.clone(),
            Entry {
                value,
                expires_at: now + self.lifetime,
                sequence,
            },
        );
        key
    }

    /// Removes and returns the value under `key` if it has not expired (single use).
    pub(super) fn take(&self, key: &str) -> Option<V> {
        let entry = self.lock().entries.remove(key)?;
        (entry.expires_at > Instant::now()).then_some(entry.value)
    }

    /// The value under `key` if it has not expired, leaving it in place.
    pub(super) fn get(&self, key: &str) -> Option<V> {
        let inner = self.lock();
        let entry = inner.entries.get(key)?;
        (entry.expires_at > Instant::now()).then(|| entry.value.clone())
    }

    /// Removes the value under `key`, if any.
    pub(super) fn remove(&self, key: &str) {
        self.lock().entries.remove(key);
    }

    /// The lifetime of every entry.
    pub(super) fn lifetime(&self) -> Duration {
        self.lifetime
    }

    fn lock(&self) -> MutexGuard<'_, Inner<V>> {
        // Nothing that can panic runs while the lock is held with the map half-updated, so a
        // poisoned lock still guards consistent data: keep serving.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_is_single_use() {
        let store = BoundedStore::new(4, Duration::from_secs(60));
        let key = store.insert("value");
        assert_eq!(store.take(&key), Some("value"));
        assert_eq!(store.take(&key), None);
    }

    #[test]
    fn get_leaves_the_value() {
        let store = BoundedStore::new(4, Duration::from_secs(60));
        let key = store.insert(7);
        assert_eq!(store.get(&key), Some(7));
        assert_eq!(store.get(&key), Some(7));
        store.remove(&key);
        assert_eq!(store.get(&key), None);
    }

    #[test]
    fn expired_values_are_gone() {
        let store = BoundedStore::new(4, Duration::ZERO);
        let key = store.insert(1);
        assert_eq!(store.get(&key), None);
        assert_eq!(store.take(&key), None);
    }

    #[test]
    fn capacity_evicts_the_oldest() {
        let store = BoundedStore::new(2, Duration::from_secs(60));
        let first = store.insert(1);
        let second = store.insert(2);
        let third = store.insert(3);
        assert_eq!(store.get(&first), None);
        assert_eq!(store.get(&second), Some(2));
        assert_eq!(store.get(&third), Some(3));
    }

    #[test]
    fn tokens_are_distinct_base64url() {
        let a = random_token();
        let b = random_token();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
    }
}
