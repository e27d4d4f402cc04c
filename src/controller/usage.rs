//! A ProviderConfig that rules still use cannot be deleted from under them:
//! the finalizer `secgroup.dev/in-use` holds it while any SecurityGroupRule
//! names it (rules being deleted too: their revoke needs it), and its
//! `InUse` condition says how many do. Crossplane guards its
//! ProviderConfigs the same way.
//!
//! The guard counts every rule of the cluster with a watch of its own, not
//! the controller's cache, which a `--label-selector` may narrow: shards
//! then agree on the count. An instance limited to one `--namespace` has no
//! cluster-wide view of rules and does not guard.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::{StreamExt, channel::mpsc};
use jiff::Timestamp;
use kube::{
    Api, Client, ResourceExt,
    api::{Patch, PatchParams},
    runtime::{
        Controller, WatchStreamExt,
        controller::Action,
        reflector::ObjectRef,
        watcher::{self, Event, watcher},
    },
};
use serde_json::json;
use tracing::{info, warn};

use super::{backoff::WatchBackoff, configs};
use crate::api::{
    ProviderConfig, SecurityGroupRule,
    conditions::{ConditionState, reasons, types},
};

/// Holds a ProviderConfig while rules use it.
pub const FINALIZER: &str = "secgroup.dev/in-use";
/// Server-side apply field manager of the `InUse` condition alone.
const MANAGER: &str = "secgroup-operator-usage";

/// How often the condition is rewritten while only its count changes: a
/// mass create or delete would otherwise write the config once per rule,
/// each an etcd write.
const COUNT_PACE: Duration = Duration::from_secs(10);

struct Usage {
    api: Api<ProviderConfig>,
    users: Arc<Users>,
    /// When each config's condition was last written, and whether the
    /// config was being deleted then.
    written: Mutex<HashMap<String, (Instant, bool)>>,
}

/// Which ProviderConfig each rule of the cluster names. At 10,000 rules
/// the index stays small: a rule is one `namespace/name` string (an
/// `ObjectRef` would also copy its uid and resourceVersion), and each config
/// name is held once, shared by the rules that name it.
#[derive(Default)]
pub struct Users {
    /// `None` until the first full list.
    by_rule: Mutex<Option<HashMap<String, Arc<str>>>>,
    /// The list being read after a (re)start of the watch.
    relisting: Mutex<HashMap<String, Arc<str>>>,
    /// One copy of every config name seen.
    names: Mutex<HashSet<Arc<str>>>,
}

impl Users {
    /// Rules naming `config`; `None` before the first full list.
    pub fn count(&self, config: &str) -> Option<usize> {
        let by_rule = lock(&self.by_rule);
        by_rule
            .as_ref()
            .map(|m| m.values().filter(|c| &***c == config).count())
    }

    /// Folds one watch event in; returns the configs whose users changed.
    pub fn observe(&self, event: &Event<SecurityGroupRule>) -> HashSet<String> {
        let mut changed = HashSet::new();
        match event {
            Event::Init => lock(&self.relisting).clear(),
            Event::InitApply(rule) => {
                let config = self.config_name(rule);
                lock(&self.relisting).insert(rule_key(rule), config);
            }
            Event::InitDone => {
                let fresh = std::mem::take(&mut *lock(&self.relisting));
                let mut by_rule = lock(&self.by_rule);
                let old = by_rule.take().unwrap_or_default();
                changed.extend(old.into_values().map(|c| c.to_string()));
                changed.extend(fresh.values().map(|c| c.to_string()));
                *by_rule = Some(fresh);
            }
            Event::Apply(rule) => {
                let config = self.config_name(rule);
                if let Some(m) = lock(&self.by_rule).as_mut() {
                    match m.insert(rule_key(rule), config.clone()) {
                        Some(old) if old == config => {}
                        Some(old) => {
                            changed.insert(old.to_string());
                            changed.insert(config.to_string());
                        }
                        None => {
                            changed.insert(config.to_string());
                        }
                    }
                }
            }
            Event::Delete(rule) => {
                if let Some(m) = lock(&self.by_rule).as_mut() {
                    changed.extend(m.remove(&rule_key(rule)).map(|c| c.to_string()));
                }
            }
        }
        changed
    }

    /// The config `rule` names, as the one shared copy of that name.
    fn config_name(&self, rule: &SecurityGroupRule) -> Arc<str> {
        let name = rule.spec.provider_config_ref.name.as_str();
        let mut names = lock(&self.names);
        if let Some(known) = names.get(name) {
            return known.clone();
        }
        let shared: Arc<str> = Arc::from(name);
        names.insert(shared.clone());
        shared
    }
}

fn rule_key(rule: &SecurityGroupRule) -> String {
    format!(
        "{}/{}",
        rule.metadata.namespace.as_deref().unwrap_or_default(),
        rule.name_any()
    )
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Runs the guard until `stop`.
pub async fn run(client: Client, stop: impl Future<Output = ()> + Send + Sync + 'static) {
    let users = Arc::new(Users::default());
    let (touched, configs_touched) = mpsc::unbounded();
    let tracked = users.clone();
    let rule_events = watcher(
        Api::<SecurityGroupRule>::all(client.clone()),
        watcher::Config::default(),
    )
    .backoff(WatchBackoff::default())
    .filter_map(|event| futures::future::ready(event.ok()))
    .for_each(move |event| {
        for config in tracked.observe(&event) {
            let _ = touched.unbounded_send(ObjectRef::new(&config));
        }
        futures::future::ready(())
    });
    let api = Api::<ProviderConfig>::all(client);
    let usage = Arc::new(Usage {
        api: api.clone(),
        users,
        written: Mutex::default(),
    });
    let guard = Controller::new(api, watcher::Config::default())
        .reconcile_on(configs_touched)
        .graceful_shutdown_on(stop)
        .run(reconcile, retry, usage)
        .for_each(|_| async {});
    // The rule watch ends with the guard, which ends on `stop`.
    tokio::select! {
        () = guard => {}
        () = rule_events => {}
    }
}

async fn reconcile(config: Arc<ProviderConfig>, usage: Arc<Usage>) -> Result<Action, kube::Error> {
    let name = config.name_any();
    let Some(users) = usage.users.count(&name) else {
        // The first list of rules has not come yet; its end triggers every config.
        return Ok(Action::await_change());
    };
    let held = config.finalizers().iter().any(|f| f == FINALIZER);
    let deleting = config.metadata.deletion_timestamp.is_some();
    if users == 0 && held {
        release(&usage.api, &config).await?;
        if deleting {
            info!(config = %name, "no rule uses the ProviderConfig any more: its deletion goes on");
            return Ok(Action::await_change());
        }
    } else if users > 0 && !held && !deleting {
        hold(&usage.api, &config).await?;
    }
    let shown = config
        .status
        .as_ref()
        .is_some_and(|s| s.conditions.iter().any(|c| c.type_ == types::IN_USE));
    let now = Instant::now();
    let last = lock(&usage.written).get(&name).copied();
    if let Some(wait) = count_pace(last, shown && users > 0, deleting, now) {
        return Ok(Action::requeue(wait));
    }
    if write_condition(&usage.api, &config, in_use(users, deleting)).await? {
        lock(&usage.written).insert(name, (now, deleting));
    }
    Ok(Action::await_change())
}

/// How long to wait before rewriting a condition that stays shown and only
/// changes its count (`count_only`): at most one write per `COUNT_PACE`.
/// Showing or clearing it, and a deletion starting, are written at once.
fn count_pace(
    last: Option<(Instant, bool)>,
    count_only: bool,
    deleting: bool,
    now: Instant,
) -> Option<Duration> {
    let (at, was_deleting) = last?;
    if !count_only || was_deleting != deleting {
        return None;
    }
    COUNT_PACE
        .checked_sub(now.duration_since(at))
        .filter(|wait| !wait.is_zero())
}

fn retry(config: Arc<ProviderConfig>, error: &kube::Error, _: Arc<Usage>) -> Action {
    warn!(config = %config.name_any(), %error, "could not update the ProviderConfig's in-use guard");
    Action::requeue(Duration::from_secs(5))
}

/// The `InUse` condition for `users` rules: present while any rule uses
/// the config, gone when none does.
pub fn in_use(users: usize, deleting: bool) -> Option<ConditionState> {
    let message = match (users, deleting) {
        (0, _) => return None,
        (n, false) => format!("{n} SecurityGroupRule(s) use this ProviderConfig"),
        (n, true) => format!(
            "deletion waits for the {n} SecurityGroupRule(s) that use this ProviderConfig: \
                 delete them (their cloud rules are revoked) or point them at another ProviderConfig"
        ),
    };
    Some(ConditionState::new(
        types::IN_USE,
        true,
        reasons::RULES_USE_IT,
        message,
    ))
}

/// Adds the finalizer.
async fn hold(api: &Api<ProviderConfig>, config: &ProviderConfig) -> Result<(), kube::Error> {
    let mut finalizers = config.finalizers().to_vec();
    finalizers.push(FINALIZER.to_owned());
    set_finalizers(api, config, &finalizers).await
}

/// Removes the finalizer.
async fn release(api: &Api<ProviderConfig>, config: &ProviderConfig) -> Result<(), kube::Error> {
    let finalizers: Vec<String> = config
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    set_finalizers(api, config, &finalizers).await
}

/// Replaces the finalizer list of the version read: the resourceVersion
/// makes the write fail (and retry) if anyone changed the config meanwhile,
/// so another finalizer is never lost.
async fn set_finalizers(
    api: &Api<ProviderConfig>,
    config: &ProviderConfig,
    finalizers: &[String],
) -> Result<(), kube::Error> {
    let patch = json!({
        "metadata": {"resourceVersion": config.resource_version(), "finalizers": finalizers}
    });
    api.patch(
        &config.name_any(),
        &PatchParams::default(),
        &Patch::Merge(patch),
    )
    .await
    .map(drop)
}

/// Applies the `InUse` condition, only when it changed; says whether it wrote.
async fn write_condition(
    api: &Api<ProviderConfig>,
    config: &ProviderConfig,
    want: Option<ConditionState>,
) -> Result<bool, kube::Error> {
    let current = config
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let update = configs::owned_update(
        current,
        &[types::IN_USE],
        want.as_slice(),
        config.metadata.generation,
        Timestamp::now(),
    );
    match update {
        Some(next) => configs::apply(api, &config.name_any(), MANAGER, &next)
            .await
            .map(|()| true),
        None => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(name: &str, config: &str) -> SecurityGroupRule {
        serde_json::from_value(json!({
            "apiVersion": "secgroup.dev/v1alpha1", "kind": "SecurityGroupRule",
            "metadata": {"name": name, "namespace": "team"},
            "spec": {
                "providerConfigRef": {"name": config}, "securityGroupId": "sg-1",
                "rule": {"direction": "Ingress", "protocol": "TCP", "peer": {"cidr": "10.0.0.0/8"}}
            }
        }))
        .expect("valid rule")
    }

    fn set(names: &[&str]) -> HashSet<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    #[test]
    fn users_are_counted_from_the_first_full_list_and_changes_name_their_configs() {
        let users = Users::default();
        users.observe(&Event::Init);
        users.observe(&Event::InitApply(rule("a", "p1")));
        assert_eq!(
            users.count("p1"),
            None,
            "no count before the list is complete"
        );
        users.observe(&Event::InitApply(rule("b", "p2")));
        assert_eq!(users.observe(&Event::InitDone), set(&["p1", "p2"]));
        assert_eq!(users.count("p1"), Some(1));
        // A status write changes nothing the guard counts.
        assert!(users.observe(&Event::Apply(rule("a", "p1"))).is_empty());
        // A rule moving to another config changes both.
        assert_eq!(
            users.observe(&Event::Apply(rule("a", "p2"))),
            set(&["p1", "p2"])
        );
        assert_eq!((users.count("p1"), users.count("p2")), (Some(0), Some(2)));
        assert_eq!(users.observe(&Event::Delete(rule("b", "p2"))), set(&["p2"]));
        assert_eq!(users.count("p2"), Some(1));
        // A relist replaces the index; rules gone meanwhile are forgotten.
        users.observe(&Event::Init);
        assert_eq!(users.observe(&Event::InitDone), set(&["p2"]));
        assert_eq!(users.count("p2"), Some(0));
    }

    #[test]
    fn rules_of_one_config_share_one_copy_of_its_name() {
        let users = Users::default();
        let a = users.config_name(&rule("a", "p1"));
        let b = users.config_name(&rule("b", "p1"));
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &users.config_name(&rule("c", "p2"))));
        assert_eq!(rule_key(&rule("a", "p1")), "team/a");
    }

    #[test]
    fn a_changing_count_is_written_at_most_once_per_pace_but_transitions_at_once() {
        let start = Instant::now();
        let soon = start + Duration::from_secs(3);
        let later = start + COUNT_PACE;
        assert_eq!(count_pace(None, true, false, soon), None, "first write");
        assert_eq!(
            count_pace(Some((start, false)), true, false, soon),
            Some(COUNT_PACE - Duration::from_secs(3)),
            "a new count waits for the pace"
        );
        assert_eq!(count_pace(Some((start, false)), true, false, later), None);
        assert_eq!(
            count_pace(Some((start, false)), false, false, soon),
            None,
            "shown or cleared at once"
        );
        assert_eq!(
            count_pace(Some((start, false)), true, true, soon),
            None,
            "a deletion's hold is said at once"
        );
    }

    #[test]
    fn the_condition_counts_the_users_and_says_what_a_deletion_waits_for() {
        assert_eq!(in_use(0, true), None, "no condition once no rule uses it");
        let used = in_use(3, false).expect("in use");
        assert!(used.status);
        assert_eq!(used.reason, reasons::RULES_USE_IT);
        assert!(
            used.message.starts_with("3 SecurityGroupRule"),
            "{}",
            used.message
        );
        let held = in_use(2, true).expect("in use");
        assert!(
            held.message.contains("deletion waits for the 2"),
            "{}",
            held.message
        );
    }
}
