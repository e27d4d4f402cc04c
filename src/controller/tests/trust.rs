//! Certificate authorities a ProviderConfig trusts: its one source is read
//! from the caches and handed to the client, or the rule stalls naming it.

use k8s_openapi::api::core::v1::ConfigMap;
use serde_json::json;

use super::*;

/// Connects like `Connects`, keeping the CA certificates it was given.
struct Trusting {
    connects: Connects,
    roots: Mutex<Vec<Vec<u8>>>,
}

impl Connector for Trusting {
    fn connect(
        &self,
        config: &ProviderConfig,
        secret: &Secret,
        extra_roots: &[u8],
    ) -> Result<Connected, ConnectFailure> {
        self.roots.lock().expect("lock").push(extra_roots.to_vec());
        self.connects.connect(config, secret, extra_roots)
    }
}

fn with_ca_config_map(namespace: &str) -> ProviderConfig {
    let mut c = config(None);
    c.spec.tls = serde_json::from_value(json!({
        "caConfigMapRef": {"namespace": namespace, "name": "gateway-ca", "key": "bundle.pem"}
    }))
    .expect("valid tls");
    c
}

fn config_map(data: Value) -> ConfigMap {
    serde_json::from_value(json!({
        "metadata": {"name": "gateway-ca", "namespace": "system", "resourceVersion": "3"},
        "data": data,
    }))
    .expect("valid ConfigMap")
}

async fn reconcile_trusting(
    config: ProviderConfig,
    config_maps: Vec<ConfigMap>,
) -> (Outcome, Arc<ProviderDouble>, Vec<Vec<u8>>) {
    let provider = ProviderDouble::answering(vec![]);
    let connector = Arc::new(Trusting {
        connects: Connects(provider.clone()),
        roots: Mutex::default(),
    });
    let resolver = world_of(store_of(vec![config]), connector.clone()).reading_config_maps(
        HashMap::from([("system".to_owned(), store_of(config_maps))]),
    );
    let object = rule(json!({}));
    let (client, server) = api_server(object.clone());
    let result = reconcile(Arc::new(object), context(client, resolver)).await;
    let seen = server.await.expect("mock API server");
    let roots = connector.roots.lock().expect("lock").clone();
    (Outcome { result, seen }, provider, roots)
}

#[tokio::test]
async fn a_ca_bundle_is_read_from_its_config_map_key() {
    let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    let (out, provider, roots) = reconcile_trusting(
        with_ca_config_map("system"),
        vec![config_map(json!({"bundle.pem": pem, "other": "x"}))],
    )
    .await;
    assert!(out.result.is_ok(), "{:?}", out.result.err());
    assert_eq!(roots, vec![pem.as_bytes().to_vec()]);
    assert!(matches!(
        provider.calls().first(),
        Some(Call::Authorize { .. })
    ));
}

#[tokio::test]
async fn a_missing_ca_config_map_key_is_stalled_without_calls() {
    let (out, provider, roots) = reconcile_trusting(
        with_ca_config_map("system"),
        vec![config_map(json!({"ca.crt": "not the key named"}))],
    )
    .await;
    assert_eq!(provider.calls(), vec![]);
    assert!(roots.is_empty(), "no client without its CA");
    let (stalled, reason, message) = out.condition("Stalled");
    assert_eq!(
        (stalled.as_str(), reason.as_str()),
        ("True", "ProviderConfigInvalid")
    );
    assert!(
        message.contains("CA ConfigMap system/gateway-ca (spec.tls.caConfigMapRef)")
            && message.contains("bundle.pem"),
        "{message}"
    );
}

/// ConfigMaps are read where Secrets are, and nowhere else.
#[tokio::test]
async fn a_ca_config_map_elsewhere_is_refused_naming_where_to_move_it() {
    let (out, provider, _) = reconcile_trusting(with_ca_config_map("team"), vec![]).await;
    assert_eq!(provider.calls(), vec![]);
    let (_, reason, message) = out.condition("Stalled");
    assert_eq!(reason, "ProviderConfigInvalid");
    assert!(
        message.contains("team/gateway-ca") && message.contains("--secret-namespace"),
        "{message}"
    );
}
