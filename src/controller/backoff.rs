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
//!
//! - Watches: 0.5 s doubling to 5 s, reset by any event ([`WatchBackoff`]).

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

    /// A delay for the n-th consecutive failure: random between half the
    /// ceiling and the ceiling, so keys that failed together spread out.
    fn delay(&self, failures: u32) -> Duration {
        let millis = u64::try_from(self.ceiling(failures).as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        Duration::from_millis(rand::rng().random_range(millis / 2..=millis))
    }
}

/// Pacing of a watch that failed (API server unreachable, watch expired).
///
/// kube's default doubles to 30 s: after an API server restart the Secret
/// watch could sleep that long, and a rotated Secret went unseen while rules
/// kept signing with the old key. A watch is one request per attempt, so a
/// 5 s ceiling costs the API server little.
#[derive(Debug)]
pub struct WatchBackoff {
    policy: Exponential,
    failures: u32,
}

impl Default for WatchBackoff {
    fn default() -> Self {
        Self {
            policy: Exponential {
                base: Duration::from_millis(500),
                max: Duration::from_secs(5),
            },
            failures: 0,
        }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        self.failures = self.failures.saturating_add(1);
        Some(self.policy.delay(self.failures))
    }
}

impl kube::runtime::utils::Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.failures = 0;
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
        let failures = {
            let mut map = self.lock();
            let entry = map.entry(key.clone()).or_insert(Failing {
                count: 0,
                until: Instant::now(),
                why: None,
            });
            entry.count = entry.count.saturating_add(1);
            entry.until = Instant::now() + self.policy.ceiling(entry.count);
            entry.why = why;
            entry.count
        };
        self.policy.delay(failures)
    }

    /// For a key that failed before: `Ok` lets one caller try again once the
    /// pause is over (a probe) and keeps every other caller waiting another
    /// `base` while the probe's answer resets or extends the pause; `Err`
    /// says how long to wait. A key that never failed is always `Ok`.
    ///
    /// Without this, every rule of a ProviderConfig whose credentials were
    /// rejected would try them at once each time the pause ends.
    pub fn admit(&self, key: &K) -> Result<(), Duration> {
        let mut map = self.lock();
        let Some(entry) = map.get_mut(key) else {
            return Ok(());
        };
        let now = Instant::now();
        match entry
            .until
            .checked_duration_since(now)
            .filter(|d| !d.is_zero())
        {
            Some(wait) => Err(wait),
            None => {
                entry.until = now + self.policy.base;
                Ok(())
            }
        }
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
    use kube::runtime::utils::Backoff as _;

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

    /// When a pause ends, one caller probes; the others keep waiting for
    /// its answer instead of all trying at once.
    #[test]
    fn one_caller_probes_when_a_pause_ends() {
        let b = Backoff::new(Duration::from_millis(50), Duration::from_secs(1));
        assert!(b.admit(&"config").is_ok(), "never failed: no pause");
        assert!(b.admit(&"config").is_ok());
        b.fail(&"config");
        assert!(b.admit(&"config").is_err(), "paused");
        std::thread::sleep(Duration::from_millis(60));
        assert!(b.admit(&"config").is_ok(), "the probe");
        assert!(b.admit(&"config").is_err(), "the others wait for the probe");
        b.reset(&"config");
        assert!(b.admit(&"config").is_ok(), "the probe succeeded");
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
        assert!(b.admit(&"a").is_err());
        assert!(b.admit(&"b").is_ok());
    }

    #[test]
    fn a_failing_watch_retries_within_five_seconds_and_starts_over_after_an_event() {
        let mut watch = WatchBackoff::default();
        let delays: Vec<Duration> = (&mut watch).take(12).collect();
        assert!(delays[0] >= Duration::from_millis(250) && delays[0] <= Duration::from_millis(500));
        assert!(
            delays.iter().all(|d| *d <= Duration::from_secs(5)),
            "{delays:?}"
        );
        assert!(delays[11] >= Duration::from_millis(2500), "{delays:?}");
        watch.reset();
        assert!(watch.next().expect("endless") <= Duration::from_millis(500));
    }
}
