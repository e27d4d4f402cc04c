//! Status conditions, kstatus compatible: `Ready`, `Reconciling`, `Stalled`.
//!
//! kstatus (and so Flux) reads `Reconciling=True` as in progress and
//! `Stalled=True` as failed; Argo CD reads them through the shipped health
//! check. `lastTransitionTime` changes only when a condition's status flips,
//! so rewriting an unchanged status is a no-op the API server can skip.

use jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub mod types {
    pub const READY: &str = "Ready";
    pub const RECONCILING: &str = "Reconciling";
    pub const STALLED: &str = "Stalled";
    /// ProviderConfig: its endpoint is plain HTTP.
    pub const INSECURE_ENDPOINT: &str = "InsecureEndpoint";
    /// ProviderConfig: rules use it, so its deletion waits for them.
    pub const IN_USE: &str = "InUse";
}

pub mod reasons {
    pub const AUTHORIZED: &str = "Authorized";
    pub const REVOKED: &str = "Revoked";
    pub const ORPHANED: &str = "Orphaned";
    pub const PROGRESSING: &str = "Progressing";
    pub const RETRYING: &str = "Retrying";
    pub const THROTTLED: &str = "Throttled";
    pub const DRIFT_DETECTED: &str = "DriftDetected";
    pub const PROVIDER_ERROR: &str = "ProviderError";
    pub const CREDENTIALS_REJECTED: &str = "CredentialsRejected";
    pub const PROVIDER_CONFIG_NOT_FOUND: &str = "ProviderConfigNotFound";
    pub const PROVIDER_CONFIG_INVALID: &str = "ProviderConfigInvalid";
    pub const SECRET_NOT_FOUND: &str = "CredentialsSecretNotFound";
    pub const SECRET_INVALID: &str = "CredentialsSecretInvalid";
    pub const NAMESPACE_NOT_ALLOWED: &str = "NamespaceNotAllowed";
    pub const UNSUPPORTED: &str = "UnsupportedByProvider";
    /// An identical rule that is not this object's exists at the provider.
    pub const RULE_ALREADY_EXISTS: &str = "RuleAlreadyExists";
    /// An older object declares the same cloud rule.
    pub const DUPLICATE_CLAIM: &str = "DuplicateClaim";
    /// Status names a rule that the provider shows is not this object's.
    pub const RECORD_MISMATCH: &str = "RecordMismatch";
    /// The group is missing, but the ProviderConfig's account or endpoint
    /// changed since the rule was authorized: it may live on elsewhere.
    pub const PROVIDER_CONFIG_CHANGED: &str = "ProviderConfigChanged";
    pub const DELETING: &str = "Deleting";
    pub const SUCCEEDED: &str = "Succeeded";
    pub const POLICY_VIOLATION: &str = "PolicyViolation";
    pub const PAUSED: &str = "Paused";
    pub const OBSERVED: &str = "Observed";
    pub const NOT_OBSERVED: &str = "NotObserved";
    pub const PLAINTEXT_HTTP_ALLOWED: &str = "PlaintextHttpAllowed";
    pub const RULES_USE_IT: &str = "RulesUseIt";
}

/// A Kubernetes API convention condition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// What it is about: `Ready`, `Reconciling`, `Stalled` on rules;
    /// `InsecureEndpoint` and others on ProviderConfigs.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// One CamelCase word that says why.
    pub reason: String,
    /// What happened, and for `Stalled` what to do about it.
    #[serde(default)]
    pub message: String,
    /// The `metadata.generation` this condition describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When `status` last changed.
    #[schemars(schema_with = "timestamp_schema")]
    pub last_transition_time: Timestamp,
}

/// RFC 3339 timestamps, as Kubernetes writes them.
pub(crate) fn timestamp_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": "string", "format": "date-time"})
}

/// The desired state of one condition, before timestamps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConditionState {
    pub type_: &'static str,
    pub status: bool,
    pub reason: &'static str,
    pub message: String,
}

impl ConditionState {
    pub fn new(
        type_: &'static str,
        status: bool,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            status,
            reason,
            message: message.into(),
        }
    }
}

/// Builds the condition list from the desired states, keeping each
/// condition's `lastTransitionTime` from `previous` unless its status flips.
pub fn merge(
    previous: &[Condition],
    desired: &[ConditionState],
    generation: Option<i64>,
    now: Timestamp,
) -> Vec<Condition> {
    desired
        .iter()
        .map(|want| {
            let status = if want.status { "True" } else { "False" };
            let since = previous
                .iter()
                .find(|c| c.type_ == want.type_ && c.status == status)
                .map_or(now, |c| c.last_transition_time);
            Condition {
                type_: want.type_.to_owned(),
                status: status.to_owned(),
                reason: want.reason.to_owned(),
                message: want.message.clone(),
                observed_generation: generation,
                last_transition_time: since,
            }
        })
        .collect()
}

/// Finds a condition by type.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready(status: bool) -> ConditionState {
        ConditionState::new(types::READY, status, reasons::AUTHORIZED, "ok")
    }

    #[test]
    fn transition_time_is_kept_while_status_holds() {
        let t0 = Timestamp::from_second(1_000).expect("valid");
        let t1 = Timestamp::from_second(2_000).expect("valid");
        let first = merge(&[], &[ready(true)], Some(1), t0);
        let second = merge(&first, &[ready(true)], Some(2), t1);
        assert_eq!(second[0].last_transition_time, t0);
        assert_eq!(second[0].observed_generation, Some(2));
    }

    #[test]
    fn transition_time_moves_when_status_flips() {
        let t0 = Timestamp::from_second(1_000).expect("valid");
        let t1 = Timestamp::from_second(2_000).expect("valid");
        let first = merge(&[], &[ready(true)], Some(1), t0);
        let second = merge(&first, &[ready(false)], Some(1), t1);
        assert_eq!(second[0].last_transition_time, t1);
        assert_eq!(second[0].status, "False");
    }
}
