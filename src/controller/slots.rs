//! Reconcile slots per namespace. The controller runs a fixed number of
//! reconciles at once and starts waiting ones in no particular order, so a
//! namespace that creates thousands of rules would fill every slot and
//! queue ahead of another namespace's single deletion. No namespace may hold
//! more than a share of the slots; a reconcile beyond it gives its slot back
//! at once and waits in its namespace's queue, and each slot that frees
//! wakes the next one in line. Waking on release rather than guessing when
//! to come back keeps the namespace's share busy however long its
//! reconciles take.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::{Mutex, PoisonError},
    time::Duration,
};

use futures::channel::mpsc::UnboundedSender;
use kube::{Resource, runtime::reflector::ObjectRef};
use tokio::time::Instant;

/// When a waiting reconcile runs again if no wake reaches it (its object
/// vanished before it was woken, say, and took the wake with it).
pub const UNWOKEN: Duration = Duration::from_secs(60);

/// A woken reconcile that has not come back within this is taken for lost:
/// its wake goes to the next in line.
const WOKEN_FOR: Duration = Duration::from_secs(5);

pub struct Slots<K: Resource<DynamicType = ()>> {
    /// Reconciles one namespace may run at once.
    limit: usize,
    /// Starts a waiting reconcile (the controller's `reconcile_on`).
    wake: UnboundedSender<ObjectRef<K>>,
    state: Mutex<HashMap<String, Namespace<K>>>,
}

struct Namespace<K: Resource<DynamicType = ()>> {
    running: usize,
    /// Deferred reconciles in the order they asked. One that got a slot
    /// meanwhile stays in place, no longer `queued`, and is skipped.
    waiting: VecDeque<ObjectRef<K>>,
    queued: HashSet<ObjectRef<K>>,
    /// Woken, not yet back: each holds a freed slot.
    woken: HashMap<ObjectRef<K>, Instant>,
}

impl<K: Resource<DynamicType = ()>> Default for Namespace<K> {
    fn default() -> Self {
        Self {
            running: 0,
            waiting: VecDeque::new(),
            queued: HashSet::new(),
            woken: HashMap::new(),
        }
    }
}

impl<K: Resource<DynamicType = ()>> Slots<K> {
    /// For a controller running `concurrency` reconciles: a namespace may
    /// hold three quarters of them, so a quarter is always left to others.
    /// 0 is kube's "no limit": every due reconcile starts, nothing to share.
    pub fn new(concurrency: usize, wake: UnboundedSender<ObjectRef<K>>) -> Self {
        let limit = match concurrency {
            0 => usize::MAX,
            n => (n - n / 4).max(1),
        };
        Self {
            limit,
            wake,
            state: Mutex::default(),
        }
    }

    /// A slot for a reconcile of `object`, or `Err` when its namespace holds
    /// its share: the reconcile is then queued, to be woken when a slot
    /// frees, and the error says when to run again should no wake come.
    pub fn enter(&self, object: &ObjectRef<K>) -> Result<Slot<'_, K>, Duration> {
        let namespace = object.namespace.clone().unwrap_or_default();
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let ns = state.entry(namespace.clone()).or_default();
        // Back from a wake: the slot held for it is free again, and no
        // reconcile that did not wait can have taken it.
        let woken = ns.woken.remove(object).is_some();
        if ns.running + ns.woken.len() < self.limit {
            ns.running += 1;
            // Its place in the queue, if any, is skipped when reached.
            ns.queued.remove(object);
            return Ok(Slot {
                slots: self,
                namespace,
            });
        }
        // A reconcile asked again while queued keeps its place; one whose
        // wake came late goes first.
        // Kept bare: a mass delete queues thousands, and name and
        // namespace are all a wake needs.
        let mut bare = object.clone();
        bare.extra = Default::default();
        if ns.queued.insert(bare.clone()) {
            if woken {
                ns.waiting.push_front(bare);
            } else {
                ns.waiting.push_back(bare);
            }
        }
        Err(UNWOKEN)
    }

    fn leave(&self, namespace: &str) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(ns) = state.get_mut(namespace) else {
            return;
        };
        ns.running = ns.running.saturating_sub(1);
        let now = Instant::now();
        ns.woken.retain(|_, at| now.duration_since(*at) < WOKEN_FOR);
        while ns.running + ns.woken.len() < self.limit {
            let Some(next) = ns.waiting.pop_front() else {
                break;
            };
            if !ns.queued.remove(&next) {
                continue;
            }
            ns.woken.insert(next.clone(), now);
            // The controller is gone only when shutting down.
            let _ = self.wake.unbounded_send(next);
        }
        if ns.running == 0 && ns.waiting.is_empty() && ns.woken.is_empty() {
            state.remove(namespace);
        }
    }
}

/// A running reconcile's slot; freed when dropped.
pub struct Slot<'a, K: Resource<DynamicType = ()>> {
    slots: &'a Slots<K>,
    namespace: String,
}

impl<K: Resource<DynamicType = ()>> Drop for Slot<'_, K> {
    fn drop(&mut self) {
        self.slots.leave(&self.namespace);
    }
}

#[cfg(test)]
mod tests {
    use std::{
        convert::Infallible,
        sync::{Arc, Mutex},
    };

    use futures::{StreamExt, channel::mpsc, stream};
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::{
        ResourceExt,
        runtime::{
            controller::{Action, Config, applier},
            reflector::{self, Store},
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

    fn key(namespace: &str, name: &str) -> ObjectRef<ConfigMap> {
        ObjectRef::from_obj(&map(namespace, name))
    }

    /// `count` slots of namespace `namespace`, held.
    fn hold<'a>(
        slots: &'a Slots<ConfigMap>,
        namespace: &str,
        count: usize,
    ) -> Vec<Slot<'a, ConfigMap>> {
        (0..count)
            .map(|i| {
                slots
                    .enter(&key(namespace, &i.to_string()))
                    .expect("a slot")
            })
            .collect()
    }

    fn store_of(objects: &[ConfigMap]) -> Store<ConfigMap> {
        let (store, mut writer) = reflector::store();
        writer.apply_watcher_event(&watcher::Event::Init);
        for object in objects {
            writer.apply_watcher_event(&watcher::Event::InitApply(object.clone()));
        }
        writer.apply_watcher_event(&watcher::Event::InitDone);
        store
    }

    /// Runs kube's controller loop over `objects` (all due at once, then
    /// `late` after 100 ms) with `CONCURRENCY` reconciles and the slots,
    /// woken as the operator wakes them. Each reconcile takes what `work`
    /// says; returns when every object has run once, with the virtual time
    /// each started at.
    async fn run_all(
        objects: Vec<ConfigMap>,
        late: Option<ConfigMap>,
        work: impl Fn(&str) -> Duration + Send + Sync + 'static,
    ) -> HashMap<String, Duration> {
        const CONCURRENCY: u16 = 8;
        let everything: Vec<ConfigMap> = objects.iter().cloned().chain(late.clone()).collect();
        let store = store_of(&everything);
        let (wake, woken) = mpsc::unbounded();
        let slots = Arc::new(Slots::new(CONCURRENCY.into(), wake));
        let started_at = Instant::now();
        let starts = Arc::new(Mutex::new(HashMap::new()));
        let seen = starts.clone();
        let work = Arc::new(work);
        let due = stream::iter(objects.iter().map(ObjectRef::from_obj).collect::<Vec<_>>())
            .chain(
                stream::once(async move {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    late.as_ref().map(ObjectRef::from_obj)
                })
                .filter_map(|late| async move { late }),
            )
            .chain(stream::pending());
        let reconciles = applier(
            move |object: Arc<ConfigMap>, slots: Arc<Slots<ConfigMap>>| {
                let (seen, work) = (seen.clone(), work.clone());
                Box::pin(async move {
                    let Ok(slot) = slots.enter(&ObjectRef::from_obj(object.as_ref())) else {
                        return Ok::<_, Infallible>(Action::requeue(UNWOKEN));
                    };
                    let name = object.name_any();
                    seen.lock()
                        .expect("present")
                        .insert(name.clone(), started_at.elapsed());
                    tokio::time::sleep(work(&name)).await;
                    drop(slot);
                    Ok(Action::await_change())
                })
            },
            |_, _: &Infallible, _| Action::await_change(),
            slots,
            store,
            stream::select(due, woken).map(Ok::<_, Infallible>),
            Config::default().concurrency(CONCURRENCY),
        )
        .for_each(|_| async {});
        let total = everything.len();
        let all_ran = async {
            loop {
                if starts.lock().expect("present").len() == total {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::select! {
            () = all_ran => {},
            () = reconciles => unreachable!("the queue never ends"),
        }
        starts.lock().expect("present").clone()
    }

    /// kube's controller starts due reconciles in no particular order (a
    /// hash set's) once all of its slots run. With 200 of namespace a's
    /// reconciles due before namespace b's one, each taking a second (waiting
    /// on the provider, say), b's starts at once, not somewhere in a's
    /// backlog (without the slots, about 12 s later, at random).
    #[tokio::test(start_paused = true)]
    async fn behind_the_controller_a_backlog_does_not_hold_up_another_namespace() {
        let a = (0..200).map(|i| map("a", &format!("a-{i:03}"))).collect();
        let starts = run_all(a, Some(map("b", "b")), |_| Duration::from_secs(1)).await;
        let waited = starts["b"] - Duration::from_millis(100);
        assert!(waited < Duration::from_secs(1), "b waited {waited:?}");
    }

    /// Each slot that frees starts the next waiting reconcile, however long
    /// the ones before took: a namespace's first reconciles taking a second
    /// do not space out the quick ones queued behind them (a guess of when
    /// to come back, from how long reconciles took, kept a mass delete's
    /// slots mostly idle).
    #[tokio::test(start_paused = true)]
    async fn a_freed_slot_starts_the_next_waiting_reconcile_at_once() {
        let a: Vec<ConfigMap> = (0..200).map(|i| map("a", &format!("a-{i:03}"))).collect();
        let starts = run_all(a, None, |name| {
            if name < "a-006" {
                Duration::from_secs(1)
            } else {
                Duration::from_millis(10)
            }
        })
        .await;
        let last = starts.values().max().copied().unwrap_or_default();
        // The six slow ones, then 194 quick ones six at a time: 1.33 s.
        assert!(
            last < Duration::from_secs(2),
            "the last started at {last:?}"
        );
    }

    #[test]
    fn a_namespace_keeps_a_quarter_of_the_slots_free_for_others() {
        let (wake, _woken) = mpsc::unbounded();
        let slots = Slots::new(8, wake);
        let held = hold(&slots, "a", 6);
        assert!(slots.enter(&key("a", "6")).is_err(), "a holds its share");
        let b = slots.enter(&key("b", "0")).expect("b still gets a slot");
        drop(b);
        drop(held);
        assert!(
            slots.enter(&key("a", "7")).is_ok(),
            "freed slots are a's again"
        );
    }

    #[test]
    fn a_freed_slot_wakes_the_first_in_line_once_and_is_held_for_it() {
        let (wake, mut woken) = mpsc::unbounded();
        let slots = Slots::new(4, wake);
        let mut held = hold(&slots, "a", 3);
        let (x, y) = (key("a", "x"), key("a", "y"));
        assert_eq!(slots.enter(&x).err(), Some(UNWOKEN));
        assert!(slots.enter(&y).is_err());
        assert!(slots.enter(&x).is_err(), "asked again, x keeps its place");
        assert!(woken.try_recv().is_err(), "no slot freed yet");
        held.pop();
        assert_eq!(woken.try_recv().ok(), Some(x.clone()));
        assert!(woken.try_recv().is_err(), "one slot, one wake");
        assert!(
            slots.enter(&key("a", "fresh")).is_err(),
            "the freed slot is held for x"
        );
        held.push(slots.enter(&x).expect("x's slot"));
        held.pop();
        assert_eq!(woken.try_recv().ok(), Some(y), "then y");
    }

    /// A woken reconcile that never comes back (its object was deleted)
    /// does not hold its slot for good.
    #[tokio::test(start_paused = true)]
    async fn a_lost_wake_passes_to_the_next_in_line() {
        let (wake, mut woken) = mpsc::unbounded();
        let slots = Slots::new(4, wake);
        let mut held = hold(&slots, "a", 3);
        let (x, y) = (key("a", "x"), key("a", "y"));
        assert!(slots.enter(&x).is_err() && slots.enter(&y).is_err());
        held.pop();
        assert_eq!(woken.try_recv().ok(), Some(x));
        tokio::time::advance(WOKEN_FOR).await;
        held.pop();
        assert_eq!(
            woken.try_recv().ok(),
            Some(y),
            "x's slot and the one just freed"
        );
    }

    #[test]
    fn without_a_limit_on_the_controller_no_namespace_is_held_back() {
        let (wake, _woken) = mpsc::unbounded();
        let slots = Slots::new(0, wake);
        let held = hold(&slots, "a", 1000);
        assert_eq!(held.len(), 1000);
    }

    #[test]
    fn one_slot_is_never_refused() {
        let (wake, _woken) = mpsc::unbounded();
        let slots = Slots::new(1, wake);
        let only = slots.enter(&key("a", "0")).expect("the slot");
        drop(only);
        assert!(slots.enter(&key("a", "1")).is_ok());
    }
}
