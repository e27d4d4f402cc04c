//! An uninstall never revokes the firewall: `helm uninstall` keeps the CRDs
//! and the rules, and deleting the rules' CRD abandons the cloud rules.
//! Here rather than in the end-to-end suite because deleting the CRD deletes
//! every rule of the cluster: the chart tests run one at a time.

use std::{path::Path, process::Command, time::Duration};

use kube::{Api, Client};
use secgroup_operator::api::SecurityGroupRule;
use serde_json::json;

use crate::{
    helm,
    install::{create_credentials, ok},
    support::*,
};

const CRD: &str = "securitygrouprules.secgroup.dev";

#[tokio::test]
async fn helm_uninstall_keeps_the_rules_and_deleting_the_crd_abandons_them() {
    require_cluster();
    let id = suffix();
    let system = format!("chart-uninstall-{id}");
    let release = format!("sgo-un-{id}");
    helm::install(&release, &system, &["--take-ownership"]);
    create_credentials(&system, "cloud-credentials");
    let cloud = start_fakecloud(&format!("uninstall-{id}-fakecloud.log"));
    let group = format!("sg-un{id}");
    create_group_at(&cloud.url, "alibaba", "cn-hangzhou", &group).await;
    let config = format!("uninstall-{id}");
    kubectl(
        &["apply", "-f", "-"],
        Some(&format!(
            "apiVersion: secgroup.dev/v1alpha1\nkind: ProviderConfig\nmetadata: {{name: {config}}}\n\
             spec: {{type: alibaba, region: cn-hangzhou, endpoint: \"{}\", allowInsecureHttp: true, credentialsSecretRef: {{namespace: {system}, name: cloud-credentials}}}}\n",
            cloud.url
        )),
    );
    // The operator as an admin runs it, watching every rule of the cluster.
    let metrics = free_addr();
    let log = format!("uninstall-{id}-operator.log");
    let _operator = spawn_operator(
        &[
            "run",
            "--secret-namespace",
            &system,
            "--metrics-addr",
            &metrics,
        ],
        &[("RUST_LOG", "info")],
        &log,
    );

    let client = Client::try_default().await.expect("kubeconfig");
    let rules_ns = namespace(&client, "chart-uninstall-rules", json!({})).await;
    let rules: Api<SecurityGroupRule> = Api::namespaced(client, &rules_ns);
    for (name, port) in [("ssh", 22), ("https", 443)] {
        let manifest = rule_manifest(
            name,
            &config,
            &group,
            json!({"direction": "Ingress", "protocol": "TCP", "ports": {"from": port, "to": port}, "peer": {"cidr": "10.0.0.0/8"}}),
        );
        apply(&rules, name, &manifest).await;
        condition(&rules, name, "Ready", "True").await;
    }
    let in_cloud = || cloud_rules_at(&cloud.url, "alibaba", "cn-hangzhou", &group);
    assert_eq!(in_cloud().await.len(), 2);

    // helm uninstall: the CRDs stay, and with them the rules and their finalizers.
    ok("helm", &["uninstall", &release, "-n", &system]);
    ok("kubectl", &["get", "crd", CRD]);
    for name in ["ssh", "https"] {
        let rule = rules
            .get(name)
            .await
            .expect("the rule survives helm uninstall");
        assert!(rule.metadata.deletion_timestamp.is_none());
    }

    // Deleting the CRD abandons the rules: it goes, the cloud rules stay.
    let deleted = Command::new("kubectl")
        .args(["delete", "crd", CRD, "--wait=true", "--timeout=60s"])
        .status()
        .expect("kubectl");
    let restore = || {
        let crds = Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
        kubectl(
            &[
                "apply",
                "--server-side",
                "--force-conflicts",
                "-f",
                crds.to_str().expect("utf-8"),
            ],
            None,
        );
        kubectl(
            &[
                "wait",
                "--for=condition=Established",
                "crd",
                "--all",
                "--timeout=60s",
            ],
            None,
        );
    };
    // Back before any assertion, for the tests that come after.
    restore();
    assert!(deleted.success(), "the CRD was not deleted within 60 s");
    assert_eq!(in_cloud().await.len(), 2, "the cloud rules stay");
    let calls = cloud_calls_at(&cloud.url, &group).await;
    assert!(
        calls.iter().all(|c| !c["action"]
            .as_str()
            .unwrap_or_default()
            .starts_with("Revoke")),
        "no revoke: {calls:?}"
    );
    let (_, text) = scrape(&metrics, "/metrics").await.expect("metrics");
    assert!(
        sample_sum(&text, "secgroup_rules_abandoned_total") >= 2.0,
        "both rules counted: {text}"
    );
    let logged = std::fs::read_to_string(log_dir().join(&log)).expect("log");
    assert!(
        logged.contains("releasing the rule without revoking it at the provider"),
        "{logged}"
    );
    // The guard saw the rules go and lets the config be deleted at once.
    eventually(
        "the ProviderConfig deleted",
        Duration::from_secs(30),
        || async {
            let out = Command::new("kubectl")
                .args(["delete", "providerconfig", &config, "--timeout=5s"])
                .status()
                .map_err(|e| e.to_string())?;
            if out.success() {
                Ok(())
            } else {
                Err("still held".to_owned())
            }
        },
    )
    .await;
}
