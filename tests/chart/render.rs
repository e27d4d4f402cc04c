//! What the chart renders for a given set of values.

use std::collections::BTreeSet;

use clap::Parser;
use secgroup_operator::cli::{Cli, Command};
use serde_yaml::Value;

use crate::helm::*;

/// (apiGroup, resource, verbs, resourceNames) of every rule of a Role or ClusterRole.
fn rights(role: &Value) -> BTreeSet<(String, String, Vec<String>, Vec<String>)> {
    let mut out = BTreeSet::new();
    for rule in role["rules"].as_sequence().expect("rules") {
        let mut verbs = strings(&rule["verbs"]);
        verbs.sort();
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                out.insert((
                    group.clone(),
                    resource,
                    verbs.clone(),
                    strings(&rule["resourceNames"]),
                ));
            }
        }
    }
    out
}

fn right(
    group: &str,
    resource: &str,
    verbs: &[&str],
) -> (String, String, Vec<String>, Vec<String>) {
    let mut verbs: Vec<String> = verbs.iter().map(|v| v.to_string()).collect();
    verbs.sort();
    (group.into(), resource.into(), verbs, vec![])
}

fn rule_rights() -> Vec<(String, String, Vec<String>, Vec<String>)> {
    vec![
        right(
            "secgroup.dev",
            "securitygrouprules",
            &["list", "watch", "patch"],
        ),
        right("secgroup.dev", "securitygrouprules/status", &["patch"]),
        right("events.k8s.io", "events", &["create", "patch"]),
    ]
}

fn roles_named<'a>(objects: &'a [Value], suffix: &str) -> Vec<&'a Value> {
    of_kind(objects, "Role")
        .into_iter()
        .filter(|r| str_of(&r["metadata"]["name"]).ends_with(suffix))
        .collect()
}

/// Helm's YAML round trip writes `minimum: 1.0` as `1`; for a schema both
/// are the same JSON number.
fn numbers_as_floats(value: &Value) -> Value {
    match value {
        Value::Number(n) => Value::from(n.as_f64().expect("number")),
        Value::Sequence(items) => Value::Sequence(items.iter().map(numbers_as_floats).collect()),
        Value::Mapping(map) => Value::Mapping(
            map.iter()
                .map(|(k, v)| (k.clone(), numbers_as_floats(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[test]
fn crds_are_the_generated_files_and_kept_on_uninstall() {
    let objects = template(&[]);
    let crds = of_kind(&objects, "CustomResourceDefinition");
    assert_eq!(crds.len(), 2);
    for crd in crds {
        let name = str_of(&crd["metadata"]["name"]);
        let file =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("crds/{name}.yaml"));
        let generated: Value =
            serde_yaml::from_str(&std::fs::read_to_string(&file).expect("crds/ file"))
                .expect("YAML");
        assert_eq!(
            numbers_as_floats(&crd["spec"]),
            numbers_as_floats(&generated["spec"]),
            "{name}: the chart's schema differs from crds/"
        );
        assert_eq!(
            crd["metadata"]["annotations"]["helm.sh/resource-policy"],
            "keep"
        );
    }
    let unkept = template(&["--set", "crds.keep=false"]);
    assert!(
        of_kind(&unkept, "CustomResourceDefinition")
            .iter()
            .all(|c| c["metadata"]["annotations"]
                .get("helm.sh/resource-policy")
                .is_none())
    );
    assert!(
        of_kind(
            &template(&["--set", "crds.install=false"]),
            "CustomResourceDefinition"
        )
        .is_empty()
    );
}

/// The operator's own ClusterRole (the others are the tenants' roles).
fn operator_role(objects: &[Value]) -> &Value {
    let bound = str_of(&one(objects, "ClusterRoleBinding")["roleRef"]["name"]).to_owned();
    of_kind(objects, "ClusterRole")
        .into_iter()
        .find(|r| str_of(&r["metadata"]["name"]) == bound)
        .expect("the bound ClusterRole")
}

fn cluster_role<'a>(objects: &'a [Value], suffix: &str) -> &'a Value {
    of_kind(objects, "ClusterRole")
        .into_iter()
        .find(|r| str_of(&r["metadata"]["name"]).ends_with(suffix))
        .unwrap_or_else(|| panic!("a ClusterRole named *{suffix}"))
}

fn aggregated_to(role: &Value) -> BTreeSet<String> {
    role["metadata"]["labels"]
        .as_mapping()
        .into_iter()
        .flatten()
        .filter(|(_, v)| str_of(v) == "true")
        .filter_map(|(k, _)| {
            str_of(k)
                .strip_prefix("rbac.authorization.k8s.io/aggregate-to-")
                .map(str::to_owned)
        })
        .collect()
}

/// Tenants get rules to read and write, ProviderConfigs to read, and never
/// the status subresource, aggregated into the built-in roles.
#[test]
fn tenant_roles_never_grant_status_or_provider_configs_writes() {
    let objects = template(&[]);
    let view = cluster_role(&objects, "-view");
    assert_eq!(
        rights(view),
        BTreeSet::from([
            right(
                "secgroup.dev",
                "securitygrouprules",
                &["get", "list", "watch"]
            ),
            right("secgroup.dev", "providerconfigs", &["get", "list", "watch"]),
        ])
    );
    assert_eq!(
        aggregated_to(view),
        BTreeSet::from(["view".to_owned(), "edit".to_owned(), "admin".to_owned()])
    );
    let edit = cluster_role(&objects, "-edit");
    assert_eq!(
        rights(edit),
        BTreeSet::from([right(
            "secgroup.dev",
            "securitygrouprules",
            &["create", "update", "patch", "delete", "deletecollection"]
        )])
    );
    assert_eq!(
        aggregated_to(edit),
        BTreeSet::from(["edit".to_owned(), "admin".to_owned()])
    );
    let off = template(&["--set", "rbac.tenantRoles=false"]);
    let names: Vec<&str> = of_kind(&off, "ClusterRole")
        .into_iter()
        .map(|r| str_of(&r["metadata"]["name"]))
        .collect();
    assert!(
        names
            .iter()
            .all(|n| !n.ends_with("-view") && !n.ends_with("-edit")),
        "only the operator's and the metrics reader's: {names:?}"
    );
}

#[test]
fn cluster_role_grants_only_what_the_operator_calls() {
    let objects = template(&[]);
    let mut expected: BTreeSet<_> = rule_rights().into_iter().collect();
    expected.insert(right("secgroup.dev", "providerconfigs", &["list", "watch"]));
    expected.insert(right("secgroup.dev", "providerconfigs/status", &["patch"]));
    expected.insert(right("", "namespaces", &["list", "watch"]));
    // The in-use guard's finalizer on ProviderConfigs.
    expected.insert(right("secgroup.dev", "providerconfigs", &["patch"]));
    // The rules' CRD, by name only: its deletion abandons rules.
    let mut crd = right(
        "apiextensions.k8s.io",
        "customresourcedefinitions",
        &["get", "list", "watch"],
    );
    crd.3 = vec!["securitygrouprules.secgroup.dev".into()];
    expected.insert(crd);
    // Reviews of the tokens that scrape /metrics (metrics.auth.enabled).
    expected.insert(right("authentication.k8s.io", "tokenreviews", &["create"]));
    expected.insert(right(
        "authorization.k8s.io",
        "subjectaccessreviews",
        &["create"],
    ));
    assert_eq!(rights(operator_role(&objects)), expected);
    let open = template(&["--set", "metrics.auth.enabled=false"]);
    assert!(
        rights(operator_role(&open))
            .iter()
            .all(|(g, _, _, _)| !g.starts_with("authentication") && !g.starts_with("authorization")),
        "no review rights without metrics auth"
    );
    let binding = one(&objects, "ClusterRoleBinding");
    assert_eq!(
        binding["subjects"][0]["name"],
        one(&objects, "ServiceAccount")["metadata"]["name"]
    );
    assert_eq!(binding["subjects"][0]["namespace"], NAMESPACE);
}

#[test]
fn secrets_are_readable_in_the_secret_namespaces_only() {
    let default = template(&[]);
    let roles = roles_named(&default, "-secrets");
    assert_eq!(roles.len(), 1);
    assert_eq!(
        roles[0]["metadata"]["namespace"], NAMESPACE,
        "default: the release namespace"
    );
    assert_eq!(
        args(&default)
            .iter()
            .filter(|a| a.starts_with("--secret-namespace="))
            .count(),
        1
    );

    let two = template(&["--set", "secretNamespaces={team-a,team-b}"]);
    let roles = roles_named(&two, "-secrets");
    let namespaces: BTreeSet<&str> = roles
        .iter()
        .map(|r| str_of(&r["metadata"]["namespace"]))
        .collect();
    assert_eq!(namespaces, BTreeSet::from(["team-a", "team-b"]));
    for role in &roles {
        assert_eq!(
            rights(role),
            BTreeSet::from([
                right("", "secrets", &["get", "list", "watch"]),
                right("", "configmaps", &["get", "list", "watch"])
            ])
        );
    }
    let bindings: BTreeSet<&str> = of_kind(&two, "RoleBinding")
        .iter()
        .filter(|b| {
            b["roleRef"]["name"]
                .as_str()
                .is_some_and(|n| n.ends_with("-secrets"))
        })
        .map(|b| str_of(&b["metadata"]["namespace"]))
        .collect();
    assert_eq!(bindings, namespaces);
    let flags: Vec<String> = args(&two)
        .into_iter()
        .filter(|a| a.starts_with("--secret-namespace="))
        .collect();
    assert_eq!(
        flags,
        ["--secret-namespace=team-a", "--secret-namespace=team-b"]
    );
}

#[test]
fn leader_election_follows_replicas_or_the_force_value() {
    let single = template(&[]);
    assert!(!args(&single).contains(&"--leader-election".to_owned()));
    assert_eq!(
        one(&single, "Deployment")["spec"]["strategy"]["type"],
        "Recreate"
    );
    assert!(roles_named(&single, "-leader-election").is_empty());
    assert!(of_kind(&single, "PodDisruptionBudget").is_empty());

    let ha = template(&["--set", "replicaCount=3"]);
    assert!(args(&ha).contains(&"--leader-election".to_owned()));
    assert!(args(&ha).contains(&"--leader-election-lease-name=secgroup-operator".to_owned()));
    assert_eq!(
        one(&ha, "Deployment")["spec"]["strategy"]["type"],
        "RollingUpdate"
    );
    let lease = roles_named(&ha, "-leader-election");
    assert_eq!(lease.len(), 1);
    assert_eq!(lease[0]["metadata"]["namespace"], NAMESPACE);
    let mut update = right("coordination.k8s.io", "leases", &["get", "update", "patch"]);
    update.3 = vec!["secgroup-operator".into()];
    assert_eq!(
        rights(lease[0]),
        BTreeSet::from([right("coordination.k8s.io", "leases", &["create"]), update])
    );
    assert_eq!(one(&ha, "PodDisruptionBudget")["spec"]["minAvailable"], 1);

    let forced = template(&[
        "--set",
        "leaderElection.force=true",
        "--set",
        "leaderElection.leaseName=shard-a",
    ]);
    assert!(args(&forced).contains(&"--leader-election-lease-name=shard-a".to_owned()));
    assert_eq!(roles_named(&forced, "-leader-election").len(), 1);
    assert!(
        of_kind(&forced, "PodDisruptionBudget").is_empty(),
        "no budget for one pod"
    );
}

#[test]
fn watch_namespace_moves_the_rights_on_rules_into_a_role() {
    let objects = template(&["--set", "watchNamespace=web"]);
    let cluster = rights(operator_role(&objects));
    assert!(cluster.iter().all(|(g, _, _, _)| g != "events.k8s.io"));
    assert!(
        cluster
            .iter()
            .all(|(_, r, _, _)| !r.starts_with("securitygrouprules"))
    );
    let roles = roles_named(&objects, "-rules");
    assert_eq!(roles.len(), 1);
    assert_eq!(roles[0]["metadata"]["namespace"], "web");
    assert_eq!(rights(roles[0]), rule_rights().into_iter().collect());
    assert!(args(&objects).contains(&"--namespace=web".to_owned()));
}

#[test]
fn the_pod_meets_the_restricted_pod_security_standard() {
    let objects = template(&[]);
    let pod = &one(&objects, "Deployment")["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let c = container(&objects);
    let sc = &c["securityContext"];
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(strings(&sc["capabilities"]["drop"]), ["ALL"]);
    assert!(sc["capabilities"].get("add").is_none());
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["livenessProbe"]["httpGet"]["port"], "health");
    assert_eq!(c["readinessProbe"]["httpGet"]["port"], "health");
    assert!(c["resources"]["requests"]["memory"].is_string());
    assert!(c["resources"]["limits"]["memory"].is_string());
    for (name, field) in [
        ("POD_NAME", "metadata.name"),
        ("POD_NAMESPACE", "metadata.namespace"),
    ] {
        let env = c["env"]
            .as_sequence()
            .expect("env")
            .iter()
            .find(|e| e["name"] == name);
        assert_eq!(
            env.expect(name)["valueFrom"]["fieldRef"]["fieldPath"],
            field
        );
    }
}

#[test]
fn metrics_service_targets_the_pods_port() {
    let objects = template(&[]);
    let service = one(&objects, "Service");
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "metrics");
    assert_eq!(container(&objects)["ports"][0]["name"], "metrics");
    assert_eq!(
        service["spec"]["selector"],
        one(&objects, "Deployment")["spec"]["selector"]["matchLabels"]
    );
    assert!(args(&objects).contains(&"--metrics-addr=0.0.0.0:8080".to_owned()));
}

#[test]
fn optional_objects_render_only_when_enabled() {
    let default = template(&[]);
    assert!(of_kind(&default, "ServiceMonitor").is_empty());
    assert!(of_kind(&default, "NetworkPolicy").is_empty());
    let values = chart_dir().join("ci/ha-values.yaml");
    let all = template(&["--values", values.to_str().expect("utf-8")]);
    let monitor = one(&all, "ServiceMonitor");
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");
    assert_eq!(monitor["metadata"]["labels"]["release"], "prometheus");
    let policy = one(&all, "NetworkPolicy");
    assert_eq!(
        strings(&policy["spec"]["policyTypes"]),
        ["Ingress", "Egress"]
    );
    assert_eq!(policy["spec"]["ingress"][0]["ports"][0]["port"], "metrics");
    assert_eq!(policy["spec"]["ingress"][1]["ports"][0]["port"], "health");
    assert!(
        policy["spec"]["ingress"][1].get("from").is_none(),
        "the kubelet probes from the node"
    );
}

/// The finalizer policy renders where the API server serves it and adds the
/// operator's own finalizer, at create only, to exactly the rules this
/// release watches: with a label selector only once `objectSelector` says
/// which, with a watched namespace only there.
#[test]
fn the_finalizer_policy_finalizes_only_the_rules_the_release_watches() {
    const SERVED: [&str; 2] = [
        "--api-versions",
        "admissionregistration.k8s.io/v1/MutatingAdmissionPolicy",
    ];
    let policies = |extra: &[&str]| {
        let args: Vec<&str> = SERVED.iter().chain(extra).copied().collect();
        template(&args)
            .into_iter()
            .filter(|o| str_of(&o["kind"]).starts_with("MutatingAdmissionPolicy"))
            .collect::<Vec<_>>()
    };
    assert!(
        of_kind(&template(&[]), "MutatingAdmissionPolicy").is_empty(),
        "not where the API server does not serve it"
    );
    let all = policies(&[]);
    let policy = one(&all, "MutatingAdmissionPolicy");
    let binding = one(&all, "MutatingAdmissionPolicyBinding");
    assert_eq!(binding["spec"]["policyName"], policy["metadata"]["name"]);
    assert!(
        binding["spec"].get("matchResources").is_none(),
        "every rule"
    );
    let finalizer = secgroup_operator::api::FINALIZER;
    let condition = str_of(&policy["spec"]["matchConditions"][0]["expression"]);
    assert!(condition.contains(&format!("'{finalizer}'")), "{condition}");
    let patch = str_of(&policy["spec"]["mutations"][0]["jsonPatch"]["expression"]);
    assert_eq!(
        patch.matches(&format!("\"{finalizer}\"")).count(),
        2,
        "{patch}"
    );
    assert_eq!(
        strings(&policy["spec"]["matchConstraints"]["resourceRules"][0]["operations"]),
        ["CREATE"]
    );
    assert!(policies(&["--set", "finalizerPolicy.enabled=false"]).is_empty());
    assert!(
        policies(&["--set", "labelSelector=team=a"]).is_empty(),
        "a label selector needs objectSelector to match it"
    );
    let sharded = policies(&[
        "--set",
        "labelSelector=team=a",
        "--set",
        "finalizerPolicy.objectSelector.matchLabels.team=a",
        "--set",
        "watchNamespace=rules",
    ]);
    let matched = &one(&sharded, "MutatingAdmissionPolicyBinding")["spec"]["matchResources"];
    assert_eq!(matched["objectSelector"]["matchLabels"]["team"], "a");
    assert_eq!(
        matched["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        "rules"
    );
}

/// /metrics asks for a reviewed bearer token by default, probes are on their
/// own port, scrapers get a ClusterRole to bind, and the ServiceMonitor
/// sends Prometheus's token.
#[test]
fn metrics_need_a_reviewed_token_and_the_service_monitor_sends_one() {
    let objects = template(&[]);
    let argv = args(&objects);
    assert!(argv.contains(&"--metrics-auth".to_owned()), "{argv:?}");
    assert!(
        argv.contains(&"--health-addr=0.0.0.0:8081".to_owned()),
        "{argv:?}"
    );
    let ports = container(&objects)["ports"].as_sequence().expect("ports");
    assert!(
        ports
            .iter()
            .any(|p| p["name"] == "health" && p["containerPort"] == 8081)
    );
    let reader = of_kind(&objects, "ClusterRole")
        .into_iter()
        .find(|r| str_of(&r["metadata"]["name"]).ends_with("-metrics-reader"))
        .expect("a metrics-reader ClusterRole");
    let rules = reader["rules"].as_sequence().expect("rules");
    assert_eq!(rules.len(), 1);
    assert_eq!(strings(&rules[0]["nonResourceURLs"]), ["/metrics"]);
    assert_eq!(strings(&rules[0]["verbs"]), ["get"]);

    let values = chart_dir().join("ci/ha-values.yaml");
    let all = template(&["--values", values.to_str().expect("utf-8")]);
    let endpoint = &one(&all, "ServiceMonitor")["spec"]["endpoints"][0];
    assert_eq!(
        endpoint["bearerTokenFile"],
        "/var/run/secrets/kubernetes.io/serviceaccount/token"
    );
    let binding = of_kind(&all, "ClusterRoleBinding")
        .into_iter()
        .find(|b| b["roleRef"]["name"] == reader["metadata"]["name"])
        .expect("the readers are bound");
    assert_eq!(binding["subjects"][0]["name"], "prometheus-k8s");
    assert_eq!(binding["subjects"][0]["namespace"], "monitoring");

    let open = template(&[
        "--set",
        "metrics.auth.enabled=false",
        "--values",
        values.to_str().expect("utf-8"),
    ]);
    assert!(!args(&open).contains(&"--metrics-auth".to_owned()));
    assert!(
        one(&open, "ServiceMonitor")["spec"]["endpoints"][0]
            .get("bearerTokenFile")
            .is_none()
    );
}

/// Only labelled Secrets are read by default, so Helm's release Secrets in
/// the same namespace never reach the operator.
#[test]
fn secrets_are_selected_by_label() {
    let objects = template(&[]);
    assert!(
        args(&objects)
            .contains(&"--secret-label-selector=secgroup.dev/credentials=true".to_owned())
    );
    let all = template(&["--set", "secretLabelSelector="]);
    assert!(
        args(&all)
            .iter()
            .all(|a| !a.starts_with("--secret-label-selector"))
    );
}

/// The Deployment's arguments are a valid command line of this operator.
/// (Renders with leader election join this list once the operator has the
/// `--leader-election` flags.)
#[test]
fn deployment_arguments_parse_with_the_operator_cli() {
    for values in [
        vec![],
        vec![
            "--set",
            "watchNamespace=web",
            "--set",
            "labelSelector=shard=a",
            "--set",
            "secretNamespaces={a,b}",
        ],
    ] {
        let objects = template(&values);
        let argv = std::iter::once("secgroup-operator".to_owned()).chain(args(&objects));
        let cli = Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("{values:?}: {e}"));
        let Command::Run(run) = cli.command else {
            panic!("not `run`")
        };
        assert_eq!(run.metrics_addr.port(), 8080);
        assert_eq!(run.health_addr.map(|a| a.port()), Some(8081));
        assert!(run.metrics_auth);
        assert_eq!(
            run.secret_label_selector.as_deref(),
            Some("secgroup.dev/credentials=true")
        );
        assert_eq!(run.resync_interval.as_secs(), 600);
        if values.is_empty() {
            assert_eq!(run.secret_namespaces, [NAMESPACE]);
            assert_eq!(run.namespace, None);
        } else {
            assert_eq!(run.secret_namespaces, ["a", "b"]);
            assert_eq!(run.namespace.as_deref(), Some("web"));
            assert_eq!(run.label_selector.as_deref(), Some("shard=a"));
        }
    }
}

#[test]
fn the_values_schema_refuses_bad_values() {
    for (set, field) in [
        ("logFormat=xml", "logFormat"),
        ("secretNamespaces={Team_A}", "secretNamespaces"),
        ("replicaCount=-1", "replicaCount"),
        ("leaderElection.enabled=true", "enabled"),
        ("image.digest=latest", "digest"),
        ("metrics.auth.enabled=yes", "enabled"),
        ("health.port=80", "port"),
        // A label value must be a string: `--set` makes 123 a number.
        (
            "finalizerPolicy.objectSelector.matchLabels.team=123",
            "team",
        ),
    ] {
        let err = try_template(&["--set", set]).expect_err(set);
        assert!(err.contains(field), "{set}: {err}");
    }
}
