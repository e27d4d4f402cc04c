//! The system under test: the fake cloud and the operator as child processes
//! (the build profile the harness itself was built with), the CRDs, the
//! credentials Secret and two ProviderConfigs on the test control plane.

use std::{path::PathBuf, time::Duration};

use anyhow::{Context as _, bail};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{
    Api, Client,
    api::{DynamicObject, Patch, PatchParams},
    core::{ApiResource, GroupVersionKind},
    runtime::wait::{await_condition, conditions},
};
use secgroup_testkit::{
    FakeCloud, LogDir, Output, Tied, binary,
    manifests::{self, SecretRef},
    net,
};
use serde_json::{Value, json};

pub const ACCESS_KEY: &str = "bench-access-key";
pub const SECRET_KEY: &str = "bench-secret-key";
pub const SECRET_NAMESPACE: &str = "secgroup-bench-system";
pub const REGION: &str = "cn-hangzhou";
/// Rules created and deleted in bulk; its rate limit changes between phases.
pub const BULK_CONFIG: &str = "bench-bulk";
/// Rules left idle; drift-checked at the operator's --resync-interval.
pub const IDLE_CONFIG: &str = "bench-idle";
/// Rules with this label set to "true" are invisible to the operator: they
/// measure what the API server does alone.
pub const UNWATCHED_LABEL: &str = "secgroup-bench/unwatched";
/// Rate limit that never holds a call back: the provider is "unthrottled".
pub const UNTHROTTLED: (u32, u32) = (10_000, 10_000);
const MANAGER: &str = "secgroup-bench";

pub struct Env {
    pub client: Client,
    pub fakecloud: String,
    /// The fake cloud's and the operator's logs.
    pub logs: LogDir,
    _fake: FakeCloud,
    pub operator: Tied,
}

/// The operator measured: `BENCH_OPERATOR_BIN`, so that another build (say
/// a release binary of an earlier commit) runs under this harness, else
/// this checkout's build.
pub fn operator_binary() -> PathBuf {
    std::env::var_os("BENCH_OPERATOR_BIN")
        .map_or_else(|| binary("secgroup-operator"), PathBuf::from)
}

/// Whether the chart's finalizer policy adds the operator's finalizer to
/// rules as they are created, as an installed chart does where the API
/// server serves it; `BENCH_FINALIZER_POLICY=off` leaves the operator to
/// write it itself.
pub fn finalizer_policy() -> bool {
    std::env::var("BENCH_FINALIZER_POLICY").map_or(true, |v| v != "off")
}

fn start_operator(resync: Duration, extra: &str, logs: &LogDir) -> (Tied, String) {
    let health = net::free_addr();
    let path = operator_binary();
    let resync = resync.as_secs().to_string();
    let selector = format!("{UNWATCHED_LABEL}!=true");
    let mut args = vec!["run", "--secret-namespace", SECRET_NAMESPACE];
    args.extend(["--metrics-addr", &health, "--resync-interval", &resync]);
    args.extend(["--label-selector", &selector]);
    args.extend(extra.split_whitespace());
    let log = std::env::var("BENCH_OPERATOR_LOG").unwrap_or_else(|_| "info".into());
    let operator = Tied::spawn(
        &path,
        &args,
        &[("RUST_LOG", &log)],
        Output::Log(logs.file("operator.log")),
        Output::Log(logs.file("operator.err")),
    );
    (operator, health)
}

/// Server-side applies one object given as JSON (apiVersion, kind, metadata.name, ...).
pub async fn apply(client: &Client, object: &Value) -> anyhow::Result<()> {
    let text = |path: &str| {
        object
            .pointer(path)
            .and_then(Value::as_str)
            .unwrap_or_default()
    };
    let (group, version) = match text("/apiVersion").split_once('/') {
        Some((g, v)) => (g.to_owned(), v.to_owned()),
        None => (String::new(), text("/apiVersion").to_owned()),
    };
    let kind = text("/kind");
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(&group, &version, kind));
    let api: Api<DynamicObject> = match object
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
    {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    let name = text("/metadata/name");
    api.patch(
        name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(object),
    )
    .await
    .with_context(|| format!("applying {kind} {name}"))?;
    Ok(())
}

async fn install_crds(client: &Client) -> anyhow::Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for (_, yaml) in secgroup_operator::crds::documents()? {
        let crd: CustomResourceDefinition = serde_yaml::from_str(&yaml)?;
        let name = crd.metadata.name.clone().unwrap_or_default();
        apply(client, &serde_json::to_value(&crd)?).await?;
        tokio::time::timeout(
            Duration::from_secs(60),
            await_condition(api.clone(), &name, conditions::is_crd_established()),
        )
        .await
        .with_context(|| format!("CRD {name} not established"))??;
    }
    Ok(())
}

pub fn namespace(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
}

/// A ProviderConfig for the fake cloud's Alibaba API.
pub fn provider_config(
    name: &str,
    fakecloud: &str,
    rate: (u32, u32),
    resync_seconds: Option<u32>,
) -> Value {
    let secret = SecretRef {
        namespace: SECRET_NAMESPACE,
        name: "cloud-credentials",
    };
    let mut config = manifests::provider_config(name, "alibaba", fakecloud, REGION, secret, rate);
    if let Some(secs) = resync_seconds {
        config["spec"]["defaults"] = json!({"resyncIntervalSeconds": secs});
    }
    config
}

impl Env {
    /// Installs the CRDs and credentials, starts the fake cloud and the
    /// operator, and waits until the operator's caches have synced.
    pub async fn start(resync: Duration, operator_args: &str) -> anyhow::Result<Self> {
        let client = Client::try_default()
            .await
            .context("connecting to the test control plane (KUBECONFIG)")?;
        install_crds(&client).await?;
        if finalizer_policy() {
            // The rules the operator watches (see `start_operator`).
            let watched = json!({"matchExpressions": [
                {"key": UNWATCHED_LABEL, "operator": "NotIn", "values": ["true"]}
            ]});
            for object in manifests::finalizer_policy("bench", &watched) {
                apply(&client, &object).await?;
            }
        }
        let logs = LogDir::new("bench", "BENCH_LOGS");
        let fake = FakeCloud::start(
            &format!("{ACCESS_KEY}:{SECRET_KEY}"),
            &[],
            &[],
            &logs.file("fakecloud.log"),
        );
        let fakecloud = fake.url.clone();
        apply(&client, &namespace(SECRET_NAMESPACE)).await?;
        apply(
            &client,
            &json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "cloud-credentials", "namespace": SECRET_NAMESPACE},
                "stringData": {"accessKeyId": ACCESS_KEY, "accessKeySecret": SECRET_KEY},
            }),
        )
        .await?;
        // The bulk rules are never drift-checked while measured (the longest
        // interval allowed); the idle ones follow --resync-interval.
        apply(
            &client,
            &provider_config(BULK_CONFIG, &fakecloud, UNTHROTTLED, Some(86_400)),
        )
        .await?;
        apply(
            &client,
            &provider_config(IDLE_CONFIG, &fakecloud, UNTHROTTLED, None),
        )
        .await?;
        let (operator, health) = start_operator(resync, operator_args, &logs);
        if !net::ready(&health, Duration::from_secs(60)).await {
            let mut logs = logs;
            bail!(
                "the operator did not become ready in 60 s (see {})",
                logs.keep().display()
            );
        }
        Ok(Self {
            client,
            fakecloud,
            logs,
            _fake: fake,
            operator,
        })
    }
}
