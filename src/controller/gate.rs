//! What a rule is allowed to do before any provider call: the pause
//! annotation, observe-only management, and the ProviderConfig's
//! per-namespace policy (`policy`). `apply` and `cleanup` ask here first.

use std::time::Duration;

use kube::{
    ResourceExt,
    runtime::{controller::Action, events::EventType, reflector::ObjectRef},
};

use super::{
    Context, Error, convert, group_of,
    persist::RuleWriter,
    policy::{self, Subject, Violation},
    publish,
    resolve::Resolved,
    status::{Record, Standing},
    steps::Notice,
};
use crate::api::{
    SecurityGroupRule,
    conditions::reasons,
    rule::{Ensure, ManagementPolicy, ProviderAction},
};

/// Set to `"true"`, it stops every provider call for the rule, deletions
/// included, until it is removed (Crossplane's `crossplane.io/paused`).
pub const PAUSED: &str = "secgroup.dev/paused";

/// How often an observed rule is described again when its ProviderConfig
/// sets no resync interval.
const OBSERVE_INTERVAL: Duration = Duration::from_secs(300);

/// How often a rule refused for `maxRules` looks again: the count changes
/// with other rules, which do not wake this one.
const COUNT_RECHECK: Duration = Duration::from_secs(60);

pub fn paused(rule: &SecurityGroupRule) -> bool {
    rule.annotations().get(PAUSED).is_some_and(|v| v == "true")
}

pub fn observed(rule: &SecurityGroupRule) -> bool {
    rule.spec.management_policy == Some(ManagementPolicy::Observe)
}

/// Records that a paused rule waits; `deleting` says the deletion waits too.
pub async fn hold_paused(
    writer: &mut RuleWriter<'_>,
    record: &Record,
    deleting: bool,
) -> Result<(), Error> {
    let message = if deleting {
        format!(
            "paused by the annotation {PAUSED}=true: the deletion waits, and the rule is not revoked, until it is removed"
        )
    } else {
        format!("paused by the annotation {PAUSED}=true: no provider call until it is removed")
    };
    let standing = Standing::Stalled {
        reason: reasons::PAUSED,
        message,
    };
    writer.write(record, &standing).await.map(drop)
}

/// Observe-only: describes the rule's group and reports whether the
/// declared rule is there, and its id. Never calls a mutating API.
pub async fn observe(
    rule: &SecurityGroupRule,
    ctx: &Context,
    resolved: &Resolved,
    writer: &mut RuleWriter<'_>,
    record: &Record,
) -> Result<Action, Error> {
    let group = group_of(rule, record, resolved);
    let declared = match convert::rule(&rule.spec.rule, resolved.kind) {
        Ok(r) => r,
        Err(e) => {
            let standing = Standing::Stalled {
                reason: reasons::UNSUPPORTED,
                message: e.0,
            };
            writer.write(record, &standing).await?;
            return Ok(Action::await_change());
        }
    };
    let object = ObjectRef::from_obj(rule);
    let (standing, next) = match resolved.provider.describe(&group).await {
        Ok(rules) => {
            ctx.object_backoff.reset(&object);
            let found = rules
                .into_iter()
                .find(|d| resolved.kind.same_rule(&declared, &d.rule));
            let standing = match found {
                Some(d) => Standing::Settled {
                    reason: reasons::OBSERVED,
                    message: format!(
                        "observe only: the rule exists at the provider as rule id {} in {}",
                        d.rule_id, group.security_group_id
                    ),
                },
                None => Standing::Stalled {
                    reason: reasons::NOT_OBSERVED,
                    message: format!(
                        "observe only: the rule does not exist at the provider in {}; the operator does not create it",
                        group.security_group_id
                    ),
                },
            };
            let every = resync_of(ctx, resolved).unwrap_or(OBSERVE_INTERVAL);
            (standing, every)
        }
        Err(e) => (
            Standing::Progressing {
                reason: reasons::RETRYING,
                message: format!("describe failed: {}: {}", e.code, e.message),
            },
            ctx.object_backoff.fail(&object),
        ),
    };
    writer.write(record, &standing).await?;
    Ok(Action::requeue(next))
}

fn resync_of(ctx: &Context, resolved: &Resolved) -> Option<Duration> {
    let config = ctx
        .resolver
        .configs
        .get(&ObjectRef::new(&resolved.config_name))?;
    let secs = config.spec.defaults.as_ref()?.resync_interval_seconds?;
    Some(Duration::from_secs(u64::from(secs)))
}

/// Enforces the ProviderConfig's per-namespace policy on a rule about to be
/// authorized. `Some(action)` when the rule is refused: its status says
/// which field broke which entry, and no provider call is made. A rule
/// authorized before the policy forbade it is reported, not revoked.
pub async fn enforce_policy(
    rule: &SecurityGroupRule,
    ctx: &Context,
    resolved: &Resolved,
    writer: &mut RuleWriter<'_>,
    record: &Record,
) -> Result<Option<Action>, Error> {
    if rule.spec.ensure == Ensure::Absent {
        return Ok(None);
    }
    let (violation, recheck) = match judge(rule, ctx, resolved, record) {
        Judgement::Allowed => return Ok(None),
        Judgement::NamespaceUnknown => return Ok(Some(Action::requeue(Duration::from_secs(2)))),
        Judgement::Refused(v, recheck) => (v, recheck),
    };
    let already_applied = record
        .applied
        .as_ref()
        .is_some_and(|(applied, _)| *applied == rule.spec.rule);
    let mut message = format!("refused by policy: {violation}");
    if already_applied {
        // Revoking on a policy change could cut traffic that an admin's
        // edit did not mean to cut, across every tenant at once: the
        // owner of the rule decides, the operator reports.
        message.push_str(
            ". The rule was authorized before the policy forbade it and stays at the provider: \
             the operator does not revoke it on its own; change or delete this SecurityGroupRule",
        );
    }
    let standing = Standing::Stalled {
        reason: reasons::POLICY_VIOLATION,
        message: message.clone(),
    };
    if writer.write(record, &standing).await? {
        publish(
            ctx,
            rule,
            &[Notice {
                type_: EventType::Warning,
                reason: reasons::POLICY_VIOLATION,
                action: ProviderAction::Authorize,
                note: message,
            }],
        )
        .await;
    }
    Ok(Some(
        recheck.map_or_else(Action::await_change, Action::requeue),
    ))
}

enum Judgement {
    Allowed,
    NamespaceUnknown,
    /// With when to look again, if anything but a watched change can lift it.
    Refused(Violation, Option<Duration>),
}

fn judge(
    rule: &SecurityGroupRule,
    ctx: &Context,
    resolved: &Resolved,
    record: &Record,
) -> Judgement {
    let Some(config) = ctx
        .resolver
        .configs
        .get(&ObjectRef::new(&resolved.config_name))
    else {
        return Judgement::Allowed;
    };
    let Some(policies) = config.spec.policies.as_deref() else {
        return Judgement::Allowed;
    };
    let namespace = rule.namespace().unwrap_or_default();
    let Some(ns) = ctx.resolver.namespaces.get(&ObjectRef::new(&namespace)) else {
        return Judgement::NamespaceUnknown;
    };
    let entry = match policy::governing(
        &resolved.config_name,
        Some(policies),
        &namespace,
        ns.labels(),
    ) {
        Ok(Some(entry)) => entry,
        Ok(None) => return Judgement::Allowed,
        Err(v) => return Judgement::Refused(v, None),
    };
    let group = group_of(rule, record, resolved);
    let rank = if entry.max_rules.is_some() {
        let all = ctx.rules.state();
        policy::rank(rule, all.iter().map(AsRef::as_ref))
    } else {
        0
    };
    let subject = Subject {
        rule: &rule.spec.rule,
        security_group_id: &group.security_group_id,
        region: &group.region,
        rank,
    };
    match policy::check(&resolved.config_name, entry, &subject) {
        Ok(()) => Judgement::Allowed,
        Err(v) => {
            let recheck = entry.max_rules.map(|_| COUNT_RECHECK);
            Judgement::Refused(v, recheck)
        }
    }
}
