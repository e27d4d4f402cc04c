//! Drift detection: each security group is described once per resync
//! interval (one call per group, not per rule), and a `Present` rule whose
//! cloud rule has vanished is handed back to the reconciler, which
//! re-authorizes it under a new attempt epoch. Only a rule carrying the
//! object's mark counts: an identical one of someone else's does not.
//!
//! This task only reads; the reconciler stays the only writer of status.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use kube::{
    Resource, ResourceExt,
    runtime::reflector::{ObjectRef, Store},
};
use rand::Rng;
use tracing::{debug, warn};

use super::{
    Context, convert,
    ownership::{self, Found, Mark},
};
use crate::{
    api::{SecurityGroupRule, rule::Ensure},
    provider::GroupRef,
};

/// What drift detection found for rules, waiting for their reconcile: the
/// cloud rule missing, or the id of a rule whose id status does not know
/// (not visible yet when it was authorized).
#[derive(Default)]
pub struct DriftFindings {
    missing: Mutex<HashSet<ObjectRef<SecurityGroupRule>>>,
    ids: Mutex<HashMap<ObjectRef<SecurityGroupRule>, String>>,
}

impl DriftFindings {
    pub fn flag(&self, rule: ObjectRef<SecurityGroupRule>) {
        lock(&self.missing).insert(rule);
    }

    pub fn flagged(&self, rule: &ObjectRef<SecurityGroupRule>) -> bool {
        lock(&self.missing).contains(rule)
    }

    /// Clears the flag, once the new attempt is recorded.
    pub fn take(&self, rule: &ObjectRef<SecurityGroupRule>) -> bool {
        lock(&self.missing).remove(rule)
    }

    /// A rule id that a describe showed for the object's own rule.
    pub fn learned(&self, rule: ObjectRef<SecurityGroupRule>, rule_id: String) {
        lock(&self.ids).insert(rule, rule_id);
    }

    pub fn take_id(&self, rule: &ObjectRef<SecurityGroupRule>) -> Option<String> {
        lock(&self.ids).remove(rule)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What a sweep concludes for one rule.
#[derive(Debug, PartialEq, Eq)]
enum Finding {
    Holds,
    Missing,
    /// Holds, and status lacks the id the describe shows.
    LearnedId(String),
}

fn finding(found: &Found, recorded_id: Option<&str>) -> Finding {
    match found {
        Found::Own(d) if recorded_id.is_none() && !d.rule_id.is_empty() => {
            Finding::LearnedId(d.rule_id.clone())
        }
        Found::Own(_) => Finding::Holds,
        Found::Foreign(_) | Found::Nothing => Finding::Missing,
    }
}

/// A security group as one ProviderConfig sees it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct GroupKey {
    config: String,
    group: GroupRef,
}

/// Runs forever: describes each group when it is due, ±10 % jitter so groups
/// spread out over the interval instead of being described in bursts.
pub async fn run(ctx: Arc<Context>, rules: Store<SecurityGroupRule>, default_interval: Duration) {
    let mut due: HashMap<GroupKey, Instant> = HashMap::new();
    let tick = (default_interval / 10).clamp(Duration::from_secs(1), Duration::from_secs(30));
    loop {
        tokio::time::sleep(tick).await;
        let now = Instant::now();
        let groups = groups_of(&rules.state());
        due.retain(|k, _| groups.contains_key(k));
        for (key, members) in groups {
            let interval = interval_for(&ctx, &key.config).unwrap_or(default_interval);
            let next = *due
                .entry(key.clone())
                .or_insert_with(|| now + jittered(interval));
            if next > now {
                continue;
            }
            due.insert(key.clone(), now + jittered(interval));
            sweep_group(&ctx, &key, &members).await;
        }
    }
}

fn jittered(interval: Duration) -> Duration {
    interval.mul_f64(rand::rng().random_range(0.9..1.1))
}

fn interval_for(ctx: &Context, config: &str) -> Option<Duration> {
    let config = ctx.resolver.configs.get(&ObjectRef::new(config))?;
    let secs = config.spec.defaults.as_ref()?.resync_interval_seconds?;
    Some(Duration::from_secs(u64::from(secs)))
}

/// Present, authorized, not-deleting rules grouped by the group they live in.
fn groups_of(rules: &[Arc<SecurityGroupRule>]) -> HashMap<GroupKey, Vec<Arc<SecurityGroupRule>>> {
    let mut groups: HashMap<GroupKey, Vec<Arc<SecurityGroupRule>>> = HashMap::new();
    for rule in rules {
        let Some(status) = &rule.status else { continue };
        let (Some(region), Some(id), Some(_)) = (
            &status.region,
            &status.security_group_id,
            &status.applied_rule,
        ) else {
            continue;
        };
        if rule.spec.ensure != Ensure::Present
            || rule.meta().deletion_timestamp.is_some()
            || super::gate::paused(rule)
        {
            continue;
        }
        let key = GroupKey {
            config: rule.spec.provider_config_ref.name.clone(),
            group: GroupRef {
                region: region.clone(),
                security_group_id: id.clone(),
            },
        };
        groups.entry(key).or_default().push(rule.clone());
    }
    groups
}

async fn sweep_group(ctx: &Context, key: &GroupKey, members: &[Arc<SecurityGroupRule>]) {
    let Some(first) = members.first() else { return };
    let Ok(resolved) = ctx
        .resolver
        .resolve(&key.config, &first.namespace().unwrap_or_default())
    else {
        return;
    };
    // Through the shared snapshots: checks before revokes reuse this describe.
    let described = match ctx
        .snapshots
        .describe(
            &resolved.credentials_key,
            &key.group,
            resolved.provider.as_ref(),
            Instant::now(),
        )
        .await
    {
        Ok(snapshot) => snapshot.rules,
        Err(e) => {
            warn!(group = %key.group.security_group_id, error = %e, "drift check could not describe the group");
            return;
        }
    };
    for rule in members {
        let Some(status) = &rule.status else { continue };
        let Some(applied) = status
            .applied_rule
            .as_ref()
            .and_then(|r| convert::rule(r, resolved.kind).ok())
        else {
            continue;
        };
        let mark = Mark::of_uid(rule.meta().uid.as_deref().unwrap_or_default());
        let found = ownership::find(resolved.kind, &mark, &mark.on(&applied), &described);
        let object = ObjectRef::from_obj(rule.as_ref());
        match finding(&found, status.rule_id.as_deref()) {
            Finding::Holds => continue,
            Finding::Missing => {
                debug!(rule = %object, "cloud rule missing; waking the reconciler");
                ctx.drift.flag(object.clone());
            }
            Finding::LearnedId(id) => ctx.drift.learned(object.clone(), id),
        }
        let _ = ctx.wake.unbounded_send(object);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::{DescribedRule, fixtures::ssh_from_ten};

    fn own(id: &str) -> Found {
        Found::Own(DescribedRule {
            rule_id: id.into(),
            rule: ssh_from_ten(),
        })
    }

    /// Drift fills in an id that the describe after the authorize could not
    /// see (read-after-write lag), and only then.
    #[test]
    fn a_missing_rule_id_is_learned_from_the_sweep() {
        assert_eq!(
            finding(&own("sgr-1"), None),
            Finding::LearnedId("sgr-1".into())
        );
        assert_eq!(finding(&own("sgr-1"), Some("sgr-1")), Finding::Holds);
        assert_eq!(finding(&own(""), None), Finding::Holds);
        assert_eq!(finding(&Found::Nothing, Some("sgr-1")), Finding::Missing);
        let foreign = Found::Foreign(DescribedRule {
            rule_id: "sgr-x".into(),
            rule: ssh_from_ten(),
        });
        assert_eq!(finding(&foreign, None), Finding::Missing);
    }
}
