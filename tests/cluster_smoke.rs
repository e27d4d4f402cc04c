//! Smoke test against the real control plane from `tests/cluster/testcluster.sh`.
//!
//! `make e2e` runs it with the cluster's environment (SECGROUP_E2E=1), and
//! then a missing cluster is a failure. Plain `cargo test` has no cluster:
//! this test then says, visibly, that it and the cluster suites (e2e, chart,
//! soak, which `cargo test` leaves out) were skipped. It refuses to run
//! against any cluster but the test cluster.

use std::io::Write;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams};
use kube::config::Kubeconfig;

/// The context name that `testcluster.sh` writes into its kubeconfig.
const TEST_CONTEXT: &str = "testcluster";

fn require_test_cluster() {
    let context = Kubeconfig::from_env()
        .ok()
        .flatten()
        .and_then(|k| k.current_context);
    assert_eq!(
        context.as_deref(),
        Some(TEST_CONTEXT),
        "KUBECONFIG must name the test cluster: run `make e2e`"
    );
}

#[tokio::test]
async fn lists_namespaces_of_the_test_cluster() -> anyhow::Result<()> {
    if std::env::var_os("SECGROUP_E2E").is_none() {
        // Straight to stderr: the harness captures the print macros of passing tests.
        let _ = writeln!(
            std::io::stderr(),
            "skipped: no test cluster, so neither this smoke test nor the e2e, chart and soak suites ran; `make e2e` runs them"
        );
        return Ok(());
    }
    require_test_cluster();
    let client = kube::Client::try_default().await?;

    let version = client.apiserver_version().await?;
    eprintln!("test cluster: Kubernetes {}", version.git_version);
    assert_eq!(version.major, "1", "server version {version:?}");
    assert!(
        version.git_version.starts_with("v1."),
        "server reports an unstamped version: {}",
        version.git_version
    );

    let namespaces = Api::<Namespace>::all(client)
        .list(&ListParams::default())
        .await?;
    let names: Vec<String> = namespaces
        .items
        .iter()
        .filter_map(|ns| ns.metadata.name.clone())
        .collect();
    eprintln!("test cluster namespaces: {names:?}");
    for expected in ["default", "kube-system", "kube-public"] {
        assert!(
            names.iter().any(|n| n == expected),
            "namespace {expected} missing from {names:?}"
        );
    }
    Ok(())
}
