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

/// Rules whose applied cloud rule was found missing, waiting for their reconcile.
#[derive(Default)]
pub struct DriftFindings(Mutex<HashSet<ObjectRef<SecurityGroupRule>>>);

impl DriftFindings {
    pub fn flag(&self, rule: ObjectRef<SecurityGroupRule>) {
        self.lock().insert(rule);
    }

    pub fn flagged(&self, rule: &ObjectRef<SecurityGroupRule>) -> bool {
        self.lock().contains(rule)
    }

    /// Clears the flag, once the new attempt is recorded.
    pub fn take(&self, rule: &ObjectRef<SecurityGroupRule>) -> bool {
        self.lock().remove(rule)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<ObjectRef<SecurityGroupRule>>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
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
            &key.config,
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
        if !matches!(found, Found::Own(_)) {
            let object = ObjectRef::from_obj(rule.as_ref());
            debug!(rule = %object, "cloud rule missing; waking the reconciler");
            ctx.drift.flag(object.clone());
            let _ = ctx.wake.unbounded_send(object);
        }
    }
}
