//! How the operator reaches a provider: plain HTTP only on request, shown
//! on the ProviderConfig's status.

use std::time::Duration;

use kube::{
    Api, Client,
    api::{Patch, PatchParams},
};
use secgroup_operator::api::{ProviderConfig, conditions};
use serde_json::json;

use crate::support::*;

/// The ProviderConfig's `InsecureEndpoint` condition once it is `want`
/// (`None`: absent), with every condition type present.
async fn insecure_endpoint(
    api: &Api<ProviderConfig>,
    name: &str,
    want: Option<&str>,
) -> Vec<String> {
    eventually(
        &format!("{name} InsecureEndpoint {want:?}"),
        Duration::from_secs(30),
        || async {
            let config = api.get(name).await.map_err(|e| e.to_string())?;
            let found = config.status.clone().unwrap_or_default().conditions;
            let status = conditions::find(&found, "InsecureEndpoint").map(|c| c.status.as_str());
            if status == want {
                Ok(found.iter().map(|c| c.type_.clone()).collect())
            } else {
                Err(format!("{found:?}"))
            }
        },
    )
    .await
}

#[tokio::test]
async fn plain_http_shows_on_the_provider_config_until_https_replaces_it() {
    env();
    let client = Client::try_default().await.expect("kubeconfig");
    let api: Api<ProviderConfig> = Api::all(client.clone());
    let name = own_provider_config(&client, "e2e-insecure", "alibaba", "cloud-credentials").await;
    insecure_endpoint(&api, &name, Some("True")).await;

    // Another writer's condition on the same status is left in place.
    let other = json!({
        "apiVersion": "secgroup.dev/v1alpha1", "kind": "ProviderConfig",
        "status": {"conditions": [{"type": "Tested", "status": "True", "reason": "ByTheSuite",
                                   "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
    });
    api.patch_status(
        &name,
        &PatchParams::apply("e2e").force(),
        &Patch::Apply(&other),
    )
    .await
    .expect("apply another condition");

    let https =
        json!({"spec": {"endpoint": "https://ecs.example.internal", "allowInsecureHttp": null}});
    api.patch(&name, &PatchParams::default(), &Patch::Merge(&https))
        .await
        .expect("move to https");
    let left = insecure_endpoint(&api, &name, None).await;
    assert_eq!(left, ["Tested"]);
    delete_provider_config(&client, &name).await;
}
