//! Who publishes the operator's Events, and which it publishes: warnings
//! only (a refused call, rejected credentials, a rule someone else holds,
//! drift, a record the cloud contradicts), through kube's `Recorder`, which
//! folds repeats (a retry loop) into one Event series.
//!
//! Success writes no Event. At scale an Event per rule per step (10,000
//! authorizes, then 10,000 revokes) doubled the API server's writes and
//! buried the warnings; success shows in the status conditions (`Ready`
//! with `Authorized` or `Revoked`, `lastOperation` with its ClientToken and
//! RequestId), in the `audit` log line of every mutation and in the
//! `secgroup_provider_calls_total` and `secgroup_rules` metrics.

use kube::runtime::events::Reporter;

/// Who reports the operator's Events.
pub fn reporter() -> Reporter {
    Reporter {
        controller: "secgroup-operator".into(),
        instance: std::env::var("POD_NAME").ok(),
    }
}
