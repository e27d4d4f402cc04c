//! The system under test: the fake cloud and the operator as child processes
//! (the build profile the harness itself was built with), the CRDs, the
//! credentials Secret and two ProviderConfigs on the test control plane.

use std::{
    io::{BufRead, BufReader},
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{
    Api, Client,
    api::{DynamicObject, Patch, PatchParams},
    core::{ApiResource, GroupVersionKind},
    runtime::wait::{await_condition, conditions},
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

/// A child process, stopped when dropped.
pub struct Process {
    child: Child,
}

impl Process {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Env {
    pub client: Client,
    pub fakecloud: String,
    _fake: Process,
    pub operator: Process,
}

fn binary(name: &str) -> PathBuf {
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).join("target"),
            PathBuf::from,
        )
        .join(profile)
        .join(name)
}

pub fn log_dir() -> PathBuf {
    let dir = std::env::var_os("BENCH_LOGS").map_or_else(
        || std::env::temp_dir().join("secgroup-bench-logs"),
        PathBuf::from,
    );
    let _ = std::fs::create_dir_all(&dir);
    dir
}

fn log_file(name: &str) -> anyhow::Result<Stdio> {
    let path = log_dir().join(name);
    Ok(std::fs::File::create(&path)
        .with_context(|| format!("creating {}", path.display()))?
        .into())
}

fn start_fakecloud() -> anyhow::Result<(Process, String)> {
    let path = binary("secgroup-fakecloud");
    let mut child = Command::new(&path)
        .args(["--listen", "127.0.0.1:0", "--access-key"])
        .arg(format!("{ACCESS_KEY}:{SECRET_KEY}"))
        .stdout(Stdio::piped())
        .stderr(log_file("fakecloud.log")?)
        .spawn()
        .with_context(|| format!("starting {}", path.display()))?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().context("fake cloud stdout")?).read_line(&mut line)?;
    let process = Process { child };
    let url = line.trim().trim_start_matches("listening on ").to_owned();
    if !url.starts_with("http://127.0.0.1:") {
        bail!("unexpected fake cloud banner {line:?}");
    }
    Ok((process, url))
}

/// The operator measured: `BENCH_OPERATOR_BIN`, so that another build (say
/// a release binary of an earlier commit) runs under this harness, else
/// this checkout's build.
pub fn operator_binary() -> PathBuf {
    std::env::var_os("BENCH_OPERATOR_BIN")
        .map_or_else(|| binary("secgroup-operator"), PathBuf::from)
}

fn start_operator(resync: Duration, extra: &str) -> anyhow::Result<(Process, String)> {
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let health = format!("127.0.0.1:{port}");
    let path = operator_binary();
    let child = Command::new(&path)
        .args(["run", "--secret-namespace", SECRET_NAMESPACE])
        .args(["--metrics-addr", &health])
        .args(["--resync-interval", &resync.as_secs().to_string()])
        .args(["--label-selector", &format!("{UNWATCHED_LABEL}!=true")])
        .args(extra.split_whitespace())
        .env(
            "RUST_LOG",
            std::env::var("BENCH_OPERATOR_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stdout(log_file("operator.log")?)
        .stderr(log_file("operator.err")?)
        .spawn()
        .with_context(|| format!("starting {}", path.display()))?;
    Ok((Process { child }, format!("http://{health}")))
}

async fn wait_ready(health: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let http = reqwest::Client::new();
    while Instant::now() < deadline {
        if let Ok(r) = http.get(format!("{health}/readyz")).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!(
        "the operator did not become ready in 60 s (see {})",
        log_dir().display()
    )
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
    let mut spec = json!({
        "type": "alibaba",
        "endpoint": fakecloud,
        "allowInsecureHttp": true,
        "region": REGION,
        "credentialsSecretRef": {"namespace": SECRET_NAMESPACE, "name": "cloud-credentials"},
        "rateLimit": {"qps": rate.0, "burst": rate.1},
    });
    if let Some(secs) = resync_seconds {
        spec["defaults"] = json!({"resyncIntervalSeconds": secs});
    }
    json!({
        "apiVersion": "secgroup.dev/v1alpha1",
        "kind": "ProviderConfig",
        "metadata": {"name": name},
        "spec": spec,
    })
}

impl Env {
    /// Installs the CRDs and credentials, starts the fake cloud and the
    /// operator, and waits until the operator's caches have synced.
    pub async fn start(resync: Duration, operator_args: &str) -> anyhow::Result<Self> {
        let client = Client::try_default()
            .await
            .context("connecting to the test control plane (KUBECONFIG)")?;
        install_crds(&client).await?;
        let (fake, fakecloud) = start_fakecloud()?;
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
        let (operator, health) = start_operator(resync, operator_args)?;
        wait_ready(&health).await?;
        Ok(Self {
            client,
            fakecloud,
            _fake: fake,
            operator,
        })
    }
}
