//! Smoke test against the real control plane from `tests/cluster/testcluster.sh`.
//!
//! `make e2e` runs it with the cluster's environment; `cargo test` alone
//! leaves this target out. It refuses to run against any cluster but the
//! test cluster.

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
