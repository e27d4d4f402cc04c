//! Admission: the API server itself refuses invalid SecurityGroupRules and
//! ProviderConfigs (OpenAPI schema and CEL rules in crds/), with an error
//! whose causes name the field's path and whose message says what is
//! allowed. Creates are dry runs; immutability needs a stored object, which
//! points at a ProviderConfig that does not exist, so the operator never
//! calls a provider for it.

use kube::{
    Api, Client,
    api::{ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams},
};
use secgroup_operator::api::{ProviderConfig, SecurityGroupRule};
use serde_json::{Value, json};

use crate::support::{env, merge_json, namespace};

/// One invalid manifest: `patch` (a JSON merge patch of `spec`) turns the
/// valid base into it; the refusal must name `field` and contain `allowed`.
struct Case {
    what: &'static str,
    patch: Value,
    field: &'static str,
    allowed: &'static str,
}

fn case(what: &'static str, patch: Value, field: &'static str, allowed: &'static str) -> Case {
    Case {
        what,
        patch,
        field,
        allowed,
    }
}

fn rule_base() -> Value {
    json!({
        "providerConfigRef": {"name": "e2e-admission-none"},
        "securityGroupId": "sg-admission1",
        "region": "cn-hangzhou",
        "rule": {"direction": "Ingress", "protocol": "TCP", "ports": {"from": 22, "to": 22},
                 "peer": {"cidr": "10.0.0.0/8"}}
    })
}

fn peer(p: Value) -> Value {
    json!({"rule": {"peer": p}})
}

fn rule(r: Value) -> Value {
    json!({ "rule": r })
}

#[rustfmt::skip] // one case a line reads as a table
fn invalid_rules() -> Vec<Case> {
    vec![
        case("IPv4 prefix over 32", peer(json!({"cidr": "10.0.0.0/33"})), "spec.rule.peer.cidr", "IPv4 CIDR such as"),
        case("IPv4 octet over 255", peer(json!({"cidr": "10.0.0.256/32"})), "spec.rule.peer.cidr", "IPv4 CIDR such as"),
        case("IPv4 host bits set", peer(json!({"cidr": "10.1.2.3/8"})), "spec.rule.peer.cidr", "host bits zero"),
        case("IPv6 network as cidr", peer(json!({"cidr": "2001:db8::/32"})), "spec.rule.peer.cidr", "IPv4 CIDR such as"),
        case("IPv6 prefix over 128", peer(json!({"cidr": null, "ipv6Cidr": "2001:db8::/129"})), "spec.rule.peer.ipv6Cidr", "IPv6 CIDR such as"),
        case("IPv4 network as ipv6Cidr", peer(json!({"cidr": null, "ipv6Cidr": "10.0.0.0/8"})), "spec.rule.peer.ipv6Cidr", "IPv6 CIDR such as"),
        case("IPv6 host bits set", peer(json!({"cidr": null, "ipv6Cidr": "2001:db8::1/32"})), "spec.rule.peer.ipv6Cidr", "host bits zero"),
        case("no peer at all", peer(json!({"cidr": null})), "spec.rule.peer", "exactly one of cidr, ipv6Cidr or securityGroupId"),
        case("two peers", peer(json!({"securityGroupId": "sg-other1"})), "spec.rule.peer", "exactly one of cidr, ipv6Cidr or securityGroupId"),
        case("owner id without a peer group", peer(json!({"ownerId": "1234"})), "spec.rule.peer.ownerId", "only with securityGroupId"),
        case("owner account without a peer group", peer(json!({"ownerAccount": "ops"})), "spec.rule.peer.ownerAccount", "only with securityGroupId"),
        case("bad peer group id", peer(json!({"cidr": null, "securityGroupId": "SG 1"})), "spec.rule.peer.securityGroupId", "should match"),
        case("from above to", rule(json!({"ports": {"from": 443, "to": 80}})), "spec.rule.ports", "'from' must be less than or equal to 'to'"),
        case("port 0", rule(json!({"ports": {"from": 0}})), "spec.rule.ports.from", "greater than or equal to 1"),
        case("port 65536", rule(json!({"ports": {"to": 65536}})), "spec.rule.ports.to", "less than or equal to 65535"),
        case("source port 0", rule(json!({"sourcePorts": {"from": 0, "to": 10}})), "spec.rule.sourcePorts.from", "greater than or equal to 1"),
        case("ports with ICMP", rule(json!({"protocol": "ICMP"})), "spec.rule.ports", "only with protocol TCP or UDP"),
        case("ports with ALL", rule(json!({"protocol": "ALL"})), "spec.rule.ports", "only with protocol TCP or UDP"),
        case("source ports with GRE", rule(json!({"protocol": "GRE", "ports": null, "sourcePorts": {"from": 1, "to": 2}})), "spec.rule.sourcePorts", "only with protocol TCP or UDP"),
        case("priority 0", rule(json!({"priority": 0})), "spec.rule.priority", "greater than or equal to 1"),
        case("priority 101", rule(json!({"priority": 101})), "spec.rule.priority", "less than or equal to 100"),
        case("description of 257 characters", rule(json!({"description": "d".repeat(257)})), "spec.rule.description", "256"),
        case("description of 235 characters", rule(json!({"description": "d".repeat(235)})), "spec.rule.description", "at most 234 characters"),
        case("description carrying a mark", rule(json!({"description": "web sgo:0123456789abcdef"})), "spec.rule.description", "must not contain 'sgo:'"),
        case("Internet NIC with a peer group", rule(json!({"nicType": "Internet", "peer": {"cidr": null, "securityGroupId": "sg-other1"}})), "spec.rule.nicType", "must be Intranet"),
        case("unknown protocol", rule(json!({"protocol": "SCTP"})), "spec.rule.protocol", "supported values: \"TCP\", \"UDP\""),
        case("unknown direction", rule(json!({"direction": "Inbound"})), "spec.rule.direction", "supported values: \"Ingress\", \"Egress\""),
        case("unknown policy", rule(json!({"policy": "Reject"})), "spec.rule.policy", "supported values: \"Accept\", \"Drop\""),
        case("unknown ensure", json!({"ensure": "Gone"}), "spec.ensure", "supported values: \"Present\", \"Absent\""),
        case("unknown deletion policy", json!({"deletionPolicy": "Keep"}), "spec.deletionPolicy", "supported values: \"Delete\", \"Orphan\""),
        case("uppercase group id", json!({"securityGroupId": "SG-1"}), "spec.securityGroupId", "should match"),
        case("group id without a prefix", json!({"securityGroupId": "1234567"}), "spec.securityGroupId", "should match"),
        case("group id of 65 characters", json!({"securityGroupId": format!("sg-{}", "a".repeat(62))}), "spec.securityGroupId", "64"),
        case("region with an underscore", json!({"region": "cn_hangzhou"}), "spec.region", "should match"),
        case("no ProviderConfig name", json!({"providerConfigRef": {"name": ""}}), "spec.providerConfigRef.name", "at least 1"),
    ]
}

/// Merge patches of a stored rule's spec that change an immutable field.
#[rustfmt::skip] // one case a line reads as a table
fn immutable_changes() -> Vec<Case> {
    vec![
        case("securityGroupId changed", json!({"securityGroupId": "sg-admission2"}), "spec.securityGroupId", "immutable"),
        case("region changed", json!({"region": "cn-shanghai"}), "spec.region", "immutable"),
        case("region removed", json!({"region": null}), "spec.region", "immutable"),
        case("providerConfigRef changed", json!({"providerConfigRef": {"name": "e2e-admission-other"}}), "spec.providerConfigRef", "immutable"),
        case("direction changed", rule(json!({"direction": "Egress"})), "spec.rule.direction", "immutable"),
    ]
}

fn config_base() -> Value {
    json!({
        "type": "alibaba",
        "region": "cn-hangzhou",
        "credentialsSecretRef": {"namespace": "secgroup-e2e-system", "name": "cloud-credentials"}
    })
}

#[rustfmt::skip] // one case a line reads as a table
fn invalid_configs() -> Vec<Case> {
    vec![
        case("unknown type", json!({"type": "aws"}), "spec.type", "supported values: \"alibaba\", \"apsarastack\", \"baidu\""),
        case("Apsara Stack without endpoint", json!({"type": "apsarastack"}), "spec.endpoint", "required when spec.type is apsarastack"),
        case("Apsara settings on Alibaba Cloud", json!({"apsara": {"organizationId": "1"}}), "spec.apsara", "only when spec.type is apsarastack"),
        case("signature version on Baidu", json!({"type": "baidu", "region": "bj", "signatureVersion": "v3"}), "spec.signatureVersion", "alibaba and apsarastack only"),
        case("V3 signatures on Apsara Stack", json!({"type": "apsarastack", "endpoint": "https://ecs.example.internal", "signatureVersion": "v3"}), "spec.signatureVersion", "must be v2"),
        case("unknown signature version", json!({"signatureVersion": "v4"}), "spec.signatureVersion", "supported values: \"v2\", \"v3\""),
        case("endpoint that is not HTTP", json!({"endpoint": "ftp://ecs.example.com"}), "spec.endpoint", "should match"),
        case("credentials in the endpoint", json!({"endpoint": "https://ak:sk@ecs.example.com"}), "spec.endpoint", "should match"),
        case("plain HTTP without the opt-in", json!({"endpoint": "http://ecs.example.com"}), "spec.endpoint", "set spec.allowInsecureHttp: true"),
        case("plain HTTP with the opt-in off", json!({"endpoint": "http://ecs.example.com", "allowInsecureHttp": false}), "spec.endpoint", "use https://"),
        case("no region", json!({"region": null}), "spec.region", "Required value"),
        case("no Secret name", json!({"credentialsSecretRef": {"name": null}}), "spec.credentialsSecretRef.name", "Required value"),
        case("qps 0", json!({"rateLimit": {"qps": 0, "burst": 1}}), "spec.rateLimit.qps", "greater than or equal to 1"),
        case("resync every 10 seconds", json!({"defaults": {"resyncIntervalSeconds": 10}}), "spec.defaults.resyncIntervalSeconds", "greater than or equal to 30"),
        case("two CA sources", json!({"tls": {"caBundle": "-----BEGIN CERTIFICATE-----", "caConfigMapRef": {"namespace": "n", "name": "ca"}}}), "spec.tls", "exactly one of caBundle, caSecretRef or caConfigMapRef"),
        case("no CA source", json!({"tls": {}}), "spec.tls", "exactly one of caBundle, caSecretRef or caConfigMapRef"),
        case("unknown Apsara path", json!({"type": "apsarastack", "endpoint": "https://ecs.example.internal", "apsara": {"path": "Proxy"}}), "spec.apsara.path", "supported values: \"Root\", \"Asapi\", \"Route\""),
    ]
}

fn with_spec(kind: &str, name: &str, spec: Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "secgroup.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": name},
        "spec": spec,
    }))
    .expect("object")
}

fn patched(base: &Value, patch: &Value) -> Value {
    let mut spec = base.clone();
    merge_json(&mut spec, patch);
    spec
}

const DRY_RUN: PostParams = PostParams {
    dry_run: true,
    field_manager: None,
};

/// Checks one refusal: a 422 whose causes name `case.field` exactly and
/// whose message says what is allowed. Returns what was wrong, if anything.
fn check(case: &Case, result: Result<DynamicObject, kube::Error>) -> Option<String> {
    let status = match result {
        Ok(_) => return Some(format!("{}: accepted", case.what)),
        Err(kube::Error::Api(status)) if status.code == 422 => status,
        Err(e) => return Some(format!("{}: not a validation error: {e}", case.what)),
    };
    let fields: Vec<String> = status
        .details
        .map(|d| d.causes.into_iter().map(|c| c.field).collect())
        .unwrap_or_default();
    let named = fields.iter().any(|f| f == case.field);
    let says = status.message.contains(case.allowed);
    (!named || !says).then(|| {
        format!(
            "{}: expected field {:?} (causes name {fields:?}) and {:?} in {:?}",
            case.what, case.field, case.allowed, status.message
        )
    })
}

fn report(failures: &[String]) {
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

async fn rules_in_a_new_namespace(prefix: &str) -> Api<DynamicObject> {
    env();
    let client = Client::try_default().await.expect("kubeconfig");
    let ns = namespace(&client, prefix, json!({})).await;
    Api::namespaced_with(client, &ns, &ApiResource::erase::<SecurityGroupRule>(&()))
}

/// Dry-run creates of `base` changed by each case. The base itself passes,
/// so each refusal is the change's doing.
async fn creates_are_refused(api: &Api<DynamicObject>, kind: &str, base: &Value, cases: &[Case]) {
    api.create(
        &DRY_RUN,
        &with_spec(kind, "e2e-admission-base", base.clone()),
    )
    .await
    .unwrap_or_else(|e| panic!("the base {kind} is refused: {e}"));
    let mut failures = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let object = with_spec(kind, &format!("e2e-admission-{i}"), patched(base, &c.patch));
        failures.extend(check(c, api.create(&DRY_RUN, &object).await));
    }
    report(&failures);
}

#[tokio::test]
async fn invalid_rules_are_refused_naming_the_field() {
    let api = rules_in_a_new_namespace("e2e-admission").await;
    creates_are_refused(&api, "SecurityGroupRule", &rule_base(), &invalid_rules()).await;
}

#[tokio::test]
async fn invalid_provider_configs_are_refused_naming_the_field() {
    env();
    let client = Client::try_default().await.expect("kubeconfig");
    let api = Api::all_with(client, &ApiResource::erase::<ProviderConfig>(&()));
    creates_are_refused(&api, "ProviderConfig", &config_base(), &invalid_configs()).await;
}

#[tokio::test]
async fn immutable_fields_cannot_change() {
    let api = rules_in_a_new_namespace("e2e-immutable").await;
    api.create(
        &PostParams::default(),
        &with_spec("SecurityGroupRule", "stored", rule_base()),
    )
    .await
    .expect("the base rule is valid");
    let dry_run = PatchParams {
        dry_run: true,
        ..PatchParams::default()
    };
    let update = |patch: Value| {
        let api = api.clone();
        let dry_run = dry_run.clone();
        async move {
            api.patch("stored", &dry_run, &Patch::Merge(json!({ "spec": patch })))
                .await
        }
    };
    // Mutable fields do change, so the refusals below are about immutability.
    update(json!({"ensure": "Absent", "rule": {"ports": {"from": 2222, "to": 2222}}}))
        .await
        .expect("mutable fields change");
    let mut failures = Vec::new();
    for c in &immutable_changes() {
        failures.extend(check(c, update(c.patch.clone()).await));
    }
    api.delete("stored", &DeleteParams::default())
        .await
        .expect("delete");
    report(&failures);
}
