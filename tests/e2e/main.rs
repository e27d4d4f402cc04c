//! End-to-end tests: the operator binary against a real kube-apiserver (from
//! tests/cluster) and the fake cloud over HTTP. `make e2e` starts the
//! cluster and runs them; `cargo test` alone leaves this target out.

mod admission;
mod fidelity;
mod guardrails;
mod kstatus;
mod operations;
mod ownership;
mod recovery;
mod support;
mod tenancy;
mod transport;

use std::time::Duration;

use kube::{Api, Client};
use secgroup_operator::{api::SecurityGroupRule, controller::ownership::Mark};
use serde_json::json;
use support::*;

/// Present → authorized and Ready; Absent → revoked, object kept; Present
/// again → authorized; delete → revoked, then the finalizer is removed.
async fn lifecycle(config: &str, provider: &str, region: &str, group_prefix: &str) {
    let (api, _) = setup("e2e-life").await;
    let group = group_id(group_prefix);
    create_group(provider, region, &group).await;
    let rule = json!({"direction": "Ingress", "protocol": "TCP", "ports": {"from": 443, "to": 443},
                      "peer": {"cidr": "10.0.0.0/8"}, "description": "web https"});
    apply(&api, "web", &rule_manifest("web", config, &group, rule)).await;

    let ready = condition(&api, "web", "Ready", "True").await;
    let status = ready.status.clone().expect("status");
    assert_eq!(
        status
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .map(|c| c.reason.as_str()),
        Some("Authorized")
    );
    let rule_id = status.rule_id.expect("rule id learned by describe");
    let cloud = cloud_rules(provider, region, &group).await;
    assert_eq!(cloud.len(), 1, "one rule at the provider: {cloud:?}");
    assert_eq!(cloud[0]["ruleId"], rule_id.as_str());
    // The user's text, then the ownership mark from the object's UID.
    let described = cloud[0]["rule"]["description"].as_str().unwrap_or_default();
    let mark = Mark::of_uid(ready.metadata.uid.as_deref().expect("uid"));
    assert_eq!(described, format!("web https {}", mark.as_str()));
    assert!(holds_the_revoke_finalizer(&ready));

    merge(&api, "web", json!({"spec": {"ensure": "Absent"}})).await;
    let revoked = condition(&api, "web", "Ready", "True").await;
    let st = revoked.status.expect("status");
    assert_eq!(
        st.conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .map(|c| c.reason.as_str()),
        Some("Revoked")
    );
    assert!(
        cloud_rules(provider, region, &group).await.is_empty(),
        "Absent revokes the rule"
    );

    merge(&api, "web", json!({"spec": {"ensure": "Present"}})).await;
    let again = condition(&api, "web", "Ready", "True").await;
    assert_eq!(
        again
            .status
            .and_then(|s| s.conditions.into_iter().find(|c| c.type_ == "Ready"))
            .map(|c| c.reason),
        Some("Authorized".into())
    );
    assert_eq!(cloud_rules(provider, region, &group).await.len(), 1);

    delete(&api, "web").await;
    gone(&api, "web").await;
    assert!(
        cloud_rules(provider, region, &group).await.is_empty(),
        "delete revokes the rule"
    );

    // Every mutation carried a ClientToken, and none had two effects.
    let calls = cloud_calls(&group).await;
    let mutations: Vec<_> = calls
        .iter()
        .filter(|c| {
            !c["action"].as_str().unwrap_or("").starts_with("Describe")
                && c["action"] != "GetSecurityGroup"
        })
        .collect();
    assert!(
        mutations.iter().all(|c| c["clientToken"]
            .as_str()
            .is_some_and(|t| t.starts_with("sgo-"))),
        "{mutations:?}"
    );
}

#[tokio::test]
async fn alibaba_rule_lifecycle() {
    lifecycle("e2e-alibaba", "alibaba", "cn-hangzhou", "sg").await;
}

#[tokio::test]
async fn apsara_rule_lifecycle() {
    lifecycle("e2e-apsara", "apsara", "cn-qingdao-env17-d01", "sg").await;
}

#[tokio::test]
async fn baidu_rule_lifecycle() {
    lifecycle("e2e-baidu", "baidu", "bj", "g").await;
}

/// `deletionPolicy: Orphan` deletes the object without any provider call.
#[tokio::test]
async fn orphan_leaves_the_cloud_rule() {
    let (api, _) = setup("e2e-orphan").await;
    let group = group_id("sg");
    create_group("alibaba", "cn-hangzhou", &group).await;
    let mut manifest = rule_manifest(
        "kept",
        "e2e-alibaba",
        &group,
        json!({"direction": "Ingress", "protocol": "UDP", "peer": {"cidr": "192.168.0.0/16"}}),
    );
    manifest["spec"]["deletionPolicy"] = json!("Orphan");
    apply(&api, "kept", &manifest).await;
    condition(&api, "kept", "Ready", "True").await;
    let before = cloud_calls(&group).await.len();
    delete(&api, "kept").await;
    gone(&api, "kept").await;
    assert_eq!(
        cloud_rules("alibaba", "cn-hangzhou", &group).await.len(),
        1,
        "the cloud rule stays"
    );
    assert_eq!(
        cloud_calls(&group).await.len(),
        before,
        "no provider call on an orphaning delete"
    );
}

/// A rule in a group that does not exist cannot be authorized: Stalled with
/// the provider's code; deleting keeps the finalizer until Orphan is set.
#[tokio::test]
async fn permanent_error_stalls_and_orphan_unblocks_deletion() {
    let (api, _) = setup("e2e-stall").await;
    let group = group_id("sg");
    create_group("alibaba", "cn-hangzhou", &group).await;
    apply(
        &api,
        "bad",
        &rule_manifest(
            "bad",
            "e2e-alibaba",
            &group,
            json!({"direction": "Ingress", "protocol": "TCP", "peer": {"cidr": "10.0.0.0/8"}}),
        ),
    )
    .await;
    condition(&api, "bad", "Ready", "True").await;
    // The group vanishes out of band: authorize of a new spec now fails permanently.
    delete_cloud_group("alibaba", "cn-hangzhou", &group).await;
    merge(
        &api,
        "bad",
        json!({"spec": {"rule": {"ports": {"from": 22, "to": 22}}}}),
    )
    .await;
    let stalled = condition(&api, "bad", "Stalled", "True").await;
    let op = stalled
        .status
        .and_then(|s| s.last_operation)
        .expect("last operation");
    assert_eq!(op.code.as_deref(), Some("InvalidSecurityGroupId.NotFound"));
    // Stalled means no retry until something changes: the status write of
    // the refusal must not set off another authorize. (Drift detection may
    // describe the group meanwhile, every 5 s here: that is no retry.)
    let retries = || async {
        let calls = cloud_calls(&group).await;
        calls
            .into_iter()
            .filter(|c| c["action"] != "DescribeSecurityGroupAttribute")
            .count()
    };
    let calls = retries().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        retries().await,
        calls,
        "a stalled rule kept calling the provider"
    );
    // Revoking a rule whose group is gone is "already gone": deletion completes.
    delete(&api, "bad").await;
    gone(&api, "bad").await;
}

/// A namespace the ProviderConfig does not allow is refused without any call.
#[tokio::test]
async fn namespace_not_allowed_is_stalled_without_calls() {
    env();
    let client = Client::try_default().await.expect("kubeconfig");
    let ns = namespace(
        &client,
        "e2e-denied",
        json!({"secgroup-e2e/denied": "true"}),
    )
    .await;
    let api: Api<SecurityGroupRule> = Api::namespaced(client, &ns);
    let group = group_id("sg");
    create_group("alibaba", "cn-hangzhou", &group).await;
    apply(
        &api,
        "nope",
        &rule_manifest(
            "nope",
            "e2e-alibaba",
            &group,
            json!({"direction": "Ingress", "protocol": "TCP", "peer": {"cidr": "10.0.0.0/8"}}),
        ),
    )
    .await;
    let stalled = condition(&api, "nope", "Stalled", "True").await;
    let reason = stalled
        .status
        .and_then(|s| s.conditions.into_iter().find(|c| c.type_ == "Stalled"))
        .map(|c| c.reason);
    assert_eq!(reason.as_deref(), Some("NamespaceNotAllowed"));
    assert!(
        cloud_calls(&group).await.is_empty(),
        "no provider call for a refused namespace"
    );
    delete(&api, "nope").await;
    gone(&api, "nope").await;
}

/// Throttling, 5xx, and an authorize whose answer is lost after it was
/// carried out: the rule still converges, the lost answer is recovered by a
/// retry with the same ClientToken, and no ClientToken has two effects.
#[tokio::test]
async fn converges_through_throttling_and_server_errors() {
    let (api, _) = setup("e2e-faults").await;
    let group = group_id("g");
    create_group("baidu", "bj", &group).await;
    set_group_faults(
        &group,
        &[
            json!({"provider": "baidu", "throttle": 0.15, "retryAfterMs": 200, "error500": 0.1, "error503": 0.05}),
            json!({"provider": "baidu", "action": "AuthorizeSecurityGroupRule", "dropAfter": 1.0, "times": 1}),
        ],
    )
    .await;
    apply(&api, "flaky", &rule_manifest("flaky", "e2e-baidu", &group, json!({"direction": "Egress", "protocol": "TCP", "ports": {"from": 80, "to": 80}, "peer": {"cidr": "0.0.0.0/0"}}))).await;
    let result = tokio::time::timeout(
        Duration::from_secs(90),
        condition(&api, "flaky", "Ready", "True"),
    )
    .await;
    set_group_faults(&group, &[]).await;
    result.expect("converged");
    assert_eq!(cloud_rules("baidu", "bj", &group).await.len(), 1);
    delete(&api, "flaky").await;
    gone(&api, "flaky").await;

    let calls = cloud_calls(&group).await;
    let lost = calls
        .iter()
        .find(|c| c["fault"] == "dropAfter")
        .expect("an authorize was carried out and its answer lost");
    assert_eq!(lost["effect"], true);
    let token = lost["clientToken"].as_str().expect("a ClientToken");
    let record = one_effect_per_token(&calls, token).await;
    assert!(
        record["calls"].as_u64() >= Some(2) && record["effects"] == 1,
        "the retry of the lost authorize was replayed: {record}"
    );
}
