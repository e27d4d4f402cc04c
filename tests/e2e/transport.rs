//! How the operator reaches a provider: plain HTTP only on request, shown
//! on the ProviderConfig's status.

use std::time::Duration;

use kube::{
    Api, Client,
    api::{Patch, PatchParams, PostParams},
};
use secgroup_operator::api::{ProviderConfig, SecurityGroupRule, conditions};
use serde_json::{Value, json};

use crate::support::*;

/// The ProviderConfig's `InsecureEndpoint` condition once it is `want`
/// (`None`: absent), with every condition type present.
async fn insecure_endpoint(
    api: &Api<ProviderConfig>,
    name: &str,
    want: Option<&str>,
) -> Vec<String> {
    eventually(
        &format!("{name} InsecureEndpoint {want:?}"),
        Duration::from_secs(30),
        || async {
            let config = api.get(name).await.map_err(|e| e.to_string())?;
            let found = config.status.clone().unwrap_or_default().conditions;
            let status = conditions::find(&found, "InsecureEndpoint").map(|c| c.status.as_str());
            if status == want {
                Ok(found.iter().map(|c| c.type_.clone()).collect())
            } else {
                Err(format!("{found:?}"))
            }
        },
    )
    .await
}

#[tokio::test]
async fn plain_http_shows_on_the_provider_config_until_https_replaces_it() {
    env();
    let client = Client::try_default().await.expect("kubeconfig");
    let api: Api<ProviderConfig> = Api::all(client.clone());
    let name = own_provider_config(&client, "e2e-insecure", "alibaba", "cloud-credentials").await;
    insecure_endpoint(&api, &name, Some("True")).await;

    // Another writer's condition on the same status is left in place.
    let other = json!({
        "apiVersion": "secgroup.dev/v1alpha1", "kind": "ProviderConfig",
        "status": {"conditions": [{"type": "Tested", "status": "True", "reason": "ByTheSuite",
                                   "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
    });
    api.patch_status(
        &name,
        &PatchParams::apply("e2e").force(),
        &Patch::Apply(&other),
    )
    .await
    .expect("apply another condition");

    let https =
        json!({"spec": {"endpoint": "https://ecs.example.internal", "allowInsecureHttp": null}});
    api.patch(&name, &PatchParams::default(), &Patch::Merge(&https))
        .await
        .expect("move to https");
    let left = insecure_endpoint(&api, &name, None).await;
    assert_eq!(left, ["Tested"]);
    delete_provider_config(&client, &name).await;
}

/// A private CA, and a certificate it issued for the loopback address:
/// (CA PEM, certificate file, key file).
fn private_ca(dir: &std::path::Path) -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "secgroup e2e private CA");
    let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().expect("server key");
    let server = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .expect("server params")
        .signed_by(&key, &issuer)
        .expect("server certificate");
    let (cert_file, key_file) = (dir.join("tls.crt"), dir.join("tls.key"));
    std::fs::write(&cert_file, server.pem()).expect("write certificate");
    std::fs::write(&key_file, key.serialize_pem()).expect("write key");
    let path = |p: std::path::PathBuf| p.to_str().expect("utf-8").to_owned();
    (ca.pem(), path(cert_file), path(key_file))
}

/// A rule at an HTTPS fake cloud whose certificate a private CA issued:
/// trusted through spec.tls (inline, a Secret key or a ConfigMap key),
/// refused without it.
#[tokio::test]
async fn a_private_ca_is_trusted_inline_or_from_a_secret_or_config_map_and_only_then() {
    env();
    let dir = log_dir().join(format!("tls-{}", suffix()));
    std::fs::create_dir_all(&dir).expect("dir");
    let (ca, cert, key) = private_ca(&dir);
    let cloud = start_fakecloud_with(
        "fakecloud-tls.log",
        &[
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--auto-create-groups",
        ],
    );
    assert!(cloud.url.starts_with("https://"), "{}", cloud.url);

    let client = Client::try_default().await.expect("kubeconfig");
    let ca_secret = format!("e2e-ca-{}", suffix());
    kubectl_apply(
        &json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": ca_secret, "namespace": SECRET_NAMESPACE},
            "stringData": {"ca.crt": ca},
        })
        .to_string(),
    );
    kubectl_apply(
        &json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": ca_secret, "namespace": SECRET_NAMESPACE},
            "data": {"bundle.pem": ca},
        })
        .to_string(),
    );
    let configs: Api<ProviderConfig> = Api::all(client.clone());
    let mut names = Vec::new();
    for (what, tls) in [
        ("inline", json!({"caBundle": ca})),
        (
            "secret",
            json!({"caSecretRef": {"namespace": SECRET_NAMESPACE, "name": ca_secret}}),
        ),
        (
            "configmap",
            json!({"caConfigMapRef": {"namespace": SECRET_NAMESPACE, "name": ca_secret, "key": "bundle.pem"}}),
        ),
        ("none", Value::Null),
    ] {
        let name = format!("e2e-tls-{what}-{}", suffix());
        let mut manifest = config_manifest(&cloud.url, &name, "alibaba", "cloud-credentials");
        manifest["spec"]["allowInsecureHttp"] = Value::Null;
        manifest["spec"]["tls"] = tls;
        configs
            .create(
                &PostParams::default(),
                &serde_json::from_value(manifest).expect("config"),
            )
            .await
            .expect("create ProviderConfig");
        names.push(name);
    }

    let ns = namespace(&client, "e2e-tls", json!({})).await;
    let api: Api<SecurityGroupRule> = Api::namespaced(client.clone(), &ns);
    let rule = json!({"direction": "Ingress", "protocol": "TCP", "ports": {"from": 443, "to": 443},
                      "peer": {"cidr": "10.0.0.0/8"}});
    for (i, config) in names.iter().enumerate() {
        let name = format!("r{i}");
        apply(
            &api,
            &name,
            &rule_manifest(&name, config, &group_id("sg"), rule.clone()),
        )
        .await;
    }
    condition(&api, "r0", "Ready", "True").await;
    condition(&api, "r1", "Ready", "True").await;
    condition(&api, "r2", "Ready", "True").await;
    let refused = condition(&api, "r3", "Reconciling", "True").await;
    let status = refused.status.clone().unwrap_or_default();
    let message = &conditions::find(&status.conditions, "Reconciling")
        .expect("Reconciling")
        .message;
    assert!(message.to_lowercase().contains("certificate"), "{message}");
    assert_ne!(
        conditions::find(&status.conditions, "Ready").map(|c| c.status.as_str()),
        Some("True")
    );

    // The unreachable config's rule could never be revoked: orphan it.
    merge(&api, "r3", json!({"spec": {"deletionPolicy": "Orphan"}})).await;
    for name in ["r0", "r1", "r2", "r3"] {
        delete(&api, name).await;
        gone(&api, name).await;
    }
    for name in &names {
        delete_provider_config(&client, name).await;
    }
    drop(cloud);
}
