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
