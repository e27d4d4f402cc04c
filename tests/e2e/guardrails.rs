//! Guardrails before any provider call: a ProviderConfig's per-namespace
//! policy, the pause annotation and observe-only rules. Each is checked
//! against the fake cloud's call journal.

use std::time::Duration;

use kube::{
    Api, Client,
    api::{Patch, PatchParams},
};
use secgroup_operator::api::{SecurityGroupRule, conditions};
use serde_json::{Value, json};

use crate::support::*;

fn tcp(port: u16, peer: Value) -> Value {
    json!({"direction": "Ingress", "protocol": "TCP", "ports": {"from": port, "to": port}, "peer": peer})
}

/// A ProviderConfig of the test's own with `policies`.
fn policed_config(name: &str, policies: Value) -> Value {
    let mut manifest = config_manifest(&env().fakecloud, name, "alibaba", "cloud-credentials");
    manifest["spec"]["defaults"] = json!({"resyncIntervalSeconds": 86400});
    manifest["spec"]["policies"] = policies;
    manifest
}

/// A rule `web` of `config` (TCP 443 from 10.0.0.0/8) in a group of its
/// own, once Ready: (the group, how many calls the cloud saw for it).
async fn ready_web_rule(api: &Api<SecurityGroupRule>, config: &str) -> (String, usize) {
    let group = group_id("sg");
    create_group("alibaba", "cn-hangzhou", &group).await;
    let https = tcp(443, json!({"cidr": "10.0.0.0/8"}));
    apply(api, "web", &rule_manifest("web", config, &group, https)).await;
    condition(api, "web", "Ready", "True").await;
    let calls = cloud_calls(&group).await.len();
    (group, calls)
}

/// Waits until `web` is gone, and checks its cloud rule went with it.
async fn gone_with_its_cloud_rule(api: &Api<SecurityGroupRule>, group: &str) {
    gone(api, "web").await;
    assert!(
        cloud_rules("alibaba", "cn-hangzhou", group)
            .await
            .is_empty()
    );
}

/// The Stalled condition's reason and message once it is True.
async fn stalled(api: &Api<SecurityGroupRule>, name: &str) -> (String, String) {
    let rule = condition(api, name, "Stalled", "True").await;
    let st = rule.status.unwrap_or_default();
    let c = conditions::find(&st.conditions, "Stalled").expect("Stalled");
    (c.reason.clone(), c.message.clone())
}

/// Every class of policy refusal is Stalled with PolicyViolation, names the
/// field and the policy entry, and reaches the provider with no call; a
/// rule within the policy is authorized; `maxRules` refuses the newest.
#[tokio::test]
async fn each_policy_class_is_refused_with_the_field_named_and_no_call() {
    let client = Client::try_default().await.expect("kubeconfig");
    let tenant = format!("t{}", suffix());
    let strict_ns = namespace(&client, "e2e-policy", json!({"e2e-tenant": tenant})).await;
    let small_ns = namespace(&client, "e2e-quota", json!({"e2e-quota": tenant})).await;
    let (refused_group, allowed_group, foreign_group) =
        (group_id("sg"), group_id("sg"), group_id("sg"));
    for g in [&refused_group, &allowed_group, &foreign_group] {
        create_group("alibaba", "cn-hangzhou", g).await;
    }
    create_group("alibaba", "cn-beijing", &refused_group).await;
    let config = format!("e2e-policy-{}", suffix());
    kubectl_apply(
        &policed_config(
            &config,
            json!([
                {"name": "strict", "namespaceSelector": {"matchLabels": {"e2e-tenant": tenant}},
                 "securityGroupIds": [refused_group, allowed_group], "regions": ["cn-hangzhou"],
                 "minIpv4PrefixLength": 16},
                {"name": "small", "namespaceSelector": {"matchLabels": {"e2e-quota": tenant}},
                 "maxRules": 1},
            ]),
        )
        .to_string(),
    );
    let api: Api<SecurityGroupRule> = Api::namespaced(client.clone(), &strict_ns);
    let narrow = json!({"cidr": "10.1.0.0/16"});
    let cases = [
        (
            "world-open",
            None,
            &refused_group,
            tcp(22, json!({"cidr": "0.0.0.0/0"})),
            "spec.rule.peer.cidr",
            "allowWorldOpen",
        ),
        (
            "wide",
            None,
            &refused_group,
            tcp(23, json!({"cidr": "10.0.0.0/8"})),
            "spec.rule.peer.cidr",
            "minIpv4PrefixLength",
        ),
        (
            "cross-account",
            None,
            &refused_group,
            tcp(
                24,
                json!({"securityGroupId": "sg-peer1", "ownerAccount": "other"}),
            ),
            "spec.rule.peer.ownerAccount",
            "allowCrossAccountPeers",
        ),
        (
            "drop",
            None,
            &refused_group,
            {
                let mut r = tcp(25, narrow.clone());
                r["policy"] = json!("Drop");
                r
            },
            "spec.rule.policy",
            "allowDrop",
        ),
        (
            "region",
            Some("cn-beijing"),
            &refused_group,
            tcp(26, narrow.clone()),
            "spec.region",
            "regions",
        ),
        (
            "group",
            None,
            &foreign_group,
            tcp(27, narrow.clone()),
            "spec.securityGroupId",
            "securityGroupIds",
        ),
    ];
    for (name, region, group, rule, _, _) in &cases {
        let mut manifest = rule_manifest(name, &config, group, rule.clone());
        if let Some(region) = region {
            manifest["spec"]["region"] = json!(region);
        }
        apply(&api, name, &manifest).await;
    }
    apply(
        &api,
        "ok",
        &rule_manifest("ok", &config, &allowed_group, tcp(443, narrow.clone())),
    )
    .await;
    for (name, _, _, _, field, key) in &cases {
        let (reason, message) = stalled(&api, name).await;
        assert_eq!(reason, "PolicyViolation", "{name}: {message}");
        assert!(
            message.starts_with(&format!("refused by policy: {field}:")),
            "{name}: {message}"
        );
        assert!(
            message.contains(&format!(
                "ProviderConfig {config} spec.policies[strict].{key}"
            )),
            "{name}: {message}"
        );
    }
    condition(&api, "ok", "Ready", "True").await;
    // The refused rules' passes ended before any call: nothing reached
    // their groups (the allowed rule's group saw its authorize).
    for g in [&refused_group, &foreign_group] {
        assert_eq!(cloud_calls(g).await, Vec::<Value>::new(), "calls for {g}");
    }
    assert!(!cloud_calls(&allowed_group).await.is_empty());

    // maxRules: the older rule is authorized, the newer refused.
    let small: Api<SecurityGroupRule> = Api::namespaced(client.clone(), &small_ns);
    let quota_group = group_id("sg");
    create_group("alibaba", "cn-hangzhou", &quota_group).await;
    apply(
        &small,
        "first",
        &rule_manifest("first", &config, &allowed_group, tcp(80, narrow.clone())),
    )
    .await;
    condition(&small, "first", "Ready", "True").await;
    apply(
        &small,
        "second",
        &rule_manifest("second", &config, &quota_group, tcp(81, narrow)),
    )
    .await;
    let (reason, message) = stalled(&small, "second").await;
    assert_eq!(reason, "PolicyViolation");
    assert!(
        message.contains("spec.policies[small].maxRules"),
        "{message}"
    );
    assert_eq!(cloud_calls(&quota_group).await, Vec::<Value>::new());

    // A namespace no entry selects may not use the config.
    let (other, _) = setup("e2e-unselected").await;
    apply(
        &other,
        "any",
        &rule_manifest(
            "any",
            &config,
            &allowed_group,
            tcp(82, json!({"cidr": "10.2.0.0/16"})),
        ),
    )
    .await;
    let (reason, message) = stalled(&other, "any").await;
    assert_eq!(reason, "PolicyViolation");
    assert!(message.contains("no entry of ProviderConfig"), "{message}");
}

/// A rule already authorized that a tightened policy now forbids is
/// reported and left at the provider; deleting it still revokes it.
#[tokio::test]
async fn a_tightened_policy_reports_an_applied_rule_without_revoking_it() {
    let client = Client::try_default().await.expect("kubeconfig");
    let (api, _) = setup("e2e-tighten").await;
    let config = format!("e2e-tighten-{}", suffix());
    let open = json!([{"name": "all", "namespaceSelector": {}}]);
    kubectl_apply(&policed_config(&config, open).to_string());
    let (group, calls) = ready_web_rule(&api, &config).await;

    let tightened = json!({"spec": {"policies": [{"name": "all", "namespaceSelector": {}, "minIpv4PrefixLength": 16}]}});
    Api::<secgroup_operator::api::ProviderConfig>::all(client)
        .patch(&config, &PatchParams::default(), &Patch::Merge(&tightened))
        .await
        .expect("tighten the policy");
    let (reason, message) = stalled(&api, "web").await;
    assert_eq!(reason, "PolicyViolation");
    assert!(message.contains("does not revoke it"), "{message}");
    assert_eq!(
        cloud_rules("alibaba", "cn-hangzhou", &group).await.len(),
        1,
        "left in place"
    );
    assert_eq!(
        cloud_calls(&group).await.len(),
        calls,
        "no call for the report"
    );

    delete(&api, "web").await;
    gone_with_its_cloud_rule(&api, &group).await;
}

/// A paused rule makes no call: neither for a spec change nor for its
/// deletion, which waits and says so until the annotation goes.
#[tokio::test]
async fn a_paused_rule_makes_no_call_and_its_deletion_waits() {
    let (api, _) = setup("e2e-pause").await;
    let (group, calls) = ready_web_rule(&api, "e2e-alibaba").await;

    merge(
        &api,
        "web",
        json!({"metadata": {"annotations": {"secgroup.dev/paused": "true"}},
                              "spec": {"rule": {"ports": {"from": 8443, "to": 8443}}}}),
    )
    .await;
    let (reason, _) = stalled(&api, "web").await;
    assert_eq!(reason, "Paused");
    delete(&api, "web").await;
    let message = eventually(
        "the deletion says it waits",
        Duration::from_secs(30),
        || async {
            let rule = api.get("web").await.map_err(|e| e.to_string())?;
            let st = rule.status.unwrap_or_default();
            let c = conditions::find(&st.conditions, "Stalled").ok_or("no Stalled")?;
            if c.message.contains("deletion waits") {
                Ok(c.message.clone())
            } else {
                Err(c.message.clone())
            }
        },
    )
    .await;
    assert!(message.contains("secgroup.dev/paused"), "{message}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        api.get_opt("web").await.expect("get").is_some(),
        "held while paused"
    );
    assert_eq!(
        cloud_calls(&group).await.len(),
        calls,
        "no call while paused"
    );
    let cloud = cloud_rules("alibaba", "cn-hangzhou", &group).await;
    assert_eq!(cloud.len(), 1);
    assert_eq!(cloud[0]["rule"]["ports"]["from"], 443, "{cloud:?}");

    merge(
        &api,
        "web",
        json!({"metadata": {"annotations": {"secgroup.dev/paused": null}}}),
    )
    .await;
    gone_with_its_cloud_rule(&api, &group).await;
}

/// Observe only: the rule's existence and id are reported from a describe;
/// no mutating call is made, and deleting the object leaves the cloud rule.
#[tokio::test]
async fn an_observed_rule_reports_existence_and_id_without_mutating() {
    let (api, _) = setup("e2e-observe").await;
    let group = group_id("sg");
    create_group("alibaba", "cn-hangzhou", &group).await;
    let https = tcp(443, json!({"cidr": "10.0.0.0/8"}));
    apply(
        &api,
        "managed",
        &rule_manifest("managed", "e2e-alibaba", &group, https.clone()),
    )
    .await;
    let managed = condition(&api, "managed", "Ready", "True").await;
    let rule_id = managed.status.and_then(|s| s.rule_id).expect("rule id");
    let before = cloud_calls(&group).await.len();

    let observe = |name: &str, rule: Value| {
        let mut m = rule_manifest(name, "e2e-alibaba", &group, rule);
        m["spec"]["managementPolicy"] = json!("Observe");
        m
    };
    apply(&api, "seen", &observe("seen", https)).await;
    apply(
        &api,
        "missing",
        &observe("missing", tcp(444, json!({"cidr": "10.0.0.0/8"}))),
    )
    .await;
    let seen = condition(&api, "seen", "Ready", "True").await;
    let st = seen.status.unwrap_or_default();
    let ready = conditions::find(&st.conditions, "Ready").expect("Ready");
    assert_eq!(ready.reason, "Observed");
    assert!(ready.message.contains(&rule_id), "{}", ready.message);
    let (reason, message) = stalled(&api, "missing").await;
    assert_eq!(reason, "NotObserved", "{message}");

    delete(&api, "seen").await;
    delete(&api, "missing").await;
    gone(&api, "seen").await;
    gone(&api, "missing").await;
    let after: Vec<Value> = cloud_calls(&group).await.into_iter().skip(before).collect();
    assert!(!after.is_empty(), "the observed rules were described");
    assert!(
        after
            .iter()
            .all(|c| c["action"] == "DescribeSecurityGroupAttribute"),
        "{after:?}"
    );
    assert_eq!(cloud_rules("alibaba", "cn-hangzhou", &group).await.len(), 1);
}
