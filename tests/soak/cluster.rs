//! The test control plane as the soak uses it: CRDs, namespaces, the
//! credentials Secret, ProviderConfigs, a watch cache of the rules, and the
//! API server restart.

use std::{
    fmt::Display,
    path::Path,
    process::{Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Event, Namespace, Secret};
use kube::{
    Api, Client,
    api::{ListParams, Patch, PatchParams},
    runtime::{
        WatchStreamExt,
        reflector::{self, ObjectRef, Store},
        watcher,
    },
};
use secgroup_operator::api::{ProviderConfig, SecurityGroupRule};
use secgroup_testkit::{
    manifests::{self, SecretRef, provider_config},
    with_input,
};
use serde_json::json;

use crate::workload::{ADMITTED_LABEL, PROVIDERS};

pub const RULE_NAMESPACE: &str = "soak";
pub const SECRET_NAMESPACE: &str = "soak-system";
const SECRET_NAME: &str = "cloud-credentials";
const MANAGER: &str = "soak";

pub struct Cluster {
    pub client: Client,
    pub rules: Api<SecurityGroupRule>,
    store: Store<SecurityGroupRule>,
}

/// Retries a Kubernetes call until it succeeds; the API server may be
/// restarting. Gives up after two minutes.
pub async fn retry<T, E: Display, Fut: Future<Output = Result<T, E>>>(
    what: &str,
    mut call: impl FnMut() -> Fut,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match call().await {
            Ok(value) => return value,
            Err(e) if Instant::now() < deadline => {
                crate::say(&format!("{what}: {e}; retrying"));
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => panic!("{what}: {e}"),
        }
    }
}

fn kubectl(args: &[&str]) {
    kubectl_with_input(args, "");
}

fn kubectl_with_input(args: &[&str], input: &str) {
    let out = with_input(
        Command::new("kubectl").args(args).stdout(Stdio::null()),
        input,
    );
    assert!(out.status.success(), "kubectl {args:?} failed");
}

impl Cluster {
    /// Installs the CRDs and namespaces and starts watching the rules.
    pub async fn connect() -> Self {
        let crds = Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
        kubectl(&[
            "apply",
            "--server-side",
            "-f",
            crds.to_str().expect("utf-8"),
        ]);
        kubectl(&[
            "wait",
            "--for=condition=Established",
            "crd",
            "--all",
            "--timeout=60s",
        ]);
        let admitted = json!({"matchLabels": {ADMITTED_LABEL: "true"}});
        let policy = json!({"apiVersion": "v1", "kind": "List",
                            "items": manifests::finalizer_policy("soak", &admitted)});
        kubectl_with_input(&["apply", "--server-side", "-f", "-"], &policy.to_string());
        let client = Client::try_default().await.expect("kubeconfig");
        let namespaces: Api<Namespace> = Api::all(client.clone());
        for name in [RULE_NAMESPACE, SECRET_NAMESPACE] {
            let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
            namespaces
                .patch(name, &PatchParams::apply(MANAGER), &Patch::Apply(&ns))
                .await
                .expect("namespace");
        }
        let rules: Api<SecurityGroupRule> = Api::namespaced(client.clone(), RULE_NAMESPACE);
        let (store, writer) = reflector::store();
        let watch =
            reflector::reflector(writer, watcher(rules.clone(), watcher::Config::default()))
                .default_backoff()
                .touched_objects();
        tokio::spawn(watch.for_each(|_| async {}));
        store.wait_until_ready().await.expect("rule cache");
        Self {
            client,
            rules,
            store,
        }
    }

    /// One ProviderConfig per provider, all pointing at the fake cloud,
    /// each with `rate` as its `rateLimit` (qps, burst).
    pub async fn install_providers(&self, fake_cloud: &str, rate: (u32, u32)) {
        let configs: Api<ProviderConfig> = Api::all(self.client.clone());
        for provider in &PROVIDERS {
            let secret = SecretRef {
                namespace: SECRET_NAMESPACE,
                name: SECRET_NAME,
            };
            let config = provider_config(
                provider.config,
                provider.fake,
                fake_cloud,
                provider.region,
                secret,
                rate,
            );
            let (params, patch) = (PatchParams::apply(MANAGER).force(), Patch::Apply(&config));
            retry(&format!("ProviderConfig {}", provider.config), || {
                configs.patch(provider.config, &params, &patch)
            })
            .await;
        }
    }

    /// Replaces the credentials Secret's keys.
    pub async fn set_credentials(&self, id: &str, secret: &str) {
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), SECRET_NAMESPACE);
        let manifest = json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": SECRET_NAME, "namespace": SECRET_NAMESPACE},
            "stringData": {"accessKeyId": id, "accessKeySecret": secret}});
        let params = PatchParams::apply(MANAGER).force();
        let patch = Patch::Apply(&manifest);
        retry("credentials Secret", || {
            secrets.patch(SECRET_NAME, &params, &patch)
        })
        .await;
    }

    /// The rule as the watch cache has it.
    pub fn get(&self, name: &str) -> Option<Arc<SecurityGroupRule>> {
        self.store.get(&ObjectRef::new(name).within(RULE_NAMESPACE))
    }

    /// Every rule in the watch cache.
    pub fn all(&self) -> Vec<Arc<SecurityGroupRule>> {
        self.store.state()
    }

    /// Notes and messages of every Event in the rules' namespace.
    pub async fn event_texts(&self) -> Vec<String> {
        let events: Api<Event> = Api::namespaced(self.client.clone(), RULE_NAMESPACE);
        let params = ListParams::default();
        let list = retry("events", || events.list(&params)).await;
        list.items.into_iter().filter_map(|e| e.message).collect()
    }

    /// Stops kube-apiserver for `down`, then starts it on the same port and etcd.
    pub fn restart_apiserver(down: Duration) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cluster/testcluster.sh");
        let status = Command::new(script)
            .args(["restart-apiserver", &down.as_secs().to_string()])
            .stdout(Stdio::null())
            .status()
            .expect("testcluster.sh runs");
        assert!(status.success(), "restart-apiserver failed");
    }
}
