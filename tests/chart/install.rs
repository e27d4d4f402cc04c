//! The chart installed by helm into the test control plane. No kubelet runs
//! its pod, so the operator binary runs here with the Deployment's arguments
//! and a TokenRequest token of the chart's ServiceAccount: every call it
//! makes is authorized by the chart's RBAC, as in the cluster.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    time::Duration,
};

use k8s_openapi::api::events::v1::Event;
use kube::{
    Api, Client,
    api::{ListParams, Patch, PatchParams},
};
use secgroup_operator::api::SecurityGroupRule;
pub(crate) use secgroup_testkit::net::{self, free_port};
use serde_json::{Value, json};

use crate::{helm, support::*};

pub(crate) fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} on PATH: {e}"))
}

pub(crate) fn ok(program: &str, args: &[&str]) -> String {
    let out = run(program, args);
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub(crate) fn suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..6].to_owned()
}

/// Whether `check` holds within ten seconds.
fn within_ten_seconds(mut check: impl FnMut() -> bool) -> bool {
    for _ in 0..100 {
        if check() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    false
}

/// `kubectl auth can-i VERB RESOURCE -n NS` for `user`: "yes" or "no".
/// A RESOURCE of `kind/status` asks about the status subresource, one of
/// `kind/NAME` about the object NAME (a Lease the chart names, say).
fn can_i(
    kubeconfig: Option<&Path>,
    as_user: Option<&str>,
    verb: &str,
    resource: &str,
    namespace: &str,
) -> bool {
    let (resource, subresource) = match resource.split_once('/') {
        Some((kind, "status")) => (kind, Some("--subresource=status".to_owned())),
        _ => (resource, None),
    };
    let mut args = vec!["auth", "can-i", verb, resource];
    if let Some(sub) = &subresource {
        args.push(sub);
    }
    if namespace.is_empty() {
        args.push("--all-namespaces");
    } else {
        args.extend(["-n", namespace]);
    }
    let config;
    if let Some(path) = kubeconfig {
        config = path.display().to_string();
        args.extend(["--kubeconfig", &config]);
    }
    if let Some(user) = as_user {
        args.extend(["--as", user]);
    }
    let out = run("kubectl", &args);
    let answer = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        answer == "yes" || answer == "no",
        "can-i {args:?}: {answer:?} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    answer == "yes"
}

/// A kubeconfig for the test cluster that authenticates with `token` only.
fn token_kubeconfig(token: &str, path: &Path) {
    let admin_path = std::env::var("KUBECONFIG").expect("KUBECONFIG");
    let admin: Value =
        serde_yaml::from_str(&std::fs::read_to_string(admin_path).expect("kubeconfig"))
            .expect("YAML");
    let cluster = admin["clusters"][0].clone();
    let config = json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [cluster],
        "users": [{"name": "operator", "user": {"token": token}}],
        "contexts": [{"name": "operator", "context": {"cluster": cluster["name"], "user": "operator"}}],
        "current-context": "operator",
    });
    std::fs::write(path, serde_yaml::to_string(&config).expect("YAML")).expect("write kubeconfig");
}

/// The installed Deployment.
pub(crate) fn deployment(namespace: &str, name: &str) -> Value {
    serde_json::from_str(&ok(
        "kubectl",
        &["get", "deployment", name, "-n", namespace, "-o", "json"],
    ))
    .expect("JSON")
}

/// Args and env of the installed Deployment's container, as the kubelet
/// would pass them to its pod `{name}-0`.
pub(crate) fn deployment_command(
    namespace: &str,
    name: &str,
) -> (Vec<String>, Vec<(String, String)>) {
    let deployment = deployment(namespace, name);
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let pod = format!("{name}-0");
    let args = container["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("arg").to_owned())
        .collect();
    let env = container["env"]
        .as_array()
        .expect("env")
        .iter()
        .map(|e| {
            let name = e["name"].as_str().expect("name").to_owned();
            let value = match e["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
                Some("metadata.name") => pod.clone(),
                Some("metadata.namespace") => namespace.to_owned(),
                Some(other) => panic!("unexpected fieldRef {other}"),
                None => e["value"].as_str().expect("value").to_owned(),
            };
            (name, value)
        })
        .collect();
    (args, env)
}

/// Where a test's operator serves /metrics and its probes.
#[derive(Clone, Copy)]
struct Ports {
    metrics: u16,
    health: u16,
}

/// The Deployment's arguments with free loopback ports for /metrics and the probes.
fn on_free_ports(args: &[String]) -> (Vec<String>, Ports) {
    let ports = Ports {
        metrics: free_port(),
        health: free_port(),
    };
    let args = args
        .iter()
        .map(|a| {
            if a.starts_with("--metrics-addr=") {
                format!("--metrics-addr=127.0.0.1:{}", ports.metrics)
            } else if a.starts_with("--health-addr=") {
                format!("--health-addr=127.0.0.1:{}", ports.health)
            } else {
                a.clone()
            }
        })
        .collect();
    (args, ports)
}

/// The status of GET /metrics with `token` as the bearer token, if any.
async fn metrics_status(port: u16, token: Option<&str>) -> u16 {
    let mut request = reqwest::Client::new().get(format!("http://127.0.0.1:{port}/metrics"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request
        .send()
        .await
        .expect("the metrics port answers")
        .status()
        .as_u16()
}

/// A credentials Secret with the fake cloud's test keys.
pub(crate) fn create_credentials(namespace: &str, name: &str) {
    ok(
        "kubectl",
        &[
            "create",
            "secret",
            "generic",
            name,
            "-n",
            namespace,
            &format!("--from-literal=accessKeyId={ACCESS_KEY}"),
            &format!("--from-literal=accessKeySecret={SECRET_KEY}"),
        ],
    );
}

pub(crate) async fn readyz(port: u16) -> Result<u16, String> {
    reqwest::get(format!("http://127.0.0.1:{port}/readyz"))
        .await
        .map(|r| r.status().as_u16())
        .map_err(|e| e.to_string())
}

/// Waits up to a minute for /readyz on `port` to answer 200.
pub(crate) async fn until_ready(what: &str, port: u16) {
    let addr = format!("127.0.0.1:{port}");
    assert!(
        net::ready(&addr, Duration::from_secs(60)).await,
        "timed out after 60 s waiting for {what}"
    );
}

pub(crate) fn log_path(name: &str) -> PathBuf {
    log_dir().join(name)
}

/// A release of the chart in its own namespace, watching rules labelled
/// `shard`, with provider credentials in a Secret it may read (labelled, as
/// the chart asks), and the ServiceAccount `scraper` bound to its
/// metrics-reader role.
pub(crate) struct Release {
    pub id: String,
    pub system: String,
    pub rules_ns: String,
    pub sa: String,
    pub shard: String,
}

pub(crate) fn install_release(prefix: &str) -> Release {
    let id = suffix();
    let system = format!("{prefix}-system-{id}");
    let rules_ns = format!("{prefix}-rules-{id}");
    let release = format!("sgo-{id}");
    let shard = format!("secgroup-chart-e2e={id}");
    // The CRDs may already be in the cluster, applied by kubectl: the chart takes them over.
    helm::install(
        &release,
        &system,
        &[
            "--take-ownership",
            "--set",
            &format!("labelSelector={shard}"),
            // The id may be all digits, which `--set` would make a number.
            "--set-string",
            &format!("finalizerPolicy.objectSelector.matchLabels.secgroup-chart-e2e={id}"),
            "--set",
            "metrics.auth.readers[0].name=scraper",
            "--set",
            &format!("metrics.auth.readers[0].namespace={system}"),
        ],
    );
    ok("kubectl", &["create", "namespace", &rules_ns]);
    create_credentials(&system, "cloud-credentials");
    // The chart reads only labelled Secrets: Helm's release Secret lives
    // next to this one and never reaches the operator.
    ok(
        "kubectl",
        &[
            "label",
            "secret",
            "cloud-credentials",
            "-n",
            &system,
            "secgroup.dev/credentials=true",
        ],
    );
    Release {
        sa: format!("{release}-secgroup-operator"),
        id,
        system,
        rules_ns,
        shard,
    }
}

impl Release {
    /// A token of the release's ServiceAccount, as a Pod would get it.
    pub fn token(&self) -> String {
        ok(
            "kubectl",
            &[
                "create",
                "token",
                &self.sa,
                "-n",
                &self.system,
                "--duration=1h",
            ],
        )
        .trim()
        .to_owned()
    }

    /// A security group in the fake cloud at `cloud` and a ProviderConfig
    /// pointing there with the release's credentials: (config, group).
    pub async fn provider_config(&self, cloud: &str) -> (String, String) {
        let (id, system) = (&self.id, &self.system);
        let group = format!("sg-chart{id}");
        create_group_at(cloud, "alibaba", "cn-hangzhou", &group).await;
        let config = format!("chart-{id}");
        let provider_config = format!(
            "apiVersion: secgroup.dev/v1alpha1\nkind: ProviderConfig\nmetadata: {{name: {config}}}\n\
             spec: {{type: alibaba, region: cn-hangzhou, endpoint: \"{cloud}\", allowInsecureHttp: true, credentialsSecretRef: {{namespace: {system}, name: cloud-credentials}}}}\n"
        );
        kubectl(&["apply", "-f", "-"], Some(&provider_config));
        (config, group)
    }

    /// A ProviderConfig whose Secret lacks the label: the operator never
    /// read it, and its rule's Stalled condition names the label it wants.
    pub async fn ignores_unlabelled_secrets(&self, cloud: &str, group: &str) {
        let (id, system) = (&self.id, &self.system);
        create_credentials(system, "unlabelled");
        let config = format!("chart-unlabelled-{id}");
        kubectl(
            &["apply", "-f", "-"],
            Some(&format!(
                "apiVersion: secgroup.dev/v1alpha1\nkind: ProviderConfig\nmetadata: {{name: {config}}}\n\
                 spec: {{type: alibaba, region: cn-hangzhou, endpoint: \"{cloud}\", allowInsecureHttp: true, credentialsSecretRef: {{namespace: {system}, name: unlabelled}}}}\n"
            )),
        );
        let client = Client::try_default().await.expect("kubeconfig");
        let rules: Api<SecurityGroupRule> = Api::namespaced(client, &self.rules_ns);
        let (label_key, label_value) = self.shard.split_once('=').expect("selector");
        let mut manifest = rule_manifest(
            "unread",
            &config,
            group,
            json!({"direction": "Ingress", "protocol": "TCP", "ports": {"from": 22, "to": 22}, "peer": {"cidr": "10.0.0.0/8"}}),
        );
        manifest["metadata"]["labels"] = json!({label_key: label_value});
        rules
            .patch(
                "unread",
                &PatchParams::apply("chart-e2e").force(),
                &Patch::Apply(&manifest),
            )
            .await
            .expect("apply rule");
        let stalled = condition(&rules, "unread", "Stalled", "True").await;
        let message = stalled
            .status
            .and_then(|s| s.conditions.into_iter().find(|c| c.type_ == "Stalled"))
            .map(|c| c.message)
            .unwrap_or_default();
        assert!(
            message.contains("is not labelled secgroup.dev/credentials=true"),
            "{message}"
        );
        rules
            .delete("unread", &Default::default())
            .await
            .expect("delete");
        gone(&rules, "unread").await;
    }

    /// A rule of the release's shard reconciled by the running operator:
    /// finalizer, status, one rule in the cloud; revoked on delete. A rule
    /// the cloud refuses gets a Warning Event.
    pub async fn reconciles_a_rule(&self, cloud: &str, config: &str, group: &str) {
        let client = Client::try_default().await.expect("kubeconfig");
        let rules: Api<SecurityGroupRule> = Api::namespaced(client.clone(), &self.rules_ns);
        let (label_key, label_value) = self.shard.split_once('=').expect("selector");
        let mut manifest = rule_manifest(
            "https",
            config,
            group,
            json!({"direction": "Ingress", "protocol": "TCP", "ports": {"from": 443, "to": 443}, "peer": {"cidr": "10.0.0.0/8"}}),
        );
        manifest["metadata"]["labels"] = json!({label_key: label_value});
        let created = rules
            .patch(
                "https",
                &PatchParams::apply("chart-e2e").force(),
                &Patch::Apply(&manifest),
            )
            .await
            .expect("apply rule");
        assert!(
            holds_the_revoke_finalizer(&created),
            "the chart's finalizer policy adds the finalizer as the rule is created"
        );
        let ready = condition(&rules, "https", "Ready", "True").await;
        assert!(holds_the_revoke_finalizer(&ready));
        let writers = finalizer_writers(&ready);
        assert!(
            writers.iter().all(|manager| manager == "chart-e2e"),
            "the operator wrote no finalizer of its own: {writers:?}"
        );
        assert_eq!(
            cloud_rules_at(cloud, "alibaba", "cn-hangzhou", group)
                .await
                .len(),
            1
        );
        // Success writes no Event; a refusal does, which the chart's RBAC
        // lets the operator publish on the rule: an authorize into a group
        // the cloud does not have.
        let mut refused = rule_manifest(
            "refused",
            config,
            &format!("{group}x"),
            json!({"direction": "Ingress", "protocol": "TCP", "ports": {"from": 443, "to": 443}, "peer": {"cidr": "10.0.0.0/8"}}),
        );
        refused["metadata"]["labels"] = json!({label_key: label_value});
        rules
            .patch(
                "refused",
                &PatchParams::apply("chart-e2e").force(),
                &Patch::Apply(&refused),
            )
            .await
            .expect("apply rule");
        let events: Api<Event> = Api::namespaced(client, &self.rules_ns);
        eventually(
            "a Warning Event from the operator on the refused rule",
            Duration::from_secs(60),
            || async {
                let reported = events
                    .list(&ListParams::default())
                    .await
                    .map_err(|e| e.to_string())?;
                reported
                    .items
                    .iter()
                    .find(|e| {
                        e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("refused")
                            && e.reporting_controller.as_deref() == Some("secgroup-operator")
                            && e.type_.as_deref() == Some("Warning")
                    })
                    .map(drop)
                    .ok_or_else(|| "no Event yet".to_owned())
            },
        )
        .await;
        rules
            .delete("refused", &Default::default())
            .await
            .expect("delete");
        gone(&rules, "refused").await;
        rules
            .delete("https", &Default::default())
            .await
            .expect("delete");
        gone(&rules, "https").await;
        assert!(
            cloud_rules_at(cloud, "alibaba", "cn-hangzhou", group)
                .await
                .is_empty(),
            "revoked on delete"
        );
    }
}

/// The managers of `metadata.finalizers`, by the object's managedFields.
fn finalizer_writers(rule: &SecurityGroupRule) -> Vec<String> {
    rule.metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|entry| {
            entry
                .fields_v1
                .as_ref()
                .is_some_and(|fields| fields.0.pointer("/f:metadata/f:finalizers").is_some())
        })
        .filter_map(|entry| entry.manager.clone())
        .collect()
}

#[tokio::test]
async fn operator_runs_with_the_charts_rbac_and_nothing_more() {
    require_cluster();
    let release = install_release("chart");
    let elsewhere = secret_elsewhere(&release);
    // The ServiceAccount's token, as a Pod would get it.
    let kubeconfig = log_path(&format!("chart-{}.kubeconfig", release.id));
    token_kubeconfig(&release.token(), &kubeconfig);

    service_account_may_do_what_the_chart_grants(&release, &kubeconfig, &elsewhere);
    tenants_edit_rules_but_not_their_status(&release);
    secrets_elsewhere_are_forbidden(&kubeconfig, &elsewhere);

    let cloud = start_fakecloud(&format!("chart-{}-fakecloud.log", release.id));
    let (config, group) = release.provider_config(&cloud.url).await;
    let operator = ChartOperator::start(&release, &kubeconfig).await;
    metrics_want_a_token_the_chart_allows(&release, operator.ports).await;
    release.reconciles_a_rule(&cloud.url, &config, &group).await;
    release.ignores_unlabelled_secrets(&cloud.url, &group).await;
    operator.was_never_refused();
    operator.is_refused_secrets_elsewhere(&elsewhere).await;
}

/// A namespace with a Secret the operator must not be able to read; its name.
fn secret_elsewhere(release: &Release) -> String {
    let elsewhere = format!("chart-elsewhere-{}", release.id);
    ok("kubectl", &["create", "namespace", &elsewhere]);
    ok(
        "kubectl",
        &[
            "create",
            "secret",
            "generic",
            "not-yours",
            "-n",
            &elsewhere,
            "--from-literal=accessKeyId=x",
        ],
    );
    elsewhere
}

/// kubectl auth can-i, as the admin asking for the ServiceAccount and as
/// the ServiceAccount itself, agrees with the chart: Secrets in the secret
/// namespace only; rules patched, never read one by one or deleted.
fn service_account_may_do_what_the_chart_grants(
    release: &Release,
    kubeconfig: &Path,
    elsewhere: &str,
) {
    let (system, rules_ns) = (&release.system, &release.rules_ns);
    let sa_user = format!("system:serviceaccount:{system}:{}", release.sa);
    for view in [(None, Some(sa_user.as_str())), (Some(kubeconfig), None)] {
        let can = |verb: &str, resource: &str, ns: &str| can_i(view.0, view.1, verb, resource, ns);
        assert!(can("list", "secrets", system));
        assert!(can("watch", "secrets", system));
        assert!(!can("get", "secrets", elsewhere), "Secrets elsewhere");
        assert!(!can("list", "secrets", ""), "Secrets cluster-wide");
        assert!(!can("create", "secrets", system));
        assert!(can("patch", "securitygrouprules.secgroup.dev", rules_ns));
        assert!(can(
            "patch",
            "securitygrouprules.secgroup.dev/status",
            rules_ns
        ));
        assert!(!can("delete", "securitygrouprules.secgroup.dev", rules_ns));
        assert!(!can("update", "securitygrouprules.secgroup.dev", rules_ns));
        assert!(can("watch", "providerconfigs.secgroup.dev", ""));
        assert!(can("patch", "providerconfigs.secgroup.dev/status", ""));
        // The in-use guard: a finalizer, nothing else.
        assert!(can("patch", "providerconfigs.secgroup.dev", ""));
        assert!(!can("update", "providerconfigs.secgroup.dev", ""));
        assert!(!can("delete", "providerconfigs.secgroup.dev", ""));
        // The rules' CRD by name, no other CRD.
        let crd = "customresourcedefinitions.apiextensions.k8s.io";
        assert!(can(
            "watch",
            &format!("{crd}/securitygrouprules.secgroup.dev"),
            ""
        ));
        assert!(!can(
            "get",
            &format!("{crd}/providerconfigs.secgroup.dev"),
            ""
        ));
        assert!(!can(
            "delete",
            &format!("{crd}/securitygrouprules.secgroup.dev"),
            ""
        ));
        assert!(can("create", "tokenreviews.authentication.k8s.io", ""));
        assert!(can(
            "create",
            "subjectaccessreviews.authorization.k8s.io",
            ""
        ));
        assert!(can("create", "events.events.k8s.io", rules_ns));
        assert!(
            !can("create", "leases.coordination.k8s.io", system),
            "no Lease with one replica"
        );
    }
}

/// A tenant bound to the built-in edit role in its namespace gets the
/// chart's aggregated rights: its rules, never their status (the
/// operator's record of what it created), ProviderConfigs to read only.
fn tenants_edit_rules_but_not_their_status(release: &Release) {
    let rules_ns = &release.rules_ns;
    let tenant = format!("tenant-{}", release.id);
    ok(
        "kubectl",
        &[
            "create",
            "rolebinding",
            "tenant-edit",
            "--clusterrole=edit",
            &format!("--user={tenant}"),
            "-n",
            rules_ns,
        ],
    );
    let tenant_can = |verb: &str, resource: &str, ns: &str| {
        // The aggregation controller fills the built-in roles shortly after install.
        within_ten_seconds(|| can_i(None, Some(&tenant), verb, resource, ns))
    };
    assert!(tenant_can(
        "create",
        "securitygrouprules.secgroup.dev",
        rules_ns
    ));
    assert!(tenant_can(
        "delete",
        "securitygrouprules.secgroup.dev",
        rules_ns
    ));
    for (verb, resource, ns) in [
        (
            "patch",
            "securitygrouprules.secgroup.dev/status",
            rules_ns.as_str(),
        ),
        (
            "update",
            "securitygrouprules.secgroup.dev/status",
            rules_ns.as_str(),
        ),
        ("create", "providerconfigs.secgroup.dev", ""),
        ("patch", "providerconfigs.secgroup.dev", ""),
    ] {
        assert!(
            !can_i(None, Some(&tenant), verb, resource, ns),
            "{verb} {resource}"
        );
    }
}

/// The ServiceAccount's token reads no Secret outside its namespaces.
fn secrets_elsewhere_are_forbidden(kubeconfig: &Path, elsewhere: &str) {
    let denied = run(
        "kubectl",
        &[
            "--kubeconfig",
            kubeconfig.to_str().expect("utf-8"),
            "get",
            "secret",
            "not-yours",
            "-n",
            elsewhere,
        ],
    );
    assert!(!denied.status.success());
    assert!(
        String::from_utf8_lossy(&denied.stderr).contains("Forbidden"),
        "{}",
        String::from_utf8_lossy(&denied.stderr)
    );
}

/// The operator as the Deployment would run it, with the ServiceAccount's token.
struct ChartOperator {
    args: Vec<String>,
    envs: Vec<(String, String)>,
    ports: Ports,
    log: PathBuf,
    id: String,
    _process: Tied,
}

impl ChartOperator {
    async fn start(release: &Release, kubeconfig: &Path) -> Self {
        let (args, mut envs) = deployment_command(&release.system, &release.sa);
        assert!(
            args.contains(&format!("--secret-namespace={}", release.system)),
            "{args:?}"
        );
        envs.push(("KUBECONFIG".into(), kubeconfig.display().to_string()));
        let (args, ports) = on_free_ports(&args);
        let name = format!("chart-{}-operator.log", release.id);
        let process = Self::spawn(&args, &envs, &name);
        until_ready(
            "the operator ready (every cache synced under the chart's RBAC)",
            ports.health,
        )
        .await;
        Self {
            args,
            envs,
            ports,
            log: log_path(&name),
            id: release.id.clone(),
            _process: process,
        }
    }

    fn spawn(args: &[String], envs: &[(String, String)], log: &str) -> Tied {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        spawn_operator(&args, &envs, log)
    }

    /// Nothing it called was refused by the chart's RBAC.
    fn was_never_refused(&self) {
        let log = std::fs::read_to_string(&self.log).expect("log");
        assert!(
            !log.to_lowercase().contains("forbidden"),
            "the operator was refused a call:\n{log}"
        );
    }

    /// Started to read Secrets in a namespace the chart did not grant, the
    /// operator is refused by the API server and never becomes ready.
    async fn is_refused_secrets_elsewhere(&self, elsewhere: &str) {
        let (mut args, ports) = on_free_ports(&self.args);
        args.extend([
            format!("--secret-namespace={elsewhere}"),
            format!("--namespace={elsewhere}"),
        ]);
        let name = format!("chart-{}-operator-denied.log", self.id);
        let _denied = Self::spawn(&args, &self.envs, &name);
        let log = log_path(&name);
        eventually(
            "the API server refusing Secrets elsewhere",
            Duration::from_secs(60),
            || async {
                let log = std::fs::read_to_string(&log).map_err(|e| e.to_string())?;
                log.lines()
                    .find(|l| {
                        l.contains("forbidden") && l.contains(elsewhere) && l.contains("secrets")
                    })
                    .map(str::to_owned)
                    .ok_or_else(|| "no refusal logged yet".to_owned())
            },
        )
        .await;
        assert_eq!(
            readyz(ports.health).await,
            Ok(503),
            "not ready without its Secrets cache"
        );
    }
}

/// /metrics wants a token the API server authenticates and allows to get
/// /metrics: the chart's reader binding allows `scraper`, not `nobody`.
async fn metrics_want_a_token_the_chart_allows(release: &Release, ports: Ports) {
    let system = &release.system;
    for name in ["scraper", "nobody"] {
        ok("kubectl", &["create", "serviceaccount", name, "-n", system]);
    }
    let token_of = |name: &str| {
        ok(
            "kubectl",
            &["create", "token", name, "-n", system, "--duration=10m"],
        )
        .trim()
        .to_owned()
    };
    assert_eq!(metrics_status(ports.metrics, None).await, 401);
    assert_eq!(
        metrics_status(ports.metrics, Some("not-a-token")).await,
        401
    );
    assert_eq!(
        metrics_status(ports.metrics, Some(&token_of("nobody"))).await,
        403
    );
    assert_eq!(
        metrics_status(ports.metrics, Some(&token_of("scraper"))).await,
        200
    );
    assert_eq!(readyz(ports.health).await, Ok(200), "probes need no token");
}

/// `kubectl ARGS` with `input` on stdin: (success, stderr).
fn kubectl_with_input(args: &[&str], input: &str) -> (bool, String) {
    let out = with_input(
        Command::new("kubectl")
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped()),
        input,
    );
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The Deployment's pod template as a Pod: admission judges it as it would
/// judge the pods the Deployment creates.
fn pod_of(deployment: &serde_yaml::Value, name: &str) -> String {
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name},
        "spec": serde_json::to_value(&deployment["spec"]["template"]["spec"]).expect("JSON"),
    });
    pod.to_string()
}

#[tokio::test]
async fn leader_election_rights_and_restricted_pods_hold_in_the_cluster() {
    require_cluster();
    let id = suffix();
    let ns = format!("chart-ha-{id}");
    let release = format!("sgo-ha-{id}");
    // A second release next to the first: the CRDs belong to that one.
    helm::install(
        &release,
        &ns,
        &[
            "--set",
            "crds.install=false",
            "--set",
            "replicaCount=2",
            "--set",
            "networkPolicy.enabled=true",
            "--set",
            "networkPolicy.egress.restrict=true",
        ],
    );
    let user = format!("system:serviceaccount:{ns}:{release}-secgroup-operator");
    let can = |verb: &str, resource: &str, namespace: &str| {
        can_i(None, Some(&user), verb, resource, namespace)
    };
    assert!(can("create", "leases.coordination.k8s.io", &ns));
    assert!(can(
        "update",
        "leases.coordination.k8s.io/secgroup-operator",
        &ns
    ));
    assert!(can(
        "get",
        "leases.coordination.k8s.io/secgroup-operator",
        &ns
    ));
    assert!(
        !can("update", "leases.coordination.k8s.io/someone-elses", &ns),
        "only its own Lease"
    );
    assert!(
        !can("create", "leases.coordination.k8s.io", "default"),
        "Leases in its namespace only"
    );
    assert!(!can(
        "delete",
        "leases.coordination.k8s.io/secgroup-operator",
        &ns
    ));
    ok(
        "kubectl",
        &[
            "get",
            "poddisruptionbudget,networkpolicy",
            &format!("{release}-secgroup-operator"),
            "-n",
            &ns,
        ],
    );

    // Pod Security admission, enforcing `restricted`, admits the pod...
    ok(
        "kubectl",
        &[
            "label",
            "namespace",
            &ns,
            "pod-security.kubernetes.io/enforce=restricted",
        ],
    );
    let create = ["create", "--dry-run=server", "-n", ns.as_str(), "-f", "-"];
    let rendered = helm::template(&[]);
    let (admitted, why) = kubectl_with_input(
        &create,
        &pod_of(helm::one(&rendered, "Deployment"), "restricted"),
    );
    assert!(admitted, "the chart's pod is refused: {why}");
    // ...and would refuse it with privilege escalation allowed, so the check can fail.
    let loosened = helm::template(&["--set", "securityContext.allowPrivilegeEscalation=true"]);
    let (admitted, why) = kubectl_with_input(
        &create,
        &pod_of(helm::one(&loosened, "Deployment"), "loosened"),
    );
    assert!(!admitted && why.contains("PodSecurity"), "{why}");
}

#[tokio::test]
async fn examples_and_plain_manifests_are_accepted_by_the_api_server() {
    require_cluster();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // The CRDs must be there for the examples. Another test may own them
    // (and be changing them), so apply them only when they are missing.
    let crds = [
        "crd",
        "securitygrouprules.secgroup.dev",
        "providerconfigs.secgroup.dev",
    ];
    if !run("kubectl", &[&["get"], &crds[..]].concat())
        .status
        .success()
    {
        kubectl(
            &[
                "apply",
                "--server-side",
                "-f",
                root.join("crds").to_str().expect("utf-8"),
            ],
            None,
        );
    }
    kubectl(
        &[
            &["wait", "--for=condition=Established", "--timeout=60s"],
            &crds[..],
        ]
        .concat(),
        None,
    );
    let examples = root.join("deploy/examples");
    kubectl(
        &[
            "apply",
            "-f",
            examples.join("namespaces.yaml").to_str().expect("utf-8"),
        ],
        None,
    );
    let ns = ok(
        "kubectl",
        &[
            "create",
            "namespace",
            "secgroup-system",
            "--dry-run=client",
            "-o",
            "yaml",
        ],
    );
    kubectl(&["apply", "-f", "-"], Some(&ns));
    kubectl(
        &[
            "apply",
            "--dry-run=server",
            "-f",
            examples.to_str().expect("utf-8"),
        ],
        None,
    );
    let manifest = root.join("deploy/secgroup-operator.yaml");
    kubectl(
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "--dry-run=server",
            "-f",
            manifest.to_str().expect("utf-8"),
        ],
        None,
    );
}

/// The printer columns of the SecurityGroupRule CRD in the cluster.
fn printer_columns() -> String {
    ok(
        "kubectl",
        &[
            "get",
            "crd",
            "securitygrouprules.secgroup.dev",
            "-o",
            "jsonpath={.spec.versions[0].additionalPrinterColumns[*].name}",
        ],
    )
}

/// The documented reason for templated CRDs: `helm upgrade` changes their
/// schema. A copy of the chart whose CRD has one more printer column is
/// installed, then the chart as it is: the column comes and goes.
#[tokio::test]
async fn helm_upgrade_upgrades_the_crds() {
    require_cluster();
    let id = suffix();
    let release = format!("sgo-crds-{id}");
    let ns = format!("chart-crds-{id}");
    let copy = log_path(&format!("chart-copy-{id}"));
    ok(
        "cp",
        &[
            "-r",
            helm::chart_dir().to_str().expect("utf-8"),
            copy.to_str().expect("utf-8"),
        ],
    );
    let crd = copy.join("files/crds/securitygrouprules.secgroup.dev.yaml");
    let text = std::fs::read_to_string(&crd).expect("CRD");
    let column = "  - additionalPrinterColumns:\n";
    assert!(text.contains(column), "layout of the generated CRD changed");
    let probe = format!(
        "{column}    - jsonPath: .metadata.uid\n      name: UpgradeProbe{id}\n      type: string\n"
    );
    std::fs::write(&crd, text.replacen(column, &probe, 1)).expect("write CRD");

    let copy_arg = copy.to_str().expect("utf-8");
    ok(
        "helm",
        &[
            "install",
            &release,
            copy_arg,
            "-n",
            &ns,
            "--create-namespace",
            // kubectl applied these CRDs server-side before: take its fields.
            "--take-ownership",
            "--force-conflicts",
        ],
    );
    assert!(
        printer_columns().contains(&format!("UpgradeProbe{id}")),
        "installed"
    );
    let chart = helm::chart_dir();
    ok(
        "helm",
        &[
            "upgrade",
            &release,
            chart.to_str().expect("utf-8"),
            "-n",
            &ns,
            "--take-ownership",
        ],
    );
    assert!(
        !printer_columns().contains(&format!("UpgradeProbe{id}")),
        "upgraded back"
    );
}
