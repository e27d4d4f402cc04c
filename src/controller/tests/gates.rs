//! The gates before any provider call: pause, observe-only, policy.

use serde_json::json;

use super::*;

fn with_policies(policies: Value) -> ProviderConfig {
    let mut c = config(None);
    c.spec.policies = Some(serde_json::from_value(policies).expect("valid policies"));
    c
}

fn paused() -> Value {
    json!({"metadata": {"annotations": {"secgroup.dev/paused": "true"}}})
}

#[tokio::test]
async fn a_paused_rule_makes_no_call_and_says_so() {
    let provider = ProviderDouble::answering(vec![]);
    let out = reconcile_with(rule(paused()), &provider, config(None)).await;
    assert!(matches!(out.result, Ok(ref a) if *a == Action::await_change()));
    assert_eq!(provider.calls(), vec![]);
    let (stalled, reason, message) = out.condition("Stalled");
    assert_eq!((stalled.as_str(), reason.as_str()), ("True", "Paused"));
    assert!(message.contains("secgroup.dev/paused"), "{message}");

    // Any other value does not pause.
    let other = ProviderDouble::answering(vec![]);
    let not = json!({"metadata": {"annotations": {"secgroup.dev/paused": "false"}}});
    reconcile_with(rule(not), &other, config(None)).await;
    assert!(matches!(
        other.calls().first(),
        Some(Call::Authorize { .. })
    ));
}

#[tokio::test]
async fn a_paused_deletion_waits_with_the_finalizer() {
    let provider = ProviderDouble::answering(vec![]);
    let mut extra = authorized_status();
    merge(&mut extra, deleting());
    merge(&mut extra, paused());
    let out = reconcile_with(rule(extra), &provider, config(None)).await;
    assert!(out.result.is_err(), "the finalizer stays");
    assert_eq!(provider.calls(), vec![]);
    assert!(out.finalizer_patches().is_empty());
    let (_, reason, message) = out.condition("Stalled");
    assert_eq!(reason, "Paused");
    assert!(message.contains("deletion waits"), "{message}");
}

#[tokio::test]
async fn an_observed_rule_only_describes_and_reports_what_it_found() {
    let provider = ProviderDouble::answering(vec![]);
    let observe = json!({"spec": {"managementPolicy": "Observe"}});
    let out = reconcile_with(rule(observe.clone()), &provider, config(None)).await;
    assert!(out.result.is_ok());
    assert_eq!(provider.calls(), vec![Call::Describe]);
    let (stalled, reason, message) = out.condition("Stalled");
    assert_eq!((stalled.as_str(), reason.as_str()), ("True", "NotObserved"));
    assert!(message.contains("does not create it"), "{message}");
    assert_eq!(out.last_status()["authorizing"], Value::Null);

    // Deleting an observed rule leaves the cloud rule alone.
    let gone = ProviderDouble::answering(vec![]);
    let mut extra = observe;
    merge(&mut extra, deleting());
    let out = reconcile_with(rule(extra), &gone, config(None)).await;
    assert!(out.result.is_ok());
    assert_eq!(gone.calls(), vec![]);
    assert_eq!(out.finalizer_patches().len(), 1);
}

#[tokio::test]
async fn a_rule_breaking_the_policy_is_stalled_before_any_call() {
    let provider = ProviderDouble::answering(vec![]);
    let policies = json!([{"name": "web", "namespaceSelector": {"matchLabels": {"tier": "web"}}}]);
    let open = json!({"spec": {"rule": {"peer": {"cidr": "0.0.0.0/0"}}}});
    let out = reconcile_with(rule(open), &provider, with_policies(policies.clone())).await;
    assert!(out.result.is_ok());
    assert_eq!(provider.calls(), vec![]);
    let (stalled, reason, message) = out.condition("Stalled");
    assert_eq!(
        (stalled.as_str(), reason.as_str()),
        ("True", "PolicyViolation")
    );
    assert!(message.contains("spec.rule.peer.cidr"), "{message}");
    assert!(
        message.contains("spec.policies[web].allowWorldOpen"),
        "{message}"
    );
    assert_eq!(out.event_reasons(), vec!["PolicyViolation"]);

    // The same rule within the policy is authorized.
    let allowed = ProviderDouble::answering(vec![]);
    reconcile_with(rule(json!({})), &allowed, with_policies(policies)).await;
    assert!(matches!(
        allowed.calls().first(),
        Some(Call::Authorize { .. })
    ));
}

#[tokio::test]
async fn a_namespace_no_policy_entry_selects_is_refused() {
    let provider = ProviderDouble::answering(vec![]);
    let policies = json!([{"name": "db", "namespaceSelector": {"matchLabels": {"tier": "db"}}}]);
    let out = reconcile_with(rule(json!({})), &provider, with_policies(policies)).await;
    assert_eq!(provider.calls(), vec![]);
    let (_, reason, message) = out.condition("Stalled");
    assert_eq!(reason, "PolicyViolation");
    assert!(message.contains("selects namespace team"), "{message}");
}

#[tokio::test]
async fn a_rule_applied_before_the_policy_forbade_it_is_reported_not_revoked() {
    let provider = ProviderDouble::answering(vec![]);
    let policies = json!([{"name": "web", "namespaceSelector": {},
                           "securityGroupIds": ["sg-other"]}]);
    let out = reconcile_with(
        rule(authorized_status()),
        &provider,
        with_policies(policies.clone()),
    )
    .await;
    assert_eq!(provider.calls(), vec![]);
    let (_, reason, message) = out.condition("Stalled");
    assert_eq!(reason, "PolicyViolation");
    assert!(message.contains("spec.securityGroupId"), "{message}");
    assert!(message.contains("does not revoke it"), "{message}");
    assert_eq!(out.last_status()["ruleId"], "sgr-1", "still recorded");

    // Deleting it revokes: a policy never refuses a revoke.
    let deleted = ProviderDouble::holding(vec![web_at_cloud("sgr-1", Some("uid-1"))], vec![]);
    let mut extra = authorized_status();
    merge(&mut extra, deleting());
    let out = reconcile_with(rule(extra), &deleted, with_policies(policies)).await;
    assert!(out.result.is_ok());
    assert!(matches!(
        deleted.calls().as_slice(),
        [Call::Describe, Call::RevokeById { .. }]
    ));
}
