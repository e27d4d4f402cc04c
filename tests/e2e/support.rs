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
struct Tied(Child);

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

/// Starts (once per test binary) the fake cloud and the operator, installs
/// the CRDs, the credentials Secret and one ProviderConfig per provider.
pub fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        require_cluster();
        let logs = log_dir();
        let mut fake = spawn_tied(
            &target_dir().join("secgroup-fakecloud"),
            &["--listen", "127.0.0.1:0", "--access-key", &format!("{ACCESS_KEY}:{SECRET_KEY}")],
            &[],
            Stdio::piped(),
            std::fs::File::create(logs.join("fakecloud.log")).expect("log").into(),
        );
        let mut line = String::new();
        BufReader::new(fake.0.stdout.take().expect("stdout")).read_line(&mut line).expect("listening line");
        let fakecloud = line.trim().trim_start_matches("listening on ").to_owned();
        assert!(fakecloud.starts_with("http://127.0.0.1:"), "unexpected fake cloud banner {line:?}");

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

        let operator = spawn_tied(
            &target_dir().join("secgroup-operator"),
            &["run", "--secret-namespace", SECRET_NAMESPACE, "--metrics-addr", "127.0.0.1:0", "--resync-interval", "5"],
            &[("RUST_LOG", "info,secgroup_operator=debug")],
            std::fs::File::create(logs.join("operator.log")).expect("log").into(),
            Stdio::inherit(),
        );
        Env { fakecloud, _processes: vec![operator, fake] }
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

/// Creates a security group in the fake cloud.
pub async fn create_group(provider: &str, region: &str, id: &str) {
    let res = http()
        .post(format!("{}/_fake/groups", env().fakecloud))
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

/// Applies a JSON merge patch (RFC 7386) to `target`: objects merge, `null` removes.
pub fn merge_json(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    if let Value::Object(fields) = target {
        for (key, value) in patch {
            if value.is_null() {
                fields.remove(key);
            } else {
                merge_json(fields.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}
