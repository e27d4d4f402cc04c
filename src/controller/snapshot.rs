//! Shared describes of security groups. Many rules of one group checked at
//! about the same time (a mass delete, say) share one describe instead of
//! making one each: a caller waits for a describe in flight and takes its
//! answer when it is recent enough for it.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use crate::provider::{DescribedRule, GroupRef, Provider, ProviderError};

/// How old a describe may be for a check before a revoke. A stale answer
/// costs at most a revoke of a rule already gone (the provider says so), and
/// a rule it does not show is looked up again in a fresh describe.
pub const SHARED_FOR: Duration = Duration::from_secs(60);

/// Read-after-write lag: how often, and after which pauses, a describe that
/// does not show an expected rule is repeated before concluding. Short: a
/// pass holds its rule while it waits, and the lag of the clouds' group
/// describes is well under a second.
pub const LAG_RETRIES: [Duration; 2] = [Duration::from_millis(200), Duration::from_millis(800)];

/// Pauses before a describe that failed transiently is asked again.
pub const READ_RETRIES: [Duration; 2] = [Duration::from_millis(100), Duration::from_millis(400)];

/// One group's rules as a describe returned them.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// When the describe was sent: it shows everything done before.
    pub sent: Instant,
    pub rules: Arc<Vec<DescribedRule>>,
}

/// The latest describe of one group, and the latest failure: callers that
/// waited for a describe share its answer, failure included, so a failing
/// provider is asked once per wave rather than once per waiting rule.
#[derive(Default)]
struct Latest {
    snapshot: Option<Snapshot>,
    /// When the failed describe was answered, and how.
    failure: Option<(Instant, ProviderError)>,
}

type Slot = Arc<tokio::sync::Mutex<Latest>>;

/// The latest describe of each group, keyed by the client that made it (a
/// ProviderConfig's `credentials_key`) and group: a describe made before the
/// config pointed elsewhere says nothing about where it points now.
#[derive(Default)]
pub struct Snapshots(Mutex<HashMap<(String, GroupRef), Slot>>);

impl Snapshots {
    /// The group's rules as a describe sent at or after `since` shows them:
    /// the latest one if it qualifies, else a new one, which concurrent
    /// callers then share.
    pub async fn describe(
        &self,
        client: &str,
        group: &GroupRef,
        provider: &dyn Provider,
        since: Instant,
    ) -> Result<Snapshot, ProviderError> {
        let arrived = Instant::now();
        let slot = self.slot(client, group);
        let mut latest = slot.lock().await;
        if let Some(snapshot) = latest.snapshot.as_ref().filter(|s| s.sent >= since) {
            return Ok(snapshot.clone());
        }
        // Only callers that waited for the failed describe share its failure.
        if let Some((_, e)) = latest
            .failure
            .as_ref()
            .filter(|(answered, _)| *answered >= arrived)
        {
            return Err(e.clone());
        }
        let sent = Instant::now();
        match provider.describe(group).await {
            Ok(rules) => {
                let snapshot = Snapshot {
                    sent,
                    rules: Arc::new(rules),
                };
                latest.snapshot = Some(snapshot.clone());
                latest.failure = None;
                Ok(snapshot)
            }
            Err(e) => {
                latest.failure = Some((Instant::now(), e.clone()));
                Err(e)
            }
        }
    }

    /// Forgets a rule this operator revoked, so later checks against the
    /// same snapshot do not revoke it again.
    pub async fn revoked(&self, client: &str, group: &GroupRef, rule_id: &str) {
        let slot = self.slot(client, group);
        let mut latest = slot.lock().await;
        if let Some(snapshot) = latest.snapshot.as_mut()
            && snapshot.rules.iter().any(|d| d.rule_id == rule_id)
        {
            snapshot.rules = Arc::new(
                snapshot
                    .rules
                    .iter()
                    .filter(|d| d.rule_id != rule_id)
                    .cloned()
                    .collect(),
            );
        }
    }

    fn slot(&self, client: &str, group: &GroupRef) -> Slot {
        let mut slots = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Groups no longer checked lose their snapshot after a while.
        if slots.len() > 4096 {
            slots.retain(|_, slot| Arc::strong_count(slot) > 1);
        }
        slots
            .entry((client.to_owned(), group.clone()))
            .or_default()
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;

    use super::*;
    use crate::provider::{Authorize, ProviderKind, Receipt, Revoke};

    /// Counts describes; each takes a while, so callers overlap. Fails
    /// every describe when `failing`.
    #[derive(Default)]
    struct Counting(AtomicUsize, bool);

    #[async_trait]
    impl Provider for Counting {
        fn kind(&self) -> ProviderKind {
            ProviderKind::Alibaba
        }
        async fn authorize(&self, _: &Authorize) -> Result<Receipt, ProviderError> {
            unreachable!("describes only")
        }
        async fn revoke(&self, _: &Revoke) -> Result<Receipt, ProviderError> {
            unreachable!("describes only")
        }
        async fn describe(&self, _: &GroupRef) -> Result<Vec<DescribedRule>, ProviderError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(50)).await;
            if self.1 {
                return Err(ProviderError::new(
                    crate::provider::ErrorKind::Transient,
                    "ServiceUnavailable",
                    "down",
                ));
            }
            Ok(Vec::new())
        }
    }

    fn group(id: &str) -> GroupRef {
        GroupRef {
            region: "cn-hangzhou".into(),
            security_group_id: id.into(),
        }
    }

    #[tokio::test]
    async fn checks_of_one_group_share_a_describe() {
        let snapshots = Snapshots::default();
        let provider = Counting::default();
        let start = Instant::now();
        let since = start.checked_sub(SHARED_FOR).unwrap_or(start);
        let sg1 = group("sg-1");
        let checks = (0..100).map(|_| snapshots.describe("c", &sg1, &provider, since));
        for result in futures::future::join_all(checks).await {
            result.expect("described");
        }
        assert_eq!(provider.0.load(Ordering::SeqCst), 1);
        snapshots
            .describe("c", &group("sg-2"), &provider, since)
            .await
            .expect("described");
        assert_eq!(provider.0.load(Ordering::SeqCst), 2, "one per group");
    }

    /// A caller that needs to see its own write waits for a describe sent
    /// after it.
    #[tokio::test]
    async fn a_describe_older_than_needed_is_not_reused() {
        let snapshots = Snapshots::default();
        let provider = Counting::default();
        let first = snapshots
            .describe("c", &group("sg-1"), &provider, Instant::now())
            .await
            .expect("described");
        let again = snapshots
            .describe("c", &group("sg-1"), &provider, first.sent)
            .await
            .expect("described");
        assert_eq!(again.sent, first.sent);
        let after_write = Instant::now();
        let fresh = snapshots
            .describe("c", &group("sg-1"), &provider, after_write)
            .await
            .expect("described");
        assert!(fresh.sent >= after_write);
        assert_eq!(provider.0.load(Ordering::SeqCst), 2);
    }

    /// Callers waiting for a describe that fails share the failure; a
    /// caller that comes later asks again.
    #[tokio::test]
    async fn waiters_share_a_failure_and_later_callers_ask_again() {
        let snapshots = Snapshots::default();
        let provider = Counting(AtomicUsize::new(0), true);
        let since = Instant::now();
        let sg1 = group("sg-1");
        let checks = (0..20).map(|_| snapshots.describe("c", &sg1, &provider, since));
        let failed = futures::future::join_all(checks).await;
        assert!(failed.iter().all(Result::is_err));
        assert_eq!(provider.0.load(Ordering::SeqCst), 1);
        let _ = snapshots.describe("c", &sg1, &provider, since).await;
        assert_eq!(provider.0.load(Ordering::SeqCst), 2);
    }
}
