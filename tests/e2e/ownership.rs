//! Ownership: the operator revokes only cloud rules it created for the
//! object, which it tells by the mark in their description.

use std::time::Duration;

use kube::{
    Api,
    api::{Patch, PatchParams},
};
use secgroup_operator::api::{
    SecurityGroupRule,
    conditions::{self, reasons},
};
use serde_json::{Value, json};

use crate::support::*;

fn https_from_ten() -> Value {
    json!({"direction": "Ingress", "protocol": "TCP", "ports": {"from": 443, "to": 443},
           "peer": {"cidr": "10.0.0.0/8"}, "description": "web https"})
}

fn stalled_reason(rule: &SecurityGroupRule) -> (String, String) {
    let status = rule.status.as_ref().expect("status");
    let c = conditions::find(&status.conditions, "Stalled").expect("Stalled condition");
    (c.reason.clone(), c.message.clone())
}

fn ids(rules: &[Value]) -> Vec<&str> {
    rules.iter().filter_map(|r| r["ruleId"].as_str()).collect()
}

/// An object declaring a rule that someone planted out of band does not
/// take it over: it says whose rule is in the way, and deleting the object
/// calls nothing, so the planted rule survives.
#[tokio::test]
async fn a_planted_identical_rule_survives_the_objects_deletion() {
    let (api, _) = setup("e2e-planted").await;
    let group = group_id("sg");
    create_group("alibaba", "cn-hangzhou", &group).await;
    let planted = plant_rule("alibaba", "cn-hangzhou", &group, &https_from_ten()).await;

    apply(
        &api,
        "web",
        &rule_manifest("web", "e2e-alibaba", &group, https_from_ten()),
    )
    .await;
    let stalled = condition(&api, "web", "Stalled", "True").await;
    let (reason, message) = stalled_reason(&stalled);
    assert_eq!(reason, reasons::RULE_ALREADY_EXISTS);
    assert!(
        message.contains(&planted) && message.contains(&group),
        "names the rule and group: {message}"
    );
    let status = stalled.status.expect("status");
    assert!(status.applied_rule.is_none() && status.rule_id.is_none());

    delete(&api, "web").await;
    gone(&api, "web").await;
    let cloud = cloud_rules("alibaba", "cn-hangzhou", &group).await;
    assert_eq!(ids(&cloud), [planted.as_str()], "the planted rule stays");
    let revokes = cloud_calls(&group)
        .await
        .into_iter()
        .filter(|c| c["action"] == "RevokeSecurityGroup")
        .count();
    assert_eq!(revokes, 0, "nothing was revoked");
}

/// Status written by someone else names another rule's id: the operator
/// does not act on a record the cloud contradicts, and that rule survives.
#[tokio::test]
async fn a_status_patched_to_name_another_rule_does_not_revoke_it() {
    let (api, _) = setup("e2e-forged").await;
    let group = group_id("sg");
    create_group("alibaba", "cn-hangzhou", &group).await;
    apply(
        &api,
        "web",
        &rule_manifest("web", "e2e-alibaba", &group, https_from_ten()),
    )
    .await;
    let ready = condition(&api, "web", "Ready", "True").await;
    let own = ready
        .status
        .and_then(|s| s.rule_id)
        .expect("rule id learned");
    let victim = plant_rule(
        "alibaba",
        "cn-hangzhou",
        &group,
        &json!({"direction": "Ingress", "protocol": "TCP", "ports": {"from": 22, "to": 22},
                "peer": {"cidr": "192.168.0.0/16"}}),
    )
    .await;

    api.patch_status(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"ruleId": victim}})),
    )
    .await
    .expect("status patched");
    delete(&api, "web").await;
    let stuck = eventually(
        "web stalled on the record",
        Duration::from_secs(60),
        || async {
            let rule = api.get("web").await.map_err(|e| e.to_string())?;
            match stalled_reason(&rule) {
                (reason, message) if reason == reasons::RECORD_MISMATCH => Ok(message),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    assert!(stuck.contains(&victim), "{stuck}");
    let cloud = cloud_rules("alibaba", "cn-hangzhou", &group).await;
    assert!(ids(&cloud).contains(&victim.as_str()), "{cloud:?}");

    // Orphan lets the object go without a call; the own rule is cleaned up here.
    merge(&api, "web", json!({"spec": {"deletionPolicy": "Orphan"}})).await;
    gone(&api, "web").await;
    delete_cloud_rule("alibaba", "cn-hangzhou", &group, &own).await;
    assert_eq!(
        ids(&cloud_rules("alibaba", "cn-hangzhou", &group).await),
        [victim.as_str()]
    );
}

/// The operator is killed after an authorize was carried out but before its
/// answer (and so its rule id) was recorded; the spec then changes. The
/// restarted operator finds the rule by its mark and revokes it before it
/// authorizes the new one: no rule leaks, and deletion leaves nothing.
#[tokio::test]
async fn a_crash_between_authorize_and_record_then_a_spec_change_leaks_nothing() {
    let (api, client) = setup("e2e-lost").await;
    let config = own_provider_config(&client, "e2e-lost", "alibaba", "cloud-credentials").await;
    let run = suffix();
    let selector = format!("{OWN_OPERATOR_LABEL}={run}");
    let args = [
        "--metrics-addr",
        "127.0.0.1:0",
        "--label-selector",
        &selector,
    ];
    let operator = start_operator(&args, &[], "lost-operator-1.log");
    let group = group_id("sg");
    create_group("alibaba", "cn-hangzhou", &group).await;
    set_group_faults(
        &group,
        &[json!({"provider": "alibaba", "action": "AuthorizeSecurityGroup", "holdResponseMs": 20000})],
    )
    .await;
    let mut manifest = rule_manifest("lost", &config, &group, https_from_ten());
    manifest["metadata"]["labels"] = json!({ OWN_OPERATOR_LABEL: run });
    apply(&api, "lost", &manifest).await;
    eventually(
        "the authorize carried out",
        Duration::from_secs(30),
        || async {
            let calls = cloud_calls(&group).await;
            calls
                .into_iter()
                .find(|c| c["action"] == "AuthorizeSecurityGroup" && c["effect"] == true)
                .ok_or_else(|| "no authorize with an effect yet".to_owned())
        },
    )
    .await;
    operator.crash();
    set_group_faults(&group, &[]).await;

    let mut changed = https_from_ten();
    changed["ports"] = json!({"from": 8443, "to": 8443});
    manifest["spec"]["rule"] = changed;
    apply(&api, "lost", &manifest).await;
    let _restarted = start_operator(&args, &[], "lost-operator-2.log");
    let ready = condition(&api, "lost", "Ready", "True").await;
    assert_eq!(ready.metadata.generation, Some(2));
    let cloud = cloud_rules("alibaba", "cn-hangzhou", &group).await;
    assert_eq!(cloud.len(), 1, "only the declared rule: {cloud:?}");
    assert_eq!(cloud[0]["rule"]["ports"]["from"], 8443, "{cloud:?}");

    delete(&api, "lost").await;
    gone(&api, "lost").await;
    assert!(
        cloud_rules("alibaba", "cn-hangzhou", &group)
            .await
            .is_empty()
    );
    delete_provider_config(&client, &config).await;
}

/// Two namespaces declare one rule. The younger object waits with
/// DuplicateClaim, calling nothing and naming no object of the other
/// namespace. Deleting it leaves the elder's rule; once the elder is
/// deleted, the younger authorizes a rule of its own.
#[tokio::test]
async fn two_namespaces_claiming_one_rule_never_revoke_each_others() {
    let (elder_api, client) = setup("e2e-claim-a").await;
    let second_ns = namespace(&client, "e2e-claim-b", json!({})).await;
    let younger_api: Api<SecurityGroupRule> = Api::namespaced(client.clone(), &second_ns);
    let group = group_id("sg");
    create_group("alibaba", "cn-hangzhou", &group).await;
    let manifest = |name: &str| rule_manifest(name, "e2e-alibaba", &group, https_from_ten());

    apply(&elder_api, "elder", &manifest("elder")).await;
    condition(&elder_api, "elder", "Ready", "True").await;
    // Creation timestamps have one-second resolution.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let claim = |api: Api<SecurityGroupRule>| async move {
        apply(&api, "younger", &manifest("younger")).await;
        let stalled = condition(&api, "younger", "Stalled", "True").await;
        let (reason, message) = stalled_reason(&stalled);
        assert_eq!(reason, reasons::DUPLICATE_CLAIM);
        message
    };
    let message = claim(younger_api.clone()).await;
    assert!(message.contains("another namespace"), "{message}");
    assert!(
        !message.contains("elder"),
        "names nothing across namespaces: {message}"
    );
    let authorizes = |calls: &[Value]| {
        calls
            .iter()
            .filter(|c| c["action"] == "AuthorizeSecurityGroup")
            .count()
    };
    assert_eq!(
        authorizes(&cloud_calls(&group).await),
        1,
        "the younger called nothing"
    );

    // Deleting the younger leaves the elder's rule.
    delete(&younger_api, "younger").await;
    gone(&younger_api, "younger").await;
    let cloud = cloud_rules("alibaba", "cn-hangzhou", &group).await;
    assert_eq!(cloud.len(), 1, "{cloud:?}");

    // Declared again, it waits; the elder's deletion hands it the rule.
    claim(younger_api.clone()).await;
    delete(&elder_api, "elder").await;
    gone(&elder_api, "elder").await;
    let ready = condition(&younger_api, "younger", "Ready", "True").await;
    let own = ready.status.and_then(|s| s.rule_id).expect("rule id");
    let cloud = cloud_rules("alibaba", "cn-hangzhou", &group).await;
    assert_eq!(ids(&cloud), [own.as_str()]);
    let mark = secgroup_operator::controller::ownership::Mark::of_uid(
        ready.metadata.uid.as_deref().expect("uid"),
    );
    assert!(
        cloud[0]["rule"]["description"]
            .as_str()
            .is_some_and(|d| mark.is_on(d)),
        "the younger's own mark: {cloud:?}"
    );

    delete(&younger_api, "younger").await;
    gone(&younger_api, "younger").await;
    assert!(
        cloud_rules("alibaba", "cn-hangzhou", &group)
            .await
            .is_empty()
    );
}
