//! Shared end-to-end environment: one fake cloud and one operator process
//! against the test control plane, ProviderConfigs for the three providers,
//! and helpers to wait on conditions and inspect the fake cloud.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
    time::{Duration, Instant},
};

use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::{
    Api, Client,
    api::{DeleteParams, Patch, PatchParams, PostParams},
};
use secgroup_operator::api::{ProviderConfig, SecurityGroupRule, conditions};
pub use secgroup_testkit::{
    Admin, FakeCloud, LogDir, Output, Tied, binary,
    manifests::{SecretRef, provider_config},
    net::free_addr,
    with_input,
};
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
    /// Where the shared operator serves /metrics, /healthz and /readyz.
    pub operator_metrics: String,
    fake: FakeCloud,
    _operator: Tied,
}

/// The suite runs only against the test cluster; anything else is a mistake.
pub fn require_cluster() {
    assert!(
        std::env::var_os("SECGROUP_E2E").is_some() && std::env::var_os("KUBECONFIG").is_some(),
        "the end-to-end suite needs the test cluster: run `make e2e` \
         (or `eval \"$(tests/cluster/testcluster.sh up)\"` first)"
    );
}

/// Where the suite's processes log: `$SECGROUP_E2E_LOGS` (tests/e2e.sh makes
/// one per run), else a new directory, named on stderr, that stays after the run.
pub fn log_dir() -> PathBuf {
    static LOGS: OnceLock<PathBuf> = OnceLock::new();
    LOGS.get_or_init(|| {
        let mut logs = LogDir::new("e2e", "SECGROUP_E2E_LOGS");
        let path = logs.keep().to_owned();
        eprintln!("end-to-end logs in {}", path.display());
        path
    })
    .clone()
}

pub fn kubectl(args: &[&str], stdin: Option<&str>) {
    let out = with_input(
        Command::new("kubectl").args(args),
        stdin.unwrap_or_default(),
    );
    assert!(out.status.success(), "kubectl {args:?} failed");
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
        kubectl(&["apply", "--server-side", "--force-conflicts", "-f", crds.to_str().expect("utf-8")], None);
        kubectl(&["wait", "--for=condition=Established", "crd", "--all", "--timeout=60s"], None);
        let mut setup = vec![
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": SECRET_NAMESPACE}}),
            secret_manifest(SHARED_SECRET),
        ];
        for (name, provider, _) in PROVIDERS {
            setup.push(config_manifest(&fakecloud, name, provider, SHARED_SECRET));
        }
        let list = json!({"apiVersion": "v1", "kind": "List", "items": setup});
        kubectl(&["apply", "--server-side", "-f", "-"], Some(&list.to_string()));

        // Rules with OWN_OPERATOR_LABEL belong to operators that tests start themselves.
        let operator_metrics = free_addr();
        let selector = format!("!{OWN_OPERATOR_LABEL}");
        let operator = start_operator(
            &["--metrics-addr", &operator_metrics, "--label-selector", &selector],
            &[],
            "operator.log",
        );
        Env { fakecloud, operator_metrics, fake, _operator: operator }
    })
}

/// A rule with this label is left alone by the shared operator; a test
/// starts its own operator for it (one it may kill).
pub const OWN_OPERATOR_LABEL: &str = "secgroup-e2e/own-operator";

/// Starts a fake cloud of its own that accepts the shared test credentials.
pub fn start_fakecloud(log: &str) -> FakeCloud {
    let fake = start_fakecloud_with(log, &[]);
    assert!(
        fake.url.starts_with("http://127.0.0.1:"),
        "unexpected fake cloud banner {:?}",
        fake.url
    );
    fake
}

/// `start_fakecloud` with more arguments (say, `--tls-cert`); its URL is
/// whatever the fake cloud announces.
pub fn start_fakecloud_with(log: &str, extra: &[&str]) -> FakeCloud {
    let access_key = format!("{ACCESS_KEY}:{SECRET_KEY}");
    FakeCloud::start(&access_key, extra, &[], &log_dir().join(log))
}

/// An operator for the tests (`secgroup-operator run` with the shared
/// Secret namespace, a 5 s resync and debug logs, plus `args`), logging to `log`.
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
    spawn_operator(&all, &all_envs, log)
}

/// The operator binary with exactly `args` and `envs`, logging to `log`.
pub fn spawn_operator(args: &[&str], envs: &[(&str, &str)], log: &str) -> Tied {
    Tied::spawn(
        &binary("secgroup-operator"),
        args,
        envs,
        Output::Log(log_dir().join(log)),
        Output::Here,
    )
}

/// Applies manifests (YAML or JSON) with kubectl.
pub fn kubectl_apply(manifests: &str) {
    kubectl(&["apply", "--server-side", "-f", "-"], Some(manifests));
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

/// The Secret every shared ProviderConfig uses.
const SHARED_SECRET: &str = "cloud-credentials";

fn secret_manifest(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": SECRET_NAMESPACE},
        "stringData": {"accessKeyId": ACCESS_KEY, "accessKeySecret": SECRET_KEY},
    })
}

/// A ProviderConfig for `provider` (one of PROVIDERS) at the fake cloud.
/// Namespaces labelled `secgroup-e2e/denied` may not use it.
pub fn config_manifest(fakecloud: &str, name: &str, provider: &str, secret: &str) -> Value {
    let (_, _, region) = PROVIDERS
        .into_iter()
        .find(|(_, p, _)| *p == provider)
        .expect("a known provider");
    let secret = SecretRef {
        namespace: SECRET_NAMESPACE,
        name: secret,
    };
    let mut manifest = provider_config(name, provider, fakecloud, region, secret, (200, 50));
    manifest["spec"]["allowedNamespaces"] =
        json!({"matchExpressions": [{"key": "secgroup-e2e/denied", "operator": "DoesNotExist"}]});
    manifest
}

/// A ProviderConfig of a test's own, named `prefix-<random>`, whose
/// credentials are the Secret `secret` (which may not exist yet). Drift
/// checks run once a day, so they never race the test's own moves.
pub async fn own_provider_config(
    client: &Client,
    prefix: &str,
    provider: &str,
    secret: &str,
) -> String {
    provider_config_at(
        client,
        &env().fakecloud,
        prefix,
        provider,
        secret,
        &json!({}),
    )
    .await
}

/// `own_provider_config` at the fake cloud at `fakecloud`, with `extra`
/// merged into its spec.
pub async fn provider_config_at(
    client: &Client,
    fakecloud: &str,
    prefix: &str,
    provider: &str,
    secret: &str,
    extra: &Value,
) -> String {
    let name = format!("{prefix}-{}", suffix());
    let mut manifest = config_manifest(fakecloud, &name, provider, secret);
    manifest["spec"]["defaults"] = json!({"resyncIntervalSeconds": 86400});
    merge_json(&mut manifest["spec"], extra);
    let config: ProviderConfig = serde_json::from_value(manifest).expect("a ProviderConfig");
    Api::<ProviderConfig>::all(client.clone())
        .create(&PostParams::default(), &config)
        .await
        .expect("create ProviderConfig");
    name
}

pub async fn delete_provider_config(client: &Client, name: &str) {
    Api::<ProviderConfig>::all(client.clone())
        .delete(name, &DeleteParams::default())
        .await
        .expect("delete ProviderConfig");
}

/// Creates the credentials Secret `name` next to the shared one.
pub async fn create_secret(client: &Client, name: &str) {
    let secret: Secret = serde_json::from_value(secret_manifest(name)).expect("a Secret");
    Api::<Secret>::namespaced(client.clone(), SECRET_NAMESPACE)
        .create(&PostParams::default(), &secret)
        .await
        .expect("create Secret");
}

pub async fn delete_secret(client: &Client, name: &str) {
    Api::<Secret>::namespaced(client.clone(), SECRET_NAMESPACE)
        .delete(name, &DeleteParams::default())
        .await
        .expect("delete Secret");
}

/// A short random suffix for names that must not collide across runs.
pub fn suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..8].to_owned()
}

/// A client and a fresh namespace for one test.
pub async fn setup(prefix: &str) -> (Api<SecurityGroupRule>, Client) {
    env();
    let client = Client::try_default().await.expect("kubeconfig");
    let ns = namespace(&client, prefix, json!({})).await;
    (Api::namespaced(client.clone(), &ns), client)
}

/// A security group id no other test or run uses.
pub fn group_id(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    )
}

/// A fresh namespace for one test, with a random suffix.
pub async fn namespace(client: &Client, prefix: &str, labels: Value) -> String {
    let name = format!("{prefix}-{}", suffix());
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
    admin().create_group(provider, region, id).await;
}

/// Creates a security group in the fake cloud at `fakecloud`.
pub async fn create_group_at(fakecloud: &str, provider: &str, region: &str, id: &str) {
    Admin::new(fakecloud)
        .create_group(provider, region, id)
        .await;
}

/// The admin client of the shared fake cloud.
fn admin() -> &'static Admin {
    &env().fake.admin
}

fn json_of<T: serde::Serialize>(items: Vec<T>) -> Vec<Value> {
    items
        .into_iter()
        .map(|item| serde_json::to_value(item).expect("JSON"))
        .collect()
}

/// Rules the shared fake cloud holds in a group.
pub async fn cloud_rules(provider: &str, region: &str, group: &str) -> Vec<Value> {
    cloud_rules_at(&env().fakecloud, provider, region, group).await
}

/// Rules the fake cloud at `url` holds in a group.
pub async fn cloud_rules_at(url: &str, provider: &str, region: &str, group: &str) -> Vec<Value> {
    let query = [("provider", provider), ("region", region), ("group", group)];
    json_of(Admin::new(url).rules(&query).await)
}

/// Calls the fake cloud saw for a group.
pub async fn cloud_calls(group: &str) -> Vec<Value> {
    cloud_calls_at(&env().fakecloud, group).await
}

/// Every call the fake cloud at `url` received for `group`.
pub async fn cloud_calls_at(url: &str, group: &str) -> Vec<Value> {
    let calls = Admin::new(url).calls(&[]).await;
    json_of(
        calls
            .into_iter()
            .filter(|c| c.group.as_deref() == Some(group))
            .collect(),
    )
}

/// Sets the fault rules for one group, leaving other groups' rules (other
/// tests') in place. The plan is one document, so changes take turns.
pub async fn set_group_faults(group: &str, rules: &[Value]) {
    static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _turn = ONE_AT_A_TIME.lock().await;
    let plan = admin().faults().await;
    let others = plan
        .rules
        .into_iter()
        .filter(|r| r.group.as_deref() != Some(group));
    let mut kept = json_of(others.collect());
    kept.extend(rules.iter().map(|r| {
        let mut r = r.clone();
        r["group"] = json!(group);
        r
    }));
    admin().set_faults(&json!({ "rules": kept })).await;
}

/// Replaces the whole fault plan of the fake cloud at `fakecloud`.
pub async fn set_faults_at(fakecloud: &str, faults: Value) {
    Admin::new(fakecloud).set_faults(&faults).await;
}

/// A call of a fake cloud's admin API (`url` in full) that must succeed.
pub async fn admin_call(method: reqwest::Method, url: &str, body: &Value) {
    let (base, path) = url
        .split_once("/_fake")
        .unwrap_or_else(|| panic!("{url} is not an admin API URL"));
    let body = (!body.is_null()).then_some(body);
    Admin::new(base).call(method, path, &[], body).await;
}

/// Deletes a whole group in the shared fake cloud out of band.
pub async fn delete_cloud_group(provider: &str, region: &str, id: &str) {
    admin().delete_group(provider, region, id).await;
}

/// Deletes a rule in the fake cloud out of band, as someone in the console would.
pub async fn delete_cloud_rule(provider: &str, region: &str, group: &str, rule_id: &str) {
    admin().delete_rule(provider, region, group, rule_id).await;
}

/// Plants a rule in the fake cloud out of band, as someone using the console
/// (or another tool) would; returns the id the cloud gave it.
pub async fn plant_rule(provider: &str, region: &str, group: &str, rule: &Value) -> String {
    admin().add_rule(provider, region, group, rule, None).await
}

/// Asserts that no ClientToken of `calls` had more than one effect, by the
/// journal and by the fake cloud's token records, and returns the record of
/// `token`: how many calls presented it and how many changed the cloud.
pub async fn one_effect_per_token(calls: &[Value], token: &str) -> Value {
    let mut effects: std::collections::BTreeMap<&str, u32> = Default::default();
    for call in calls {
        if let Some(token) = call["clientToken"].as_str() {
            *effects.entry(token).or_default() += u32::from(call["effect"] == true);
        }
    }
    let twice: Vec<_> = effects.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "tokens with more than one effect in the journal: {twice:?}"
    );
    let records: Vec<_> = admin()
        .tokens()
        .await
        .into_iter()
        .filter(|t| effects.contains_key(t.client_token.as_str()))
        .collect();
    for record in &records {
        assert!(
            record.effects <= 1,
            "token with more than one effect: {record:?}"
        );
    }
    let record = records
        .into_iter()
        .find(|t| t.client_token == token)
        .unwrap_or_else(|| panic!("the fake cloud remembers no token {token}"));
    serde_json::to_value(record).expect("JSON")
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

/// Whether the rule carries the finalizer that revokes it before it goes.
pub fn holds_the_revoke_finalizer(rule: &SecurityGroupRule) -> bool {
    rule.metadata
        .finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|f| f == "secgroup.dev/revoke"))
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
