//! Writes ProviderConfig `status.conditions`.
//!
//! Each concern owns a set of condition types and applies them under its
//! own field manager; `conditions` is a list map keyed by `type`, so the API
//! server merges the concerns' writes and a concern that applies none of
//! its types removes its old ones. A write happens only when the owned
//! conditions would change.

use std::{sync::Arc, time::Duration};

use futures::{Future, StreamExt};
use jiff::Timestamp;
use kube::{
    Api, Client, ResourceExt,
    api::{Patch, PatchParams},
    runtime::{Controller, controller::Action, watcher},
};
use serde_json::json;
use tracing::{debug, warn};

use crate::api::{
    ProviderConfig, ProviderConfigSpec,
    conditions::{self, Condition, ConditionState, reasons, types},
};

/// Field manager of the transport conditions.
const TRANSPORT_MANAGER: &str = "secgroup-operator-transport";

/// The condition types the transport concern owns.
const TRANSPORT_TYPES: [&str; 1] = [types::INSECURE_ENDPOINT];

/// What the endpoint's transport warrants: a warning for plain HTTP.
pub fn transport_conditions(spec: &ProviderConfigSpec) -> Vec<ConditionState> {
    if spec.plaintext_endpoint() {
        vec![ConditionState::new(
            types::INSECURE_ENDPOINT,
            true,
            reasons::PLAINTEXT_HTTP_ALLOWED,
            "spec.endpoint is http:// (allowed by spec.allowInsecureHttp): the access key id, \
             signatures and rules travel in clear",
        )]
    } else {
        Vec::new()
    }
}

/// The conditions of `owned` types to apply, or `None` when `current`
/// already holds exactly those (same status, reason, message, generation).
pub fn owned_update(
    current: &[Condition],
    owned: &[&str],
    desired: &[ConditionState],
    generation: Option<i64>,
    now: Timestamp,
) -> Option<Vec<Condition>> {
    let mine: Vec<Condition> = current
        .iter()
        .filter(|c| owned.contains(&c.type_.as_str()))
        .cloned()
        .collect();
    let next = conditions::merge(&mine, desired, generation, now);
    (next != mine).then_some(next)
}

/// Applies `next` as the conditions `manager` owns on `config`'s status.
async fn apply(
    api: &Api<ProviderConfig>,
    name: &str,
    manager: &str,
    next: &[Condition],
) -> Result<(), kube::Error> {
    let patch = json!({
        "apiVersion": "secgroup.dev/v1alpha1",
        "kind": "ProviderConfig",
        "status": {"conditions": next},
    });
    api.patch_status(
        name,
        &PatchParams::apply(manager).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map(drop)
}

struct Ctx {
    api: Api<ProviderConfig>,
}

async fn reconcile(config: Arc<ProviderConfig>, ctx: Arc<Ctx>) -> Result<Action, kube::Error> {
    let current = config
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let desired = transport_conditions(&config.spec);
    let update = owned_update(
        current,
        &TRANSPORT_TYPES,
        &desired,
        config.metadata.generation,
        Timestamp::now(),
    );
    if let Some(next) = update {
        debug!(config = %config.name_any(), "writing transport conditions");
        apply(&ctx.api, &config.name_any(), TRANSPORT_MANAGER, &next).await?;
    }
    Ok(Action::await_change())
}

fn error_policy(config: Arc<ProviderConfig>, error: &kube::Error, _: Arc<Ctx>) -> Action {
    warn!(config = %config.name_any(), %error, "writing ProviderConfig status failed");
    Action::requeue(Duration::from_secs(10))
}

/// Keeps every ProviderConfig's conditions current until `stop` resolves.
pub async fn run(client: Client, stop: impl Future<Output = ()> + Send + Sync + 'static) {
    let api = Api::<ProviderConfig>::all(client);
    Controller::new(api.clone(), watcher::Config::default())
        .graceful_shutdown_on(stop)
        .run(reconcile, error_policy, Arc::new(Ctx { api }))
        .for_each(|_| async {})
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(endpoint: &str) -> ProviderConfigSpec {
        serde_json::from_value(json!({
            "type": "alibaba", "region": "cn-hangzhou", "endpoint": endpoint,
            "allowInsecureHttp": true,
            "credentialsSecretRef": {"namespace": "n", "name": "s"},
        }))
        .expect("valid spec")
    }

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).expect("valid")
    }

    #[test]
    fn plain_http_shows_an_insecure_endpoint_condition_and_https_none() {
        let plain = transport_conditions(&spec("http://10.0.0.1:8080"));
        assert_eq!(plain.len(), 1);
        assert_eq!(
            (plain[0].type_, plain[0].status, plain[0].reason),
            ("InsecureEndpoint", true, "PlaintextHttpAllowed")
        );
        assert!(transport_conditions(&spec("https://ecs.example")).is_empty());
    }

    #[test]
    fn an_unchanged_condition_is_not_rewritten_and_others_types_are_left_alone() {
        let desired = transport_conditions(&spec("http://10.0.0.1"));
        let first = owned_update(&[], &TRANSPORT_TYPES, &desired, Some(1), at(1)).expect("new");
        let mut current = first.clone();
        current.push(Condition {
            type_: "InUse".into(),
            status: "True".into(),
            reason: "RulesRefer".into(),
            message: String::new(),
            observed_generation: Some(1),
            last_transition_time: at(1),
        });
        assert_eq!(
            owned_update(&current, &TRANSPORT_TYPES, &desired, Some(1), at(2)),
            None
        );
        let bumped = owned_update(&current, &TRANSPORT_TYPES, &desired, Some(2), at(2))
            .expect("generation moved");
        assert_eq!(bumped.len(), 1, "only owned types are applied");
        assert_eq!(bumped[0].last_transition_time, at(1));
    }

    #[test]
    fn moving_to_https_clears_the_condition() {
        let old = owned_update(
            &[],
            &TRANSPORT_TYPES,
            &transport_conditions(&spec("http://10.0.0.1")),
            Some(1),
            at(1),
        )
        .expect("new");
        let cleared = owned_update(
            &old,
            &TRANSPORT_TYPES,
            &transport_conditions(&spec("https://ecs.example")),
            Some(2),
            at(2),
        );
        assert_eq!(cleared, Some(Vec::new()));
    }
}
