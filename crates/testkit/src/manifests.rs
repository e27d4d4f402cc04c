//! Objects the suites create in the test control plane, as JSON manifests.

use serde_json::{Value, json};

/// Where a ProviderConfig finds its credentials: the Secret `name` in `namespace`.
#[derive(Clone, Copy, Debug)]
pub struct SecretRef<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
}

/// A ProviderConfig `name` for the fake cloud at `url` speaking as
/// `provider` (`alibaba`, `apsara` or `baidu`, the fake cloud's names) in
/// `region`, with a token bucket of `rate` (qps, burst). Plain HTTP is
/// allowed, and an Apsara config signs with V2 and names the organisation
/// and resource group the fake cloud expects.
pub fn provider_config(
    name: &str,
    provider: &str,
    url: &str,
    region: &str,
    secret: SecretRef<'_>,
    rate: (u32, u32),
) -> Value {
    let mut spec = json!({
        "type": if provider == "apsara" { "apsarastack" } else { provider },
        "endpoint": url,
        "allowInsecureHttp": true,
        "region": region,
        "credentialsSecretRef": {"namespace": secret.namespace, "name": secret.name},
        "rateLimit": {"qps": rate.0, "burst": rate.1},
    });
    if provider == "apsara" {
        spec["signatureVersion"] = json!("v2");
        spec["apsara"] = json!({"organizationId": "1", "resourceGroupId": "2"});
    }
    json!({
        "apiVersion": "secgroup.dev/v1alpha1",
        "kind": "ProviderConfig",
        "metadata": {"name": name},
        "spec": spec,
    })
}

/// The API a cluster must serve for the chart to render the finalizer policy.
pub const MUTATING_ADMISSION_POLICY: &str =
    "admissionregistration.k8s.io/v1/MutatingAdmissionPolicy";

/// The chart's MutatingAdmissionPolicy and its binding, as `helm template`
/// renders them for release `release`: they add the operator's finalizer to
/// each rule that `object_selector` (a LabelSelector) picks as it is created.
/// Needs helm on PATH (the test cluster's environment puts it there).
pub fn finalizer_policy(release: &str, object_selector: &Value) -> Vec<Value> {
    let chart =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../charts/secgroup-operator");
    let selector = format!("finalizerPolicy.objectSelector={object_selector}");
    let out = std::process::Command::new("helm")
        .args(["template", release])
        .arg(&chart)
        .args([
            "--api-versions",
            MUTATING_ADMISSION_POLICY,
            "--set-json",
            &selector,
        ])
        .args(["--show-only", "templates/finalizerpolicy.yaml"])
        .output()
        .expect("helm on PATH");
    assert!(
        out.status.success(),
        "helm template: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("UTF-8");
    let documents: Vec<Value> = serde_yaml::Deserializer::from_str(&text)
        .map(|document| serde::Deserialize::deserialize(document).expect("YAML"))
        .filter(|document: &Value| !document.is_null())
        .collect();
    assert_eq!(documents.len(), 2, "a policy and its binding: {text}");
    documents
}
