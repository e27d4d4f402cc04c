//! Retry pacing. kube's `error_policy` is stateless, so the state lives here.
//!
//! - Transient failures: per-object exponential backoff with full jitter,
//!   1 s doubling to 5 min, reset on success.
//! - Unauthorized: every rule of the ProviderConfig waits, doubling from
//!   30 s to 10 min, so rejected credentials are not hammered by every rule.
//!   Any success on that config, or a changed Secret, clears it.
//!
//! Entries are removed on success and when objects are deleted, so the maps
//! hold only objects that are failing right now.

use std::{
    collections::HashMap,
    hash::Hash,
    sync::Mutex,
    time::{Duration, Instant},
};

use rand::Rng;

#[derive(Debug)]
struct Exponential {
    base: Duration,
    max: Duration,
}

impl Exponential {
    /// The ceiling for the n-th consecutive failure (n starts at 1).
    fn ceiling(&self, failures: u32) -> Duration {
        let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(20));
        self.base.saturating_mul(factor).min(self.max)
    }
}

/// Consecutive failures of one key, when it may go again, and why it failed.
#[derive(Debug)]
struct Failing {
    count: u32,
    until: Instant,
    why: Option<String>,
}

/// Consecutive failures per key, turned into jittered delays.
#[derive(Debug)]
pub struct Backoff<K> {
    policy: Exponential,
    failures: Mutex<HashMap<K, Failing>>,
}

impl<K: Eq + Hash + Clone> Backoff<K> {
    pub fn new(base: Duration, max: Duration) -> Self {
        Self {
            policy: Exponential { base, max },
            failures: Mutex::default(),
        }
    }

    /// Records a failure of `key` and returns how long to wait before the next try:
    /// uniformly random below the exponential ceiling ("full jitter"), so
    /// rules that failed together do not retry together.
    pub fn fail(&self, key: &K) -> Duration {
        self.fail_with(key, None)
    }

    /// `fail`, remembering why (say, the provider's error code), for [`Self::why`].
    pub fn fail_because(&self, key: &K, why: String) -> Duration {
        self.fail_with(key, Some(why))
    }

    fn fail_with(&self, key: &K, why: Option<String>) -> Duration {
        let ceiling = {
            let mut map = self.lock();
            let entry = map.entry(key.clone()).or_insert(Failing {
                count: 0,
                until: Instant::now(),
                why: None,
            });
            entry.count = entry.count.saturating_add(1);
            let ceiling = self.policy.ceiling(entry.count);
            entry.until = Instant::now() + ceiling;
            entry.why = why;
            ceiling
        };
        let millis = u64::try_from(ceiling.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        Duration::from_millis(rand::rng().random_range(millis / 2..=millis))
    }

    /// How long `key` must still wait, if it is backing off.
    pub fn remaining(&self, key: &K) -> Option<Duration> {
        let map = self.lock();
        map.get(key)?
            .until
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
    }

    /// Why `key` last failed, as `fail_because` said.
    pub fn why(&self, key: &K) -> Option<String> {
        self.lock().get(key)?.why.clone()
    }

    pub fn reset(&self, key: &K) {
        self.lock().remove(key);
    }

    /// Number of keys backing off, for the metrics gauge.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, Failing>> {
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_ceiling() {
        let b = Backoff::new(Duration::from_secs(1), Duration::from_secs(8));
        let delays: Vec<_> = (0..6).map(|_| b.fail(&"rule")).collect();
        let ceilings = [1, 2, 4, 8, 8, 8];
        for (d, c) in delays.iter().zip(ceilings) {
            let c = Duration::from_secs(c);
            assert!(
                *d <= c && *d >= c / 2,
                "{d:?} not within [{:?}, {c:?}]",
                c / 2
            );
        }
    }

    #[test]
    fn success_resets_the_count() {
        let b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        for _ in 0..5 {
            b.fail(&"rule");
        }
        b.reset(&"rule");
        assert!(b.is_empty());
        assert!(b.fail(&"rule") <= Duration::from_secs(1));
    }

    /// A pause remembers the failure that caused it, until success resets it.
    #[test]
    fn a_pause_says_why_until_it_is_reset() {
        let b = Backoff::new(Duration::from_secs(30), Duration::from_secs(600));
        b.fail_because(&"config", "SignatureDoesNotMatch".into());
        assert_eq!(b.why(&"config").as_deref(), Some("SignatureDoesNotMatch"));
        b.fail(&"config");
        assert_eq!(b.why(&"config"), None, "a later failure without a reason");
        b.fail_because(&"config", "InvalidAccessKeyId.NotFound".into());
        b.reset(&"config");
        assert_eq!(b.why(&"config"), None);
    }

    #[test]
    fn keys_back_off_independently() {
        let b = Backoff::new(Duration::from_secs(10), Duration::from_secs(60));
        b.fail(&"a");
        assert!(b.remaining(&"a").is_some());
        assert!(b.remaining(&"b").is_none());
    }
}
