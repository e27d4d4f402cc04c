//! Waiting for an informer cache's first full list.

use std::time::Duration;

use kube::{Resource, runtime::reflector::Store};

/// How often a waiter looks again.
const RECHECK: Duration = Duration::from_millis(100);

/// Returns true once `store` has had its first full list, false if it never
/// will (its writer is gone: the operator is stopping).
///
/// kube-runtime's `Store::wait_until_ready` wakes only the task that polled
/// it last: with several waiters on one store (the controller, `/readyz`,
/// reconciles) the others slept forever when the first list had to be
/// retried. Each wait is therefore bounded and repeated; once one waiter has
/// seen the store ready, the next look of every other returns at once.
pub async fn synced<K>(store: &Store<K>) -> bool
where
    K: Resource + Clone + 'static,
    K::DynamicType: Clone + Eq + std::hash::Hash,
{
    loop {
        if let Ok(result) = tokio::time::timeout(RECHECK, store.wait_until_ready()).await {
            return result.is_ok();
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::runtime::{reflector, watcher::Event};

    use super::*;

    /// Three tasks wait on one store; the store becomes ready once. Every
    /// one of them must return, not only the one polled last.
    #[tokio::test]
    async fn every_waiter_sees_the_store_ready() {
        let (store, mut writer) = reflector::store::<ConfigMap>();
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move { assert!(synced(&store).await) })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        writer.apply_watcher_event(&Event::Init);
        writer.apply_watcher_event(&Event::InitDone);
        let all = futures::future::join_all(waiters);
        tokio::time::timeout(Duration::from_secs(5), all)
            .await
            .expect("every waiter returns once the store is ready")
            .into_iter()
            .for_each(|joined| joined.expect("waiter task"));
    }

    #[tokio::test]
    async fn a_store_whose_writer_is_gone_never_syncs() {
        let (store, writer) = reflector::store::<ConfigMap>();
        drop(writer);
        assert!(!synced(&store).await);
    }
}
