//! Reconcile slots per namespace. The controller runs a fixed number of
//! reconciles at once and starts waiting ones in the order they became due,
//! so a namespace that creates thousands of rules would fill every slot and
//! queue ahead of another namespace's single deletion. No namespace may hold
//! more than a share of the slots; a reconcile beyond it gives its slot back
//! at once and comes back later, spread at the pace its namespace's
//! reconciles finish, instead of polling.

use std::{
    collections::HashMap,
    sync::{Mutex, PoisonError},
    time::Duration,
};

use tokio::time::Instant;

/// The most a deferred reconcile waits before it looks again.
const AT_MOST: Duration = Duration::from_secs(60);

pub struct Slots {
    /// Reconciles one namespace may run at once.
    limit: usize,
    state: Mutex<HashMap<String, Namespace>>,
}

#[derive(Default)]
struct Namespace {
    running: usize,
    /// When the last deferred reconcile was told to come back.
    horizon: Option<Instant>,
    /// Moving average of how long its reconciles take.
    typical: Option<Duration>,
}

impl Slots {
    /// For a controller running `concurrency` reconciles: a namespace may
    /// hold three quarters of them, so a quarter is always left to others.
    /// 0 is kube's "no limit": every due reconcile starts, nothing to share.
    pub fn new(concurrency: usize) -> Self {
        let limit = match concurrency {
            0 => usize::MAX,
            n => (n - n / 4).max(1),
        };
        Self {
            limit,
            state: Mutex::default(),
        }
    }

    /// A slot for a reconcile in `namespace`, or how long to wait before
    /// asking again when the namespace holds its share.
    pub fn enter(&self, namespace: &str) -> Result<Slot<'_>, Duration> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let ns = state.entry(namespace.to_owned()).or_default();
        let now = Instant::now();
        if ns.running < self.limit {
            ns.running += 1;
            // The horizon stays: the reconciles deferred before are still
            // due at their moments, and one deferred now comes after them.
            // Starting over here would send every later one back at once,
            // to be deferred again (a loop of retries, no work done).
            return Ok(Slot {
                slots: self,
                namespace: namespace.to_owned(),
                started: now,
            });
        }
        // One slot frees about every typical/limit: give each deferred
        // reconcile its own moment after the ones deferred before it.
        let typical = ns.typical.unwrap_or(Duration::from_millis(100));
        let spacing = typical / u32::try_from(self.limit).unwrap_or(u32::MAX);
        let horizon = ns.horizon.map_or(now, |h| h.max(now)) + spacing;
        ns.horizon = Some(horizon);
        Err((horizon - now).min(AT_MOST))
    }

    fn leave(&self, namespace: &str, took: Duration) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(ns) = state.get_mut(namespace) else {
            return;
        };
        ns.running = ns.running.saturating_sub(1);
        ns.typical = Some(ns.typical.map_or(took, |t| (t * 7 + took) / 8));
    }
}

/// A running reconcile's slot; freed when dropped.
pub struct Slot<'a> {
    slots: &'a Slots,
    namespace: String,
    started: Instant,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.slots.leave(&self.namespace, self.started.elapsed());
    }
}

#[cfg(test)]
mod tests {
    use std::{convert::Infallible, sync::Arc};

    use futures::{StreamExt, stream};
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::{
        ResourceExt,
        runtime::{
            controller::{Action, Config, applier},
            reflector::{self, ObjectRef},
            watcher,
        },
    };

    use super::*;

    fn map(namespace: &str, name: &str) -> ConfigMap {
        let mut map = ConfigMap::default();
        map.metadata.namespace = Some(namespace.to_owned());
        map.metadata.name = Some(name.to_owned());
        map
    }

    /// kube's controller starts due reconciles in no particular order (a
    /// hash set's) once all of its slots run. With 200 of namespace a's
    /// reconciles due before namespace b's one, each taking a second (waiting
    /// on the provider, say), b's starts at once, not somewhere in a's
    /// backlog (without the slots, about 12 s later, at random).
    #[tokio::test(start_paused = true)]
    async fn behind_the_controller_a_backlog_does_not_hold_up_another_namespace() {
        const CONCURRENCY: u16 = 8;
        let objects: Vec<ConfigMap> = (0..200)
            .map(|i| map("a", &format!("a-{i:03}")))
            .chain([map("b", "b")])
            .collect();
        let mut due: Vec<_> = objects.iter().map(ObjectRef::from_obj).collect();
        let b = due.pop().expect("b's");
        let (store, mut writer) = reflector::store();
        writer.apply_watcher_event(&watcher::Event::Init);
        for object in objects {
            writer.apply_watcher_event(&watcher::Event::InitApply(object));
        }
        writer.apply_watcher_event(&watcher::Event::InitDone);
        let slots = Arc::new(Slots::new(CONCURRENCY.into()));
        let started = Instant::now();
        let b_started = Arc::new(Mutex::new(None));
        let seen = b_started.clone();
        let reconciles = applier(
            move |object: Arc<ConfigMap>, slots: Arc<Slots>| {
                let seen = seen.clone();
                Box::pin(async move {
                    let namespace = object.namespace().unwrap_or_default();
                    let slot = match slots.enter(&namespace) {
                        Ok(slot) => slot,
                        Err(wait) => return Ok::<_, Infallible>(Action::requeue(wait)),
                    };
                    if namespace == "b" {
                        *seen.lock().expect("present") = Some(started.elapsed());
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    drop(slot);
                    Ok(Action::await_change())
                })
            },
            |_, _: &Infallible, _| Action::await_change(),
            slots,
            store,
            // b's becomes due once a's fill the controller.
            stream::iter(due)
                .chain(stream::once(async {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    b
                }))
                .map(Ok::<_, Infallible>)
                .chain(stream::pending()),
            Config::default().concurrency(CONCURRENCY),
        )
        .for_each(|_| async {});
        let b_ran = async {
            loop {
                if let Some(at) = *b_started.lock().expect("present") {
                    return at;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        let waited = tokio::select! {
            at = b_ran => at,
            () = reconciles => unreachable!("the queue never ends"),
        };
        assert!(waited < Duration::from_secs(1), "b waited {waited:?}");
    }

    #[test]
    fn a_namespace_keeps_a_quarter_of_the_slots_free_for_others() {
        let slots = Slots::new(8);
        let held: Vec<_> = (0..6).map(|_| slots.enter("a").expect("a slot")).collect();
        assert!(slots.enter("a").is_err(), "a holds its share");
        let b = slots.enter("b").expect("b still gets a slot");
        drop(b);
        drop(held);
        assert!(slots.enter("a").is_ok(), "freed slots are a's again");
    }

    #[tokio::test(start_paused = true)]
    async fn deferred_reconciles_come_back_spread_at_the_pace_slots_free() {
        let slots = Slots::new(4);
        let held: Vec<_> = (0..3).map(|_| slots.enter("a").expect("a slot")).collect();
        tokio::time::advance(Duration::from_millis(300)).await;
        drop(held);
        let held: Vec<_> = (0..3).map(|_| slots.enter("a").expect("a slot")).collect();
        // Reconciles of a took 300 ms; with 3 slots one frees every 100 ms.
        let waits: Vec<Duration> = (0..3)
            .map(|_| slots.enter("a").err().expect("deferred"))
            .collect();
        assert_eq!(
            waits,
            [100, 200, 300].map(Duration::from_millis).to_vec(),
            "{waits:?}"
        );
        drop(held);
        assert!(slots.enter("a").is_ok());
    }

    /// A slot granted in between does not bunch later deferrals onto the
    /// moments already given out: they queue behind the earlier ones.
    #[tokio::test(start_paused = true)]
    async fn a_granted_slot_keeps_later_deferrals_behind_earlier_ones() {
        let slots = Slots::new(4);
        let held: Vec<_> = (0..3).map(|_| slots.enter("a").expect("a slot")).collect();
        tokio::time::advance(Duration::from_millis(300)).await;
        drop(held);
        let mut held: Vec<_> = (0..3).map(|_| slots.enter("a").expect("a slot")).collect();
        let early: Vec<Duration> = (0..3)
            .map(|_| slots.enter("a").err().expect("deferred"))
            .collect();
        held.pop();
        held.push(slots.enter("a").expect("the freed slot"));
        let later = slots.enter("a").err().expect("deferred");
        assert!(
            early.iter().all(|e| *e < later),
            "early {early:?}, later {later:?}"
        );
    }

    #[test]
    fn without_a_limit_on_the_controller_no_namespace_is_held_back() {
        let slots = Slots::new(0);
        let held: Vec<_> = (0..1000)
            .map(|_| slots.enter("a").expect("a slot"))
            .collect();
        assert_eq!(held.len(), 1000);
    }

    #[test]
    fn one_slot_is_never_refused() {
        let slots = Slots::new(1);
        let only = slots.enter("a").expect("the slot");
        drop(only);
        assert!(slots.enter("a").is_ok());
    }
}
