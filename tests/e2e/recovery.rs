//! Recovery: credentials that appear late, a cloud rule that vanished
//! before its object was deleted, and an operator killed in the middle of
//! a revoke.

use kube::Api;
use secgroup_operator::api::{
    SecurityGroupRule,
    conditions::{self, reasons},
    rule::{OperationResult, ProviderAction},
};
use serde_json::{Value, json};

use crate::support::*;

fn ssh_from_office() -> Value {
    json!({"direction": "Ingress", "protocol": "TCP", "ports": {"from": 22, "to": 22},
           "peer": {"cidr": "192.168.10.0/24"}})
}

fn condition_of(rule: &SecurityGroupRule, type_: &str) -> conditions::Condition {
    let status = rule.status.as_ref().expect("status");
    conditions::find(&status.conditions, type_)
        .cloned()
        .unwrap_or_else(|| panic!("no {type_} condition in {:?}", status.conditions))
}

/// A ProviderConfig whose credentials Secret does not exist: the rule is
/// Stalled naming the Secret, and nothing is called. Creating the Secret
/// wakes the rule, which then converges.
#[tokio::test]
async fn missing_credentials_secret_stalls_until_it_is_created() {
    let (api, client) = setup("e2e-secret").await;
    let secret = format!("late-credentials-{}", suffix());
    let config = own_provider_config(&client, "e2e-late", "alibaba", &secret).await;
    let group = group_id("sg");
    create_group("alibaba", "cn-hangzhou", &group).await;
    apply(
        &api,
        "late",
        &rule_manifest("late", &config, &group, ssh_from_office()),
    )
    .await;

    let stalled = condition_of(&condition(&api, "late", "Stalled", "True").await, "Stalled");
    assert_eq!(stalled.reason, reasons::SECRET_NOT_FOUND);
    assert!(
        stalled
            .message
            .contains(&format!("{SECRET_NAMESPACE}/{secret}")),
        "the message names the Secret: {}",
        stalled.message
    );
    // The status write comes after the pass that decided not to call.
    assert!(
        cloud_calls(&group).await.is_empty(),
        "no provider call without credentials"
    );

    create_secret(&client, &secret).await;
    let ready = condition(&api, "late", "Ready", "True").await;
    assert_eq!(condition_of(&ready, "Ready").reason, reasons::AUTHORIZED);
    assert_eq!(cloud_rules("alibaba", "cn-hangzhou", &group).await.len(), 1);

    delete(&api, "late").await;
    gone(&api, "late").await;
    delete_provider_config(&client, &config).await;
    delete_secret(&client, &secret).await;
}

/// A finalizer of the test's own: it keeps a deleted object readable after
/// the operator has removed its finalizer.
const HOLD: &str = "secgroup-e2e/hold";

async fn release_hold(api: &Api<SecurityGroupRule>, name: &str) {
    let remaining: Vec<String> = api
        .get(name)
        .await
        .expect("get")
        .metadata
        .finalizers
        .unwrap_or_default()
        .into_iter()
        .filter(|f| f != HOLD)
        .collect();
    merge(api, name, json!({"metadata": {"finalizers": remaining}})).await;
}

/// Waits until only the test's own finalizer is left on a deleted object.
async fn operator_finalizer_removed(api: &Api<SecurityGroupRule>, name: &str) -> SecurityGroupRule {
    eventually(
        &format!("{name} released by the operator"),
        std::time::Duration::from_secs(60),
        || async {
            let rule = api.get(name).await.map_err(|e| e.to_string())?;
            match rule.metadata.finalizers.as_deref() {
                Some([only]) if only == HOLD => Ok(rule),
                other => Err(format!("finalizers {other:?}")),
            }
        },
    )
    .await
}

/// The cloud rule is deleted out of band; deleting the object then revokes
/// by id, the provider answers "not found", and that counts as success: the
/// finalizer goes and status records the revoke as AlreadyGone.
#[tokio::test]
async fn a_rule_already_gone_at_the_provider_is_revoked_successfully() {
    let (api, client) = setup("e2e-gone").await;
    // A config of its own: its drift checks would re-authorize the rule.
    let config = own_provider_config(&client, "e2e-gone", "alibaba", "cloud-credentials").await;
    let group = group_id("sg");
    create_group("alibaba", "cn-hangzhou", &group).await;
    let mut manifest = rule_manifest("gone", &config, &group, ssh_from_office());
    manifest["metadata"]["finalizers"] = json!([HOLD]);
    apply(&api, "gone", &manifest).await;
    let ready = condition(&api, "gone", "Ready", "True").await;
    let rule_id = ready
        .status
        .and_then(|s| s.rule_id)
        .expect("rule id learned");

    delete_cloud_rule("alibaba", "cn-hangzhou", &group, &rule_id).await;
    delete(&api, "gone").await;
    let released = operator_finalizer_removed(&api, "gone").await;
    let op = released
        .status
        .as_ref()
        .and_then(|s| s.last_operation.clone())
        .expect("last operation");
    assert_eq!(
        (op.action, op.result),
        (ProviderAction::Revoke, OperationResult::AlreadyGone)
    );
    assert_eq!(condition_of(&released, "Ready").reason, reasons::REVOKED);
    let revokes: Vec<Value> = cloud_calls(&group)
        .await
        .into_iter()
        .filter(|c| c["action"] == "RevokeSecurityGroup")
        .collect();
    assert_eq!(
        revokes.len(),
        1,
        "one revoke, not followed by another: {revokes:?}"
    );
    let first = &revokes[0];
    assert_eq!(
        (
            &first["parameters"]["SecurityGroupRuleId.1"],
            &first["code"],
            &first["effect"]
        ),
        (
            &json!(rule_id),
            &json!("InvalidSecurityGroupRuleId.NotFound"),
            &json!(false)
        ),
        "revoked by id, answered not found"
    );
    assert!(
        revokes.iter().all(|c| c["effect"] == false),
        "nothing was left to revoke: {revokes:?}"
    );

    release_hold(&api, "gone").await;
    gone(&api, "gone").await;
    delete_provider_config(&client, &config).await;
}

/// The operator is killed (SIGKILL) after the provider carried out the
/// revoke but before the answer arrived, so before the finalizer was
/// removed. Restarted, it checks the group before revoking, finds nothing
/// of the object's left, and removes the finalizer without a second revoke:
/// the token has one effect.
///
/// The rule carries OWN_OPERATOR_LABEL, so only this test's operator acts on it.
#[tokio::test]
async fn a_revoke_interrupted_by_a_crash_is_not_repeated_after_restart() {
    let (api, client) = setup("e2e-crash").await;
    let config = own_provider_config(&client, "e2e-crash", "alibaba", "cloud-credentials").await;
    let run = suffix();
    let selector = format!("{OWN_OPERATOR_LABEL}={run}");
    let operator = start_operator(
        &[
            "--metrics-addr",
            "127.0.0.1:0",
            "--label-selector",
            &selector,
        ],
        &[],
        "crash-operator-1.log",
    );
    let group = group_id("sg");
    create_group("alibaba", "cn-hangzhou", &group).await;
    let mut manifest = rule_manifest("crash", &config, &group, ssh_from_office());
    manifest["metadata"]["labels"] = json!({ OWN_OPERATOR_LABEL: run });
    apply(&api, "crash", &manifest).await;
    condition(&api, "crash", "Ready", "True").await;

    // The revoke is carried out, then its answer is held long enough to crash.
    set_group_faults(
        &group,
        &[json!({"provider": "alibaba", "action": "RevokeSecurityGroup", "holdResponseMs": 20000})],
    )
    .await;
    delete(&api, "crash").await;
    let revoke = eventually(
        "the revoke carried out",
        std::time::Duration::from_secs(30),
        || async {
            let calls = cloud_calls(&group).await;
            calls
                .into_iter()
                .find(|c| c["action"] == "RevokeSecurityGroup" && c["effect"] == true)
                .ok_or_else(|| "no revoke with an effect yet".to_owned())
        },
    )
    .await;
    operator.crash();
    set_group_faults(&group, &[]).await;
    assert!(
        cloud_rules("alibaba", "cn-hangzhou", &group)
            .await
            .is_empty()
    );
    let pending = api
        .get("crash")
        .await
        .expect("the object waits for its finalizer");
    assert!(
        holds_the_revoke_finalizer(&pending),
        "the crash came before the finalizer was removed"
    );

    let _restarted = start_operator(
        &[
            "--metrics-addr",
            "127.0.0.1:0",
            "--label-selector",
            &selector,
        ],
        &[],
        "crash-operator-2.log",
    );
    gone(&api, "crash").await;

    let token = revoke["clientToken"].as_str().expect("a ClientToken");
    let calls = cloud_calls(&group).await;
    let revokes: Vec<&Value> = calls
        .iter()
        .filter(|c| c["action"] == "RevokeSecurityGroup")
        .collect();
    let under_token: Vec<(&Value, &Value)> = revokes
        .iter()
        .filter(|c| c["clientToken"] == token)
        .map(|c| (&c["effect"], &c["replayed"]))
        .collect();
    assert_eq!(
        under_token,
        [(&json!(true), &json!(false))],
        "the revoke is not sent again after the restart: {revokes:?}"
    );
    assert_eq!(revokes.len(), 1, "no other revoke: {revokes:?}");
    let record = one_effect_per_token(&calls, token).await;
    assert_eq!(
        (record["calls"].as_u64(), record["effects"].as_u64()),
        (Some(1), Some(1))
    );
    let restart = calls
        .iter()
        .position(|c| c["clientToken"] == token)
        .expect("the revoke");
    assert!(
        calls[restart + 1..]
            .iter()
            .any(|c| c["action"] == "DescribeSecurityGroupAttribute"),
        "the restarted operator described the group: {calls:?}"
    );
    delete_provider_config(&client, &config).await;
}
