//! The chart's optional ValidatingAdmissionPolicy: world-open ingress is
//! refused at admission in the namespaces its binding selects, and only
//! there. The rules are sent as dry runs: admission runs, nothing is stored.

use std::time::Duration;

use kube::{
    Api, Client,
    api::{Patch, PatchParams},
};
use secgroup_operator::api::SecurityGroupRule;
use serde_json::{Value, json};

use crate::{helm, install::ok, support::*};

/// Whether the API server admits a rule with `direction` and `peer`.
async fn admits(
    rules: &Api<SecurityGroupRule>,
    direction: &str,
    peer: Value,
) -> Result<(), String> {
    let rule = json!({"direction": direction, "protocol": "TCP",
                      "ports": {"from": 22, "to": 22}, "peer": peer});
    let params = PatchParams {
        dry_run: true,
        ..PatchParams::apply("chart").force()
    };
    let manifest = rule_manifest("ssh", "admission", "sg-admission", rule);
    rules
        .patch("ssh", &params, &Patch::Apply(&manifest))
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn the_admission_policy_refuses_world_open_ingress_in_labelled_namespaces_only() {
    require_cluster();
    let id = suffix();
    let system = format!("chart-vap-{id}");
    let release = format!("sgo-vap-{id}");
    helm::install(
        &release,
        &system,
        &["--take-ownership", "--set", "admissionPolicy.enabled=true"],
    );
    let client = Client::try_default().await.expect("kubeconfig");
    let labelled = json!({"secgroup.dev/refuse-world-open": "true"});
    let guarded: Api<SecurityGroupRule> = Api::namespaced(
        client.clone(),
        &namespace(&client, "chart-vap-guarded", labelled).await,
    );
    let open: Api<SecurityGroupRule> = Api::namespaced(
        client.clone(),
        &namespace(&client, "chart-vap-open", json!({})).await,
    );

    // The API server takes up a new policy within a few seconds.
    let refusal = eventually(
        "world-open IPv4 ingress refused",
        Duration::from_secs(30),
        || async {
            match admits(&guarded, "Ingress", json!({"cidr": "0.0.0.0/0"})).await {
                Ok(()) => Err("admitted".to_owned()),
                Err(e) => Ok(e),
            }
        },
    )
    .await;
    assert!(
        refusal.contains("spec.rule.peer") && refusal.contains("world-open"),
        "{refusal}"
    );
    let v6 = admits(&guarded, "Ingress", json!({"ipv6Cidr": "::/0"})).await;
    assert!(
        v6.as_ref().is_err_and(|e| e.contains("world-open")),
        "{v6:?}"
    );
    // A narrower peer, egress, and an unlabelled namespace pass.
    for (rules, direction, peer) in [
        (&guarded, "Ingress", json!({"cidr": "10.0.0.0/8"})),
        (&guarded, "Ingress", json!({"ipv6Cidr": "2001:db8::/32"})),
        (&guarded, "Egress", json!({"cidr": "0.0.0.0/0"})),
        (&open, "Ingress", json!({"cidr": "0.0.0.0/0"})),
    ] {
        let admitted = admits(rules, direction, peer.clone()).await;
        assert!(admitted.is_ok(), "{direction} {peer}: {admitted:?}");
    }

    ok("helm", &["uninstall", &release, "-n", &system]);
    eventually(
        "world-open ingress admitted once the policy is uninstalled",
        Duration::from_secs(30),
        || admits(&guarded, "Ingress", json!({"cidr": "0.0.0.0/0"})),
    )
    .await;
}

#[test]
fn the_admission_policy_is_off_by_default_and_binds_the_chosen_namespaces() {
    let objects = helm::template(&[]);
    assert!(helm::of_kind(&objects, "ValidatingAdmissionPolicy").is_empty());
    assert!(helm::of_kind(&objects, "ValidatingAdmissionPolicyBinding").is_empty());
    let objects = helm::template(&[
        "--set",
        "admissionPolicy.enabled=true",
        "--set-json",
        r#"admissionPolicy.namespaceSelector={"matchLabels":{"team":"edge"}}"#,
    ]);
    let policy = helm::one(&objects, "ValidatingAdmissionPolicy");
    let binding = helm::one(&objects, "ValidatingAdmissionPolicyBinding");
    assert_eq!(binding["spec"]["policyName"], policy["metadata"]["name"]);
    assert_eq!(
        helm::strings(&binding["spec"]["validationActions"]),
        ["Deny"]
    );
    let selector = &binding["spec"]["matchResources"]["namespaceSelector"];
    assert_eq!(helm::str_of(&selector["matchLabels"]["team"]), "edge");
}
