//! Builds the status the reconciler writes. Pure, so every branch is tested
//! without a cluster.

use std::time::Duration;

use jiff::Timestamp;

use crate::{
    api::{
        conditions::{self, ConditionState, reasons, types},
        rule::{
            LastOperation, OperationResult, Origin, RuleSpec, SecurityGroupRuleStatus,
            SupersededRule,
        },
    },
    provider::GroupRef,
};

/// Where a rule stands after a reconcile pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Standing {
    /// The declared state holds. `reason` is `Authorized`, `Revoked` or `Orphaned`.
    Settled {
        reason: &'static str,
        message: String,
    },
    /// Work remains and is being retried.
    Progressing {
        reason: &'static str,
        message: String,
    },
    /// Retrying cannot help until someone changes something; the message says what.
    Stalled {
        reason: &'static str,
        message: String,
    },
}

/// The conditions for a standing: Ready, Reconciling, Stalled.
pub fn conditions_for(standing: &Standing) -> [ConditionState; 3] {
    let (ready, reconciling, stalled) = match standing {
        Standing::Settled { reason, message } => (
            ConditionState::new(types::READY, true, reason, message.clone()),
            ConditionState::new(types::RECONCILING, false, reasons::SUCCEEDED, ""),
            ConditionState::new(types::STALLED, false, reasons::SUCCEEDED, ""),
        ),
        Standing::Progressing { reason, message } => (
            ConditionState::new(types::READY, false, reason, message.clone()),
            ConditionState::new(types::RECONCILING, true, reason, message.clone()),
            ConditionState::new(types::STALLED, false, reason, ""),
        ),
        Standing::Stalled { reason, message } => (
            ConditionState::new(types::READY, false, reason, message.clone()),
            ConditionState::new(types::RECONCILING, false, reason, ""),
            ConditionState::new(types::STALLED, true, reason, message.clone()),
        ),
    };
    [ready, reconciling, stalled]
}

/// Mutable view of the parts of status the steps change.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Record {
    pub group: Option<GroupRef>,
    pub applied: Option<(RuleSpec, Option<String>)>,
    pub superseded: Option<SupersededRule>,
    pub authorizing: Option<RuleSpec>,
    pub attempt_epoch: u32,
    /// Where the recorded rules were authorized.
    pub origin: Option<Origin>,
    pub last_operation: Option<LastOperation>,
}

impl Record {
    pub fn from_status(status: Option<&SecurityGroupRuleStatus>) -> Self {
        let Some(s) = status else {
            return Self::default();
        };
        Self {
            group: match (&s.region, &s.security_group_id) {
                (Some(region), Some(id)) => Some(GroupRef {
                    region: region.clone(),
                    security_group_id: id.clone(),
                }),
                _ => None,
            },
            applied: s.applied_rule.clone().map(|r| (r, s.rule_id.clone())),
            superseded: s.superseded.clone(),
            authorizing: s.authorizing.clone(),
            attempt_epoch: s.attempt_epoch,
            origin: s.origin.clone(),
            last_operation: s.last_operation.clone(),
        }
    }
}

/// The full status for `record` and `standing`, keeping condition transition
/// times from `previous`.
pub fn build(
    previous: Option<&SecurityGroupRuleStatus>,
    record: &Record,
    standing: &Standing,
    spec_rule: &RuleSpec,
    generation: Option<i64>,
    now: Timestamp,
) -> SecurityGroupRuleStatus {
    let old_conditions = previous
        .map(|p| p.conditions.as_slice())
        .unwrap_or_default();
    SecurityGroupRuleStatus {
        observed_generation: generation,
        conditions: conditions::merge(old_conditions, &conditions_for(standing), generation, now),
        rule_id: record.applied.as_ref().and_then(|(_, id)| id.clone()),
        security_group_id: record.group.as_ref().map(|g| g.security_group_id.clone()),
        region: record.group.as_ref().map(|g| g.region.clone()),
        applied_rule: record.applied.as_ref().map(|(r, _)| r.clone()),
        superseded: record.superseded.clone(),
        authorizing: record.authorizing.clone(),
        attempt_epoch: record.attempt_epoch,
        origin: record.origin.clone(),
        last_operation: record.last_operation.clone(),
        summary: Some(spec_rule.summary()),
    }
}

/// Whether status says the last pass at `generation` settled (Ready). A
/// pass makes no provider call at the generation it settled at without
/// first writing why (drift detection writes a new attempt epoch), so no
/// call can have been made since that status was written.
pub fn settled_at(status: Option<&SecurityGroupRuleStatus>, generation: Option<i64>) -> bool {
    status
        .and_then(|s| conditions::find(&s.conditions, types::READY))
        .is_some_and(|c| c.status == "True" && c.observed_generation == generation)
}

/// How long a rule the provider refused waits before the same spec is tried
/// again, in case the cause was fixed at the provider (say, a missing group
/// created). A spec change or deletion retries at once.
pub const REFUSAL_RETRY: Duration = Duration::from_secs(600);

/// Time left before a rule the provider refused (`Stalled`, `ProviderError`),
/// or whose rule someone else holds (`RuleAlreadyExists`), at this
/// generation may call again; `None` when it may call now. Without
/// this hold the status write of the refusal would trigger the next refusal.
pub fn refusal_hold(
    status: Option<&SecurityGroupRuleStatus>,
    generation: Option<i64>,
    now: Timestamp,
) -> Option<Duration> {
    let status = status?;
    let stalled = conditions::find(&status.conditions, types::STALLED)?;
    let foreign = stalled.reason == reasons::RULE_ALREADY_EXISTS;
    if stalled.status != "True"
        || !(stalled.reason == reasons::PROVIDER_ERROR || foreign)
        || stalled.observed_generation != generation
    {
        return None;
    }
    // A rule held by someone else was met by an authorize that succeeded.
    let refused_at = status
        .last_operation
        .as_ref()
        .filter(|op| op.result == OperationResult::Failed || foreign)?
        .time;
    let elapsed = now.duration_since(refused_at).unsigned_abs();
    REFUSAL_RETRY.checked_sub(elapsed).filter(|d| !d.is_zero())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settled() -> Standing {
        Standing::Settled {
            reason: reasons::AUTHORIZED,
            message: "authorized".into(),
        }
    }

    fn spec() -> RuleSpec {
        serde_json::from_value(serde_json::json!({
            "direction": "Ingress", "protocol": "TCP", "peer": {"cidr": "10.0.0.0/8"}
        }))
        .expect("valid")
    }

    fn status_of(c: &[crate::api::Condition], t: &str) -> String {
        conditions::find(c, t)
            .map(|c| c.status.clone())
            .unwrap_or_default()
    }

    #[test]
    fn settled_is_ready_and_neither_reconciling_nor_stalled() {
        let s = build(
            None,
            &Record::default(),
            &settled(),
            &spec(),
            Some(3),
            Timestamp::UNIX_EPOCH,
        );
        assert_eq!(status_of(&s.conditions, "Ready"), "True");
        assert_eq!(status_of(&s.conditions, "Reconciling"), "False");
        assert_eq!(status_of(&s.conditions, "Stalled"), "False");
        assert!(
            s.conditions
                .iter()
                .all(|c| c.observed_generation == Some(3))
        );
        assert_eq!(s.summary.map(|x| x.ports), Some("all".to_owned()));
    }

    #[test]
    fn stalled_is_not_ready_and_not_reconciling() {
        let standing = Standing::Stalled {
            reason: reasons::PROVIDER_ERROR,
            message: "bad".into(),
        };
        let s = build(
            None,
            &Record::default(),
            &standing,
            &spec(),
            Some(1),
            Timestamp::UNIX_EPOCH,
        );
        assert_eq!(status_of(&s.conditions, "Ready"), "False");
        assert_eq!(status_of(&s.conditions, "Reconciling"), "False");
        assert_eq!(status_of(&s.conditions, "Stalled"), "True");
    }

    /// Writing status only when it changes needs a rebuild from unchanged
    /// inputs to be equal, timestamps included.
    #[test]
    fn rebuilding_an_unchanged_status_is_identical() {
        let first = build(
            None,
            &Record::default(),
            &settled(),
            &spec(),
            Some(1),
            Timestamp::UNIX_EPOCH,
        );
        let later = Timestamp::from_second(99).expect("valid");
        let again = build(
            Some(&first),
            &Record::from_status(Some(&first)),
            &settled(),
            &spec(),
            Some(1),
            later,
        );
        assert_eq!(first, again);
    }

    fn refused(generation: i64, at: i64) -> SecurityGroupRuleStatus {
        let standing = Standing::Stalled {
            reason: reasons::PROVIDER_ERROR,
            message: "authorize failed".into(),
        };
        let record = Record {
            last_operation: Some(LastOperation {
                action: crate::api::rule::ProviderAction::Authorize,
                client_token: Some("sgo-x".into()),
                request_id: None,
                result: OperationResult::Failed,
                code: Some("InvalidSecurityGroupId.NotFound".into()),
                message: None,
                time: Timestamp::from_second(at).expect("valid"),
            }),
            ..Record::default()
        };
        build(
            None,
            &record,
            &standing,
            &spec(),
            Some(generation),
            Timestamp::UNIX_EPOCH,
        )
    }

    #[test]
    fn a_refusal_holds_the_same_generation_until_the_retry_interval() {
        let s = refused(4, 1_000);
        let at = |secs| Timestamp::from_second(secs).expect("valid");
        assert_eq!(
            refusal_hold(Some(&s), Some(4), at(1_000)),
            Some(REFUSAL_RETRY)
        );
        assert_eq!(
            refusal_hold(Some(&s), Some(4), at(1_100)),
            Some(REFUSAL_RETRY - Duration::from_secs(100))
        );
        assert_eq!(refusal_hold(Some(&s), Some(4), at(1_600)), None);
    }

    #[test]
    fn a_new_generation_or_another_stall_is_not_held() {
        let s = refused(4, 1_000);
        let now = Timestamp::from_second(1_001).expect("valid");
        assert_eq!(refusal_hold(Some(&s), Some(5), now), None);
        assert_eq!(refusal_hold(None, Some(4), now), None);
        let credentials = Standing::Stalled {
            reason: reasons::CREDENTIALS_REJECTED,
            message: "fix the Secret".into(),
        };
        let other = build(
            Some(&s),
            &Record::from_status(Some(&s)),
            &credentials,
            &spec(),
            Some(4),
            now,
        );
        assert_eq!(refusal_hold(Some(&other), Some(4), now), None);
    }
}
