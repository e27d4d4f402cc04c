//! Shared end-to-end environment: one fake cloud and one operator process
//! against the test control plane, ProviderConfigs for the three providers,
//! and helpers to wait on conditions and inspect the fake cloud.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::OnceLock,
    time::{Duration, Instant},
};

use k8s_openapi::api::core::v1::Namespace;
use kube::{
    Api, Client,
    api::{DeleteParams, Patch, PatchParams, PostParams},
};
use secgroup_operator::api::{SecurityGroupRule, conditions};
use serde_json::{Value, json};

pub const ACCESS_KEY: &str = "e2e-access-key";
pub const SECRET_KEY: &str = "e2e-secret-key-do-not-log";
pub const SECRET_NAMESPACE: &str = "secgroup-e2e-system";

/// The three providers, as (ProviderConfig name, fake cloud provider name, region).
pub const PROVIDERS: [(&str, &str, &str); 3] = [
    ("e2e-alibaba", "alibaba", "cn-hangzhou"),
    ("e2e-apsara", "apsara", "cn-qingdao-env17-d01"),
    ("e2e-baidu", "baidu", "bj"),
];

/// Rules carrying this label are left to operators a test starts itself;
/// the shared operator watches every other rule.
pub const SHARD_LABEL: &str = "secgroup-e2e/shard";

pub struct Env {
    pub fakecloud: String,
    /// `host:port` of the shared operator's /metrics, /healthz and /readyz.
    pub operator_metrics: String,
    _processes: Vec<Tied>,
}

/// A process tied to this test process: a shell holds it and stops it when
/// its stdin, a pipe from here, closes, which happens however this process
/// ends. (A `static` is never dropped, so `Drop` cannot do it.)
pub struct Tied(Child);

impl Tied {
    /// The pid of the program the shell holds.
    pub fn program_pid(&self) -> u32 {
        let shell = self.0.id();
        let children = std::fs::read_to_string(format!("/proc/{shell}/task/{shell}/children"))
            .expect("/proc children of the holding shell");
        children
            .split_whitespace()
            .next()
            .and_then(|pid| pid.parse().ok())
            .unwrap_or_else(|| panic!("the shell {shell} holds no program"))
    }

    /// Sends `signal` (`KILL`, `TERM`) to the program.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.program_pid().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal} failed");
    }
}

fn spawn_tied(
    program: &Path,
    args: &[&str],
    envs: &[(&str, &str)],
    stdout: Stdio,
    stderr: Stdio,
) -> Tied {
    let script = r#""$@" </dev/null & child=$!; read -r _; kill "$child" 2>/dev/null; wait"#;
    let child = Command::new("bash")
        .args(["-c", script, "tied"])
        .arg(program)
        .args(args)
        .envs(envs.iter().copied())
        .stdin(Stdio::piped())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", program.display()));
    Tied(child)
}

/// The suite runs only against the test cluster; anything else is a mistake.
fn require_cluster() {
    assert!(
        std::env::var_os("SECGROUP_E2E").is_some() && std::env::var_os("KUBECONFIG").is_some(),
        "the end-to-end suite needs the test cluster: run `make e2e` \
         (or `eval \"$(tests/cluster/testcluster.sh up)\"` first)"
    );
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).join("target"),
            PathBuf::from,
        )
        .join("debug")
}

fn log_dir() -> PathBuf {
    let dir = std::env::var_os("SECGROUP_E2E_LOGS").map_or_else(
        || std::env::temp_dir().join("secgroup-e2e-logs"),
        PathBuf::from,
    );
    std::fs::create_dir_all(&dir).expect("log dir");
    dir
}

fn kubectl(args: &[&str], stdin: Option<&str>) {
    let mut child = Command::new("kubectl")
        .args(args)
        .stdin(Stdio::piped())
        .spawn()
        .expect("kubectl on PATH");
    if let Some(input) = stdin {
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write");
    }
    let status = child.wait().expect("kubectl runs");
    assert!(status.success(), "kubectl {args:?} failed");
}

/// A fake cloud of its own, accepting the shared test credentials; returns
/// it and its base URL.
pub fn start_fakecloud(log: &str) -> (Tied, String) {
    let mut fake = spawn_tied(
        &target_dir().join("secgroup-fakecloud"),
        &[
            "--listen",
            "127.0.0.1:0",
            "--access-key",
            &format!("{ACCESS_KEY}:{SECRET_KEY}"),
        ],
        &[],
        Stdio::piped(),
        std::fs::File::create(log_dir().join(log))
            .expect("log")
            .into(),
    );
    let mut line = String::new();
    BufReader::new(fake.0.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("listening line");
    let url = line.trim().trim_start_matches("listening on ").to_owned();
    assert!(
        url.starts_with("http://127.0.0.1:"),
        "unexpected fake cloud banner {line:?}"
    );
    (fake, url)
}

/// An operator process (`secgroup-operator run` plus `args`), logging to `log`.
pub fn start_operator(args: &[&str], envs: &[(&str, &str)], log: &str) -> Tied {
    let mut all = vec![
        "run",
        "--secret-namespace",
        SECRET_NAMESPACE,
        "--resync-interval",
        "5",
    ];
    all.extend_from_slice(args);
    // A replica that loses its lease exits with an error by design: no backtrace.
    let mut all_envs = vec![
        ("RUST_LOG", "info,secgroup_operator=debug"),
        ("RUST_LIB_BACKTRACE", "0"),
    ];
    all_envs.extend_from_slice(envs);
    spawn_tied(
        &target_dir().join("secgroup-operator"),
        &all,
        &all_envs,
        std::fs::File::create(log_dir().join(log))
            .expect("log")
            .into(),
        Stdio::inherit(),
    )
}

/// A loopback address nothing listens on right now.
pub fn free_addr() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").to_string()
}

/// A ProviderConfig using the shared credentials Secret.
pub fn provider_config(name: &str, provider: &str, region: &str, endpoint: &str) -> String {
    let kind = if provider == "apsara" {
        "apsarastack"
    } else {
        provider
    };
    let extra = if provider == "apsara" {
        "  signatureVersion: v2\n  apsara: {organizationId: \"1\", resourceGroupId: \"2\"}\n"
    } else {
        ""
    };
    format!(
        "apiVersion: secgroup.dev/v1alpha1\nkind: ProviderConfig\nmetadata: {{name: {name}}}\nspec:\n  type: {kind}\n  endpoint: {endpoint}\n  region: {region}\n  credentialsSecretRef: {{namespace: {SECRET_NAMESPACE}, name: cloud-credentials}}\n  rateLimit: {{qps: 200, burst: 50}}\n  allowedNamespaces: {{matchExpressions: [{{key: secgroup-e2e/denied, operator: DoesNotExist}}]}}\n{extra}"
    )
}

/// Applies manifests with kubectl.
pub fn kubectl_apply(manifests: &str) {
    kubectl(&["apply", "--server-side", "-f", "-"], Some(manifests));
}

/// Starts (once per test binary) the fake cloud and the operator, installs
/// the CRDs, the credentials Secret and one ProviderConfig per provider.
pub fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        require_cluster();
        let (fake, fakecloud) = start_fakecloud("fakecloud.log");
        let crds = Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
        kubectl(&["apply", "--server-side", "-f", crds.to_str().expect("utf-8")], None);
        kubectl(&["wait", "--for=condition=Established", "crd", "--all", "--timeout=60s"], None);
        let mut setup = format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {SECRET_NAMESPACE}}}\n---\n\
             apiVersion: v1\nkind: Secret\nmetadata: {{name: cloud-credentials, namespace: {SECRET_NAMESPACE}}}\n\
             stringData: {{accessKeyId: {ACCESS_KEY}, accessKeySecret: {SECRET_KEY}}}\n"
        );
        for (name, provider, region) in PROVIDERS {
            setup.push_str("---\n");
            setup.push_str(&provider_config(name, provider, region, &fakecloud));
        }
        kubectl_apply(&setup);

        let operator_metrics = free_addr();
        let selector = format!("!{SHARD_LABEL}");
        let operator = start_operator(
            &["--metrics-addr", &operator_metrics, "--label-selector", &selector],
            &[],
            "operator.log",
        );
        Env { fakecloud, operator_metrics, _processes: vec![operator, fake] }
    })
}

/// The text of `/metrics` (or another path) at `addr`.
pub async fn scrape(addr: &str, path: &str) -> Result<(u16, String), String> {
    let response = http()
        .get(format!("http://{addr}{path}"))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    Ok((status, response.text().await.map_err(|e| e.to_string())?))
}

/// The sum of every sample whose line starts with `prefix`.
pub fn sample_sum(metrics: &str, prefix: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A fresh namespace for one test, with a random suffix.
pub async fn namespace(client: &Client, prefix: &str, labels: Value) -> String {
    let name = format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let ns: Namespace =
        serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).expect("ns");
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
    name
}

/// Creates a security group in the shared fake cloud.
pub async fn create_group(provider: &str, region: &str, id: &str) {
    create_group_at(&env().fakecloud, provider, region, id).await;
}

/// Creates a security group in the fake cloud at `fakecloud`.
pub async fn create_group_at(fakecloud: &str, provider: &str, region: &str, id: &str) {
    let res = http()
        .post(format!("{fakecloud}/_fake/groups"))
        .json(&json!({"provider": provider, "region": region, "id": id}))
        .send()
        .await
        .expect("fake cloud reachable");
    assert!(
        res.status().is_success(),
        "creating group {id}: {}",
        res.status()
    );
}

/// Rules the fake cloud holds in a group.
pub async fn cloud_rules(provider: &str, region: &str, group: &str) -> Vec<Value> {
    http()
        .get(format!("{}/_fake/rules", env().fakecloud))
        .query(&[("provider", provider), ("region", region), ("group", group)])
        .send()
        .await
        .expect("fake cloud reachable")
        .json()
        .await
        .expect("rules JSON")
}

/// Calls the fake cloud saw for a group.
pub async fn cloud_calls(group: &str) -> Vec<Value> {
    let calls: Vec<Value> = http()
        .get(format!("{}/_fake/calls", env().fakecloud))
        .send()
        .await
        .expect("fake cloud reachable")
        .json()
        .await
        .expect("calls JSON");
    calls.into_iter().filter(|c| c["group"] == group).collect()
}

pub async fn set_faults(faults: Value) {
    set_faults_at(&env().fakecloud, faults).await;
}

pub async fn set_faults_at(fakecloud: &str, faults: Value) {
    let res = http()
        .put(format!("{fakecloud}/_fake/faults"))
        .json(&faults)
        .send()
        .await
        .expect("reachable");
    assert!(
        res.status().is_success(),
        "setting faults: {} {}",
        res.status(),
        res.text().await.unwrap_or_default()
    );
}

fn http() -> reqwest::Client {
    reqwest::Client::new()
}

pub fn rule_manifest(name: &str, config: &str, group: &str, rule: Value) -> Value {
    json!({
        "apiVersion": "secgroup.dev/v1alpha1",
        "kind": "SecurityGroupRule",
        "metadata": {"name": name},
        "spec": {"providerConfigRef": {"name": config}, "securityGroupId": group, "rule": rule}
    })
}

pub async fn apply(api: &Api<SecurityGroupRule>, name: &str, manifest: &Value) {
    api.patch(
        name,
        &PatchParams::apply("e2e").force(),
        &Patch::Apply(manifest),
    )
    .await
    .unwrap_or_else(|e| panic!("applying {name}: {e}"));
}

pub async fn merge(api: &Api<SecurityGroupRule>, name: &str, patch: Value) {
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap_or_else(|e| panic!("patching {name}: {e}"));
}

pub async fn delete(api: &Api<SecurityGroupRule>, name: &str) {
    api.delete(name, &DeleteParams::default())
        .await
        .unwrap_or_else(|e| panic!("deleting {name}: {e}"));
}

/// Polls until `check` returns `Some`, failing after `timeout` with the last state.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    while Instant::now() < deadline {
        match check().await {
            Ok(v) => return v,
            Err(state) => last = state,
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("timed out after {timeout:?} waiting for {what}; last state: {last}");
}

/// Waits until the rule's condition `type_` has `status` at the current generation.
pub async fn condition(
    api: &Api<SecurityGroupRule>,
    name: &str,
    type_: &str,
    status: &str,
) -> SecurityGroupRule {
    eventually(
        &format!("{name} {type_}={status}"),
        Duration::from_secs(60),
        || async {
            let rule = api.get(name).await.map_err(|e| e.to_string())?;
            let st = rule.status.clone().unwrap_or_default();
            let c = conditions::find(&st.conditions, type_);
            match c {
                Some(c)
                    if c.status == status && c.observed_generation == rule.metadata.generation =>
                {
                    Ok(rule)
                }
                _ => Err(format!("{:?}", st.conditions)),
            }
        },
    )
    .await
}

/// Waits until the object is gone.
pub async fn gone(api: &Api<SecurityGroupRule>, name: &str) {
    eventually(
        &format!("{name} deleted"),
        Duration::from_secs(60),
        || async {
            match api.get_opt(name).await {
                Ok(None) => Ok(()),
                Ok(Some(r)) => Err(format!(
                    "still there, finalizers {:?}",
                    r.metadata.finalizers
                )),
                Err(e) => Err(e.to_string()),
            }
        },
    )
    .await;
}
