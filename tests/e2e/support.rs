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

pub struct Env {
    pub fakecloud: String,
    _processes: Vec<Tied>,
}

/// A process tied to this test process: a shell holds it and stops it when
/// its stdin, a pipe from here, closes, which happens however this process
/// ends. (A `static` is never dropped, so `Drop` cannot do it.)
pub struct Tied(Child);

fn spawn_tied(
    program: &Path,
    args: &[&str],
    envs: &[(&str, &str)],
    stdout: Stdio,
    stderr: Stdio,
) -> Tied {
    // SIGTERM, then SIGKILL after 10 s: a process that ignores SIGTERM would
    // otherwise outlive the tests and hold their output open. Said on
    // stderr, because a pod doing that is killed only after its grace period.
    let script = r#""$@" </dev/null & child=$!; read -r _; kill "$child" 2>/dev/null
        for _ in $(seq 100); do kill -0 "$child" 2>/dev/null || exit 0; sleep 0.1; done
        echo "tied: ${1##*/} still running 10 s after SIGTERM; killing it" >&2; kill -9 "$child""#;
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
pub fn require_cluster() {
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

pub fn log_dir() -> PathBuf {
    let dir = std::env::var_os("SECGROUP_E2E_LOGS").map_or_else(
        || std::env::temp_dir().join("secgroup-e2e-logs"),
        PathBuf::from,
    );
    std::fs::create_dir_all(&dir).expect("log dir");
    dir
}

/// Runs `command` with `input` on stdin and waits for it; stdout and
/// stderr go where `command` says (inherited unless set).
pub fn with_input(command: &mut Command, input: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = command
        .stdin(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait")
}

pub fn kubectl(args: &[&str], stdin: Option<&str>) {
    let out = with_input(
        Command::new("kubectl").args(args),
        stdin.unwrap_or_default(),
    );
    assert!(out.status.success(), "kubectl {args:?} failed");
}

/// A fake cloud on a free loopback port, stopped with the test process.
pub struct FakeCloud {
    pub url: String,
    _process: Tied,
}

/// Starts a fake cloud that accepts the e2e access key, logging to `log`.
pub fn start_fakecloud(log: &str) -> FakeCloud {
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
    FakeCloud {
        url,
        _process: fake,
    }
}

/// Starts the operator binary with `args` and `envs`, logging to `log`.
pub fn start_operator(args: &[&str], envs: &[(&str, &str)], log: &str) -> Tied {
    spawn_tied(
        &target_dir().join("secgroup-operator"),
        args,
        envs,
        std::fs::File::create(log_dir().join(log))
            .expect("log")
            .into(),
        Stdio::inherit(),
    )
}

/// Starts (once per test binary) the fake cloud and the operator, installs
/// the CRDs, the credentials Secret and one ProviderConfig per provider.
pub fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        require_cluster();
        let fake = start_fakecloud("fakecloud.log");
        let fakecloud = fake.url.clone();

        let crds = Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
        kubectl(&["apply", "--server-side", "-f", crds.to_str().expect("utf-8")], None);
        kubectl(&["wait", "--for=condition=Established", "crd", "--all", "--timeout=60s"], None);
        let mut setup = format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {SECRET_NAMESPACE}}}\n---\n\
             apiVersion: v1\nkind: Secret\nmetadata: {{name: cloud-credentials, namespace: {SECRET_NAMESPACE}}}\n\
             stringData: {{accessKeyId: {ACCESS_KEY}, accessKeySecret: {SECRET_KEY}}}\n"
        );
        for (name, provider, region) in PROVIDERS {
            let kind = if provider == "apsara" { "apsarastack" } else { provider };
            let extra = if provider == "apsara" { "  signatureVersion: v2\n  apsara: {organizationId: \"1\", resourceGroupId: \"2\"}\n" } else { "" };
            setup.push_str(&format!(
                "---\napiVersion: secgroup.dev/v1alpha1\nkind: ProviderConfig\nmetadata: {{name: {name}}}\nspec:\n  type: {kind}\n  endpoint: {fakecloud}\n  region: {region}\n  credentialsSecretRef: {{namespace: {SECRET_NAMESPACE}, name: cloud-credentials}}\n  rateLimit: {{qps: 200, burst: 50}}\n  allowedNamespaces: {{matchExpressions: [{{key: secgroup-e2e/denied, operator: DoesNotExist}}]}}\n{extra}"
            ));
        }
        kubectl(&["apply", "--server-side", "-f", "-"], Some(&setup));

        let operator = start_operator(
            &["run", "--secret-namespace", SECRET_NAMESPACE, "--metrics-addr", "127.0.0.1:0", "--resync-interval", "5"],
            &[("RUST_LOG", "info,secgroup_operator=debug")],
            "operator.log",
        );
        Env { fakecloud, _processes: vec![operator, fake._process] }
    })
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

/// Creates a security group in the fake cloud at `url`.
pub async fn create_group_at(url: &str, provider: &str, region: &str, id: &str) {
    let res = http()
        .post(format!("{url}/_fake/groups"))
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

/// Rules the shared fake cloud holds in a group.
pub async fn cloud_rules(provider: &str, region: &str, group: &str) -> Vec<Value> {
    cloud_rules_at(&env().fakecloud, provider, region, group).await
}

/// Rules the fake cloud at `url` holds in a group.
pub async fn cloud_rules_at(url: &str, provider: &str, region: &str, group: &str) -> Vec<Value> {
    http()
        .get(format!("{url}/_fake/rules"))
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
    let res = http()
        .put(format!("{}/_fake/faults", env().fakecloud))
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
