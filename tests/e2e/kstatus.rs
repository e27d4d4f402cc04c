//! kstatus, the library Flux judges health with (sigs.k8s.io/cli-utils, the
//! test cluster's `kstatus` command), reads live rules as the README says:
//! Current when Ready, InProgress while work is retried, Failed when Stalled.

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use kube::{
    Api, Client,
    api::{Patch, PatchParams},
};
use secgroup_operator::api::{ProviderConfig, SecurityGroupRule, conditions};
use serde_json::{Value, json};

use crate::support::*;

/// The kstatus of a rule as the API server serves it: (status, message).
fn kstatus(namespace: &str, name: &str) -> (String, String) {
    let object = Command::new("kubectl")
        .args([
            "get",
            "securitygrouprule",
            name,
            "-n",
            namespace,
            "-o",
            "json",
        ])
        .output()
        .expect("kubectl on PATH");
    assert!(object.status.success(), "kubectl get {namespace}/{name}");
    let out = with_input(
        Command::new("kstatus").stdout(Stdio::piped()),
        &String::from_utf8_lossy(&object.stdout),
    );
    assert!(out.status.success(), "kstatus failed");
    let result: Value = serde_json::from_slice(&out.stdout).expect("kstatus JSON");
    let field = |key: &str| result[key].as_str().unwrap_or_default().to_owned();
    (field("status"), field("message"))
}

fn condition_message(rule: &SecurityGroupRule, type_: &str) -> String {
    let status = rule.status.clone().unwrap_or_default();
    conditions::find(&status.conditions, type_)
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

#[tokio::test]
async fn kstatus_reports_current_in_progress_and_failed() {
    env();
    let client = Client::try_default().await.expect("kubeconfig");
    let ns = namespace(&client, "e2e-kstatus", json!({})).await;
    let api: Api<SecurityGroupRule> = Api::namespaced(client, &ns);
    let rule = json!({"direction": "Ingress", "protocol": "TCP", "ports": {"from": 443, "to": 443},
                      "peer": {"cidr": "10.0.0.0/8"}});

    // Ready: Current.
    let group = group_id("sg");
    create_group("alibaba", "cn-hangzhou", &group).await;
    apply(
        &api,
        "ready",
        &rule_manifest("ready", "e2e-alibaba", &group, rule.clone()),
    )
    .await;
    condition(&api, "ready", "Ready", "True").await;
    assert_eq!(kstatus(&ns, "ready").0, "Current");

    // A provider endpoint that refuses connections: a transient error,
    // retried with backoff, so Reconciling=True: InProgress.
    let unreachable = format!("{ns}-unreachable");
    Api::<ProviderConfig>::all(Client::try_default().await.expect("kubeconfig"))
        .patch(
            &unreachable,
            &PatchParams::apply("e2e").force(),
            &Patch::Apply(json!({
                "apiVersion": "secgroup.dev/v1alpha1", "kind": "ProviderConfig",
                "metadata": {"name": unreachable},
                "spec": {"type": "alibaba", "region": "cn-hangzhou", "endpoint": "http://127.0.0.1:9", "allowInsecureHttp": true,
                         "credentialsSecretRef": {"namespace": SECRET_NAMESPACE, "name": "cloud-credentials"}}
            })),
        )
        .await
        .expect("apply ProviderConfig");
    apply(
        &api,
        "retrying",
        &rule_manifest("retrying", &unreachable, &group_id("sg"), rule.clone()),
    )
    .await;
    // Reconciling=True comes first with the intent ("authorizing"), then
    // with the failure; wait for the failure, which stays while retried.
    let retrying = eventually(
        "retrying Reconciling=True Retrying",
        Duration::from_secs(60),
        || async {
            let rule = condition(&api, "retrying", "Reconciling", "True").await;
            let status = rule.status.clone().unwrap_or_default();
            match conditions::find(&status.conditions, "Reconciling") {
                Some(c) if c.reason == "Retrying" => Ok(rule),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    let (status, message) = kstatus(&ns, "retrying");
    assert_eq!(status, "InProgress");
    assert_eq!(message, condition_message(&retrying, "Reconciling"));

    // A security group that does not exist: the provider refuses for good,
    // Stalled=True: Failed, with the condition's message.
    apply(
        &api,
        "stalled",
        &rule_manifest("stalled", "e2e-alibaba", &group_id("sg"), rule),
    )
    .await;
    let stalled = condition(&api, "stalled", "Stalled", "True").await;
    let (status, message) = kstatus(&ns, "stalled");
    assert_eq!(status, "Failed");
    assert!(
        message.contains("InvalidSecurityGroupId.NotFound"),
        "{message}"
    );
    assert_eq!(message, condition_message(&stalled, "Stalled"));
}
