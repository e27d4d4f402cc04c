//! The strict fake cloud's answers that real gateways give and a lenient
//! fake never did: each test fails when the client reads the answer wrong.

use std::time::Duration;

use kube::{
    Api, Client,
    api::{Patch, PatchParams},
};
use secgroup_operator::api::{ProviderConfig, SecurityGroupRule, conditions};
use serde_json::{Value, json};

use crate::support::*;

/// A ProviderConfig of the test's own at `fakecloud`, with `extra` in its spec.
async fn config_at(
    client: &Client,
    fakecloud: &str,
    prefix: &str,
    provider: &str,
    extra: Value,
) -> String {
    provider_config_at(
        client,
        fakecloud,
        prefix,
        provider,
        "cloud-credentials",
        &extra,
    )
    .await
}

/// The Stalled condition's reason and message.
fn stalled(rule: &SecurityGroupRule) -> (String, String) {
    let status = rule.status.clone().unwrap_or_default();
    let c = conditions::find(&status.conditions, "Stalled").expect("Stalled");
    (c.reason.clone(), c.message.clone())
}

fn ssh() -> Value {
    json!({"direction": "Ingress", "protocol": "TCP", "ports": {"from": 22, "to": 22},
           "peer": {"cidr": "10.0.0.0/8"}})
}

/// W1: a revoke by attributes of a rule that is no longer there is answered
/// 403 `InvalidGroupAuthItem.NotFound` (the RevokeSecurityGroup error
/// table); that is "already gone", and the deletion completes.
#[tokio::test]
async fn a_revoke_answered_group_auth_item_not_found_completes_the_deletion() {
    let (api, client) = setup("e2e-w1").await;
    let cloud = start_fakecloud("fakecloud-w1.log");
    admin_call(
        reqwest::Method::PUT,
        &format!("{}/_fake/settings", cloud.url),
        &json!({"apsaraMissingRuleByAttributes": "InvalidGroupAuthItem.NotFound"}),
    )
    .await;
    let region = "cn-qingdao-env17-d01";
    let group = group_id("sg");
    create_group_at(&cloud.url, "apsara", region, &group).await;
    let config = config_at(&client, &cloud.url, "e2e-w1", "apsara", json!({})).await;
    apply(&api, "w1", &rule_manifest("w1", &config, &group, ssh())).await;
    condition(&api, "w1", "Ready", "True").await;

    // Someone removes the rule while the group's describe still shows it
    // (the check before the revoke shares the describe made after the
    // authorize, and the fake lags besides).
    tokio::time::sleep(Duration::from_secs(2)).await;
    set_faults_at(
        &cloud.url,
        json!({"rules": [{"provider": "apsara", "describeLagMs": 1500}]}),
    )
    .await;
    let held = cloud_rules_at(&cloud.url, "apsara", region, &group).await;
    let rule_id = held[0]["ruleId"].as_str().expect("a rule id");
    admin_call(
        reqwest::Method::DELETE,
        &format!(
            "{}/_fake/rules/apsara/{region}/{group}/{rule_id}",
            cloud.url
        ),
        &Value::Null,
    )
    .await;
    delete(&api, "w1").await;
    gone(&api, "w1").await;

    let calls = cloud_calls_at(&cloud.url, &group).await;
    assert!(
        calls.iter().any(|c| c["action"] == "RevokeSecurityGroup"
            && c["code"] == "InvalidGroupAuthItem.NotFound"),
        "the revoke met the missing rule: {calls:?}"
    );
    delete_provider_config(&client, &config).await;
}

/// R4: `LastTokenProcessing` (the same token still in flight) and
/// `OperationConflict` are transient: the authorize is retried with the same
/// ClientToken, and has one effect.
#[tokio::test]
async fn a_token_in_flight_and_a_conflict_are_retried_with_the_same_token() {
    let (api, client) = setup("e2e-r4").await;
    // An answer held beyond the client's timeout: its retry meets the token in flight.
    let config = config_at(
        &client,
        &env().fakecloud,
        "e2e-r4",
        "alibaba",
        json!({"timeouts": {"requestSeconds": 1}}),
    )
    .await;
    let (held, conflicted) = (group_id("sg"), group_id("sg"));
    for group in [&held, &conflicted] {
        create_group("alibaba", "cn-hangzhou", group).await;
    }
    set_group_faults(
        &held,
        &[json!({"provider": "alibaba", "action": "AuthorizeSecurityGroup", "holdResponseMs": 4000})],
    )
    .await;
    set_group_faults(
        &conflicted,
        &[json!({"provider": "alibaba", "action": "AuthorizeSecurityGroup", "operationConflict": 1.0, "times": 2})],
    )
    .await;
    apply(&api, "held", &rule_manifest("held", &config, &held, ssh())).await;
    apply(
        &api,
        "conflicted",
        &rule_manifest("conflicted", &config, &conflicted, ssh()),
    )
    .await;

    eventually(
        "an authorize refused as LastTokenProcessing",
        Duration::from_secs(30),
        || async {
            let calls = cloud_calls(&held).await;
            if calls.iter().any(|c| c["code"] == "LastTokenProcessing") {
                Ok(())
            } else {
                Err(format!("{calls:?}"))
            }
        },
    )
    .await;
    set_group_faults(&held, &[]).await;

    for (name, group, code) in [
        ("held", &held, "LastTokenProcessing"),
        ("conflicted", &conflicted, "OperationConflict"),
    ] {
        condition(&api, name, "Ready", "True").await;
        let calls = cloud_calls(group).await;
        let authorizes: Vec<&Value> = calls
            .iter()
            .filter(|c| c["action"] == "AuthorizeSecurityGroup")
            .collect();
        assert!(
            authorizes.iter().any(|c| c["code"] == code),
            "{name}: {authorizes:?}"
        );
        let token = authorizes[0]["clientToken"].as_str().expect("a token");
        assert!(
            authorizes.iter().all(|c| c["clientToken"] == token),
            "{name}: every retry carries the first token: {authorizes:?}"
        );
        let record = one_effect_per_token(&calls, token).await;
        assert_eq!(record["effects"], 1, "{name}: {record}");
        assert_eq!(
            cloud_rules("alibaba", "cn-hangzhou", group).await.len(),
            1,
            "{name}"
        );
    }
    for name in ["held", "conflicted"] {
        delete(&api, name).await;
        gone(&api, name).await;
    }
    delete_provider_config(&client, &config).await;
}

/// R5: a permission denial on one group stalls only that group's rule; a
/// rule in another group of the same ProviderConfig proceeds at once.
#[tokio::test]
async fn a_denial_on_one_group_stalls_only_its_rule() {
    let (api, client) = setup("e2e-r5").await;
    let config = config_at(&client, &env().fakecloud, "e2e-r5", "alibaba", json!({})).await;
    let (denied, allowed) = (group_id("sg"), group_id("sg"));
    for group in [&denied, &allowed] {
        create_group("alibaba", "cn-hangzhou", group).await;
    }
    set_group_faults(&denied, &[json!({"provider": "alibaba", "forbidden": 1.0})]).await;
    apply(
        &api,
        "denied",
        &rule_manifest("denied", &config, &denied, ssh()),
    )
    .await;
    let refused = condition(&api, "denied", "Stalled", "True").await;
    assert_eq!(stalled(&refused).0, "ProviderError");
    let op = refused
        .status
        .and_then(|s| s.last_operation)
        .expect("last operation");
    assert_eq!(op.code.as_deref(), Some("Forbidden.RAM"));

    apply(
        &api,
        "allowed",
        &rule_manifest("allowed", &config, &allowed, ssh()),
    )
    .await;
    // A config-wide pause would hold it for 15 s at least (half of the
    // first 30 s, jittered), counted from the denial before it was created.
    tokio::time::timeout(
        Duration::from_secs(10),
        condition(&api, "allowed", "Ready", "True"),
    )
    .await
    .expect("the other group's rule was not held by the denial");
    assert_eq!(
        cloud_rules("alibaba", "cn-hangzhou", &allowed).await.len(),
        1
    );

    set_group_faults(&denied, &[]).await;
    merge(
        &api,
        "denied",
        json!({"spec": {"deletionPolicy": "Orphan"}}),
    )
    .await;
    for name in ["denied", "allowed"] {
        delete(&api, name).await;
        gone(&api, name).await;
    }
    delete_provider_config(&client, &config).await;
}

/// R9: an enterprise group refuses `Policy` even at its default; the
/// operator leaves the default out, and the rule is authorized.
#[tokio::test]
async fn an_enterprise_group_gets_no_default_policy_and_the_rule() {
    let (api, _) = setup("e2e-r9").await;
    for (config, provider, region) in [
        ("e2e-alibaba", "alibaba", "cn-hangzhou"),
        ("e2e-apsara", "apsara", "cn-qingdao-env17-d01"),
    ] {
        let group = group_id("sg");
        admin_call(
            reqwest::Method::POST,
            &format!("{}/_fake/groups", env().fakecloud),
            &json!({"provider": provider, "region": region, "id": group, "enterprise": true}),
        )
        .await;
        let mut rule = ssh();
        rule["policy"] = json!("Accept");
        rule["priority"] = json!(1);
        apply(
            &api,
            provider,
            &rule_manifest(provider, config, &group, rule),
        )
        .await;
        condition(&api, provider, "Ready", "True").await;
        let calls = cloud_calls(&group).await;
        let authorize = calls
            .iter()
            .find(|c| c["action"] == "AuthorizeSecurityGroup" && c["code"] == "OK")
            .unwrap_or_else(|| panic!("{provider}: an authorize: {calls:?}"));
        let parameters = authorize["parameters"].as_object().expect("parameters");
        assert!(
            !parameters.keys().any(|k| k.ends_with("Policy")),
            "{provider}: {parameters:?}"
        );
        assert_eq!(cloud_rules(provider, region, &group).await.len(), 1);
        delete(&api, provider).await;
        gone(&api, provider).await;
    }
}

/// R14: "security group not found" after the ProviderConfig's endpoint
/// changed is not "already gone": the deletion stalls, naming the change,
/// and the rule stays where it was made; pointed back, it is revoked.
#[tokio::test]
async fn a_group_missing_at_a_new_endpoint_is_not_taken_for_revoked() {
    let (api, client) = setup("e2e-r14").await;
    let (home, elsewhere) = (
        start_fakecloud("fakecloud-r14-home.log"),
        start_fakecloud("fakecloud-r14-elsewhere.log"),
    );
    let group = group_id("sg");
    create_group_at(&home.url, "alibaba", "cn-hangzhou", &group).await;
    let config = config_at(&client, &home.url, "e2e-r14", "alibaba", json!({})).await;
    apply(
        &api,
        "moved",
        &rule_manifest("moved", &config, &group, ssh()),
    )
    .await;
    condition(&api, "moved", "Ready", "True").await;

    let configs: Api<ProviderConfig> = Api::all(client.clone());
    let point = |url: String| {
        let configs = configs.clone();
        let config = config.clone();
        async move {
            configs
                .patch(
                    &config,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"endpoint": url}})),
                )
                .await
                .expect("patch the endpoint");
        }
    };
    point(elsewhere.url.clone()).await;
    delete(&api, "moved").await;
    let held = condition(&api, "moved", "Stalled", "True").await;
    let (reason, message) = stalled(&held);
    assert_eq!(reason, "ProviderConfigChanged", "{message}");
    assert!(message.contains("endpoint changed"), "{message}");
    assert!(
        held.metadata
            .finalizers
            .unwrap_or_default()
            .contains(&"secgroup.dev/revoke".to_owned()),
        "the finalizer stays"
    );
    assert_eq!(
        cloud_rules_at(&home.url, "alibaba", "cn-hangzhou", &group)
            .await
            .len(),
        1,
        "the rule stays where it was made"
    );

    point(home.url.clone()).await;
    gone(&api, "moved").await;
    assert!(
        cloud_rules_at(&home.url, "alibaba", "cn-hangzhou", &group)
            .await
            .is_empty(),
        "revoked where it was made"
    );
    delete_provider_config(&client, &config).await;
}
