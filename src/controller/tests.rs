//! Reconcile decisions, end to end inside the process: `reconcile` against
//! kube-rs's tower-test mock API server and a provider double. What is
//! checked is what reaches the outside: provider calls, status patches,
//! finalizer patches and events.

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use async_trait::async_trait;
use futures::channel::mpsc;
use http::{Request, Response};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::{
    Client, Resource,
    client::Body,
    runtime::{
        controller::Action,
        events::{Recorder, Reporter},
        reflector::{self, ObjectRef, Store},
        watcher,
    },
};
use serde_json::{Value, json};

use super::{
    Context, Error,
    ownership::Mark,
    reconcile,
    resolve::{ConnectFailure, Connected, Connector, Resolver},
};
use crate::{
    api::{FINALIZER, ProviderConfig, SecurityGroupRule},
    metrics::Metrics,
    provider::{
        Authorize, DescribedRule, ErrorKind, GroupRef, Modify, Provider, ProviderError,
        ProviderKind, Receipt, Revoke, RevokeTarget,
    },
};

/// What the provider double was asked to do.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Call {
    Authorize { token: String },
    RevokeById { rule_id: String, token: String },
    RevokeByAttributes { token: String },
    Modify { rule_id: String },
    Describe,
}

/// Provider calls and API requests in the order they were made: `authorize`,
/// `revoke`, `modify`, `describe`; `PATCH status`, `PATCH rule` (the
/// finalizer), `POST event`.
type Journal = Arc<Mutex<Vec<String>>>;

/// A provider that records calls and answers from a script (default:
/// success), and keeps one group's rules as an authorize or revoke that
/// succeeds leaves them.
#[derive(Default)]
struct ProviderDouble {
    journal: Journal,
    calls: Mutex<Vec<Call>>,
    answers: Mutex<VecDeque<Result<Receipt, ProviderError>>>,
    group: Mutex<Vec<DescribedRule>>,
    /// Describes still to fail (transiently) before they answer.
    failing_describes: Mutex<u32>,
    /// Every describe is refused for its credentials.
    rejecting_describes: bool,
}

impl ProviderDouble {
    fn answering(answers: Vec<Result<Receipt, ProviderError>>) -> Arc<Self> {
        Arc::new(Self {
            answers: Mutex::new(answers.into()),
            ..Self::default()
        })
    }

    /// A double whose group already holds `rules`.
    fn holding(
        rules: Vec<DescribedRule>,
        answers: Vec<Result<Receipt, ProviderError>>,
    ) -> Arc<Self> {
        Arc::new(Self {
            answers: Mutex::new(answers.into()),
            group: Mutex::new(rules),
            ..Self::default()
        })
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().expect("lock").clone()
    }

    fn rule_ids(&self) -> Vec<String> {
        let group = self.group.lock().expect("lock");
        group.iter().map(|d| d.rule_id.clone()).collect()
    }

    /// Provider calls and API requests, in order.
    fn journal(&self) -> Vec<String> {
        self.journal.lock().expect("lock").clone()
    }

    fn record(&self, call: Call) {
        let name = match &call {
            Call::Authorize { .. } => "authorize",
            Call::RevokeById { .. } | Call::RevokeByAttributes { .. } => "revoke",
            Call::Modify { .. } => "modify",
            Call::Describe => "describe",
        };
        self.journal.lock().expect("lock").push(name.into());
        self.calls.lock().expect("lock").push(call);
    }

    fn answer(&self, call: Call) -> Result<Receipt, ProviderError> {
        self.record(call);
        self.answers
            .lock()
            .expect("lock")
            .pop_front()
            .unwrap_or(Ok(Receipt {
                request_id: Some("req-1".into()),
            }))
    }
}

#[async_trait]
impl Provider for ProviderDouble {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Alibaba
    }

    async fn authorize(&self, call: &Authorize) -> Result<Receipt, ProviderError> {
        let answer = self.answer(Call::Authorize {
            token: call.client_token.clone(),
        });
        let mut group = self.group.lock().expect("lock");
        if answer.is_ok()
            && !group
                .iter()
                .any(|d| self.kind().same_rule(&call.rule, &d.rule))
        {
            let rule_id = format!("sgr-new{}", group.len());
            group.push(DescribedRule {
                rule_id,
                rule: call.rule.clone(),
            });
        }
        answer
    }

    async fn revoke(&self, call: &Revoke) -> Result<Receipt, ProviderError> {
        let token = call.client_token.clone();
        let answer = self.answer(match &call.target {
            RevokeTarget::Id { rule_id, .. } => Call::RevokeById {
                rule_id: rule_id.clone(),
                token,
            },
            RevokeTarget::Attributes(_) => Call::RevokeByAttributes { token },
        });
        if answer.is_ok() {
            let mut group = self.group.lock().expect("lock");
            group.retain(|d| match &call.target {
                RevokeTarget::Id { rule_id, .. } => d.rule_id != *rule_id,
                RevokeTarget::Attributes(rule) => !self.kind().same_rule(rule, &d.rule),
            });
        }
        answer
    }

    async fn modify(&self, call: &Modify) -> Result<Receipt, ProviderError> {
        let answer = self.answer(Call::Modify {
            rule_id: call.rule_id.clone(),
        });
        if answer.is_ok() {
            let mut group = self.group.lock().expect("lock");
            for d in group.iter_mut().filter(|d| d.rule_id == call.rule_id) {
                d.rule.priority = call.rule.priority;
                d.rule.description.clone_from(&call.rule.description);
            }
        }
        answer
    }

    async fn describe(&self, _group: &GroupRef) -> Result<Vec<DescribedRule>, ProviderError> {
        self.record(Call::Describe);
        if self.rejecting_describes {
            return Err(ProviderError::new(
                ErrorKind::Unauthorized,
                "InvalidAccessKeyId.NotFound",
                "no such key",
            ));
        }
        let mut failing = self.failing_describes.lock().expect("lock");
        if *failing > 0 {
            *failing -= 1;
            return Err(ProviderError::new(
                ErrorKind::Transient,
                "ServiceUnavailable",
                "down",
            ));
        }
        Ok(self.group.lock().expect("lock").clone())
    }
}

/// Rule `web` (443 from 10.0.0.0/8) as the cloud holds it under `rule_id`,
/// carrying the mark of the object with `uid`, or no mark.
fn web_at_cloud(rule_id: &str, uid: Option<&str>) -> DescribedRule {
    let spec: crate::api::rule::RuleSpec = serde_json::from_value(json!({
        "direction": "Ingress", "protocol": "TCP",
        "ports": {"from": 443, "to": 443}, "peer": {"cidr": "10.0.0.0/8"}
    }))
    .expect("valid rule");
    let rule = super::convert::rule(&spec, ProviderKind::Alibaba).expect("supported");
    DescribedRule {
        rule_id: rule_id.into(),
        rule: uid.map_or_else(|| rule.clone(), |uid| Mark::of_uid(uid).on(&rule)),
    }
}

struct Connects(Arc<dyn Provider>);

impl Connector for Connects {
    fn connect(
        &self,
        _: &ProviderConfig,
        _: &Secret,
        _: &[u8],
    ) -> Result<Connected, ConnectFailure> {
        Ok(Connected {
            provider: self.0.clone(),
            access_key_id: "AKID-TEST".into(),
        })
    }
}

/// Connects like `Connects`, counting the clients it builds.
struct CountedConnects {
    connects: Connects,
    built: AtomicUsize,
}

impl Connector for CountedConnects {
    fn connect(
        &self,
        config: &ProviderConfig,
        secret: &Secret,
        extra_roots: &[u8],
    ) -> Result<Connected, ConnectFailure> {
        self.built.fetch_add(1, Ordering::SeqCst);
        self.connects.connect(config, secret, extra_roots)
    }
}

/// One request the mock API server received.
#[derive(Debug)]
struct Seen {
    method: String,
    path: String,
    body: Value,
}

impl Seen {
    fn is_status_patch(&self) -> bool {
        self.method == "PATCH" && self.path.ends_with("/status")
    }

    fn is_finalizer_patch(&self) -> bool {
        self.method == "PATCH"
            && self.path.contains("/securitygrouprules/")
            && !self.is_status_patch()
    }

    fn is_event(&self) -> bool {
        self.path.contains("/events")
    }
}

/// Serves the API requests of one reconcile: answers every request with the
/// rule (or echoes an event) and returns what it saw once the client is gone.
fn api_server(rule: SecurityGroupRule) -> (Client, tokio::task::JoinHandle<Vec<Seen>>) {
    api_server_logging(rule, Journal::default(), 0)
}

/// `api_server`, noting each request in `journal`, and answering the first
/// `conflicts` status writes with 409.
fn api_server_logging(
    rule: SecurityGroupRule,
    journal: Journal,
    mut conflicts: usize,
) -> (Client, tokio::task::JoinHandle<Vec<Seen>>) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let server = tokio::spawn(async move {
        let mut seen = Vec::new();
        let object = serde_json::to_value(&rule).expect("rule serialises");
        while let Some((request, respond)) = handle.next_request().await {
            let method = request.method().to_string();
            let path = request.uri().path().to_owned();
            let bytes = request.into_body().collect_bytes().await.expect("body");
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let seen_now = Seen { method, path, body };
            let what = if seen_now.is_status_patch() {
                "status"
            } else if seen_now.is_event() {
                "event"
            } else {
                "rule"
            };
            journal
                .lock()
                .expect("lock")
                .push(format!("{} {what}", seen_now.method));
            let (code, reply) = if seen_now.is_status_patch() && conflicts > 0 {
                conflicts -= 1;
                let conflict = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                      "reason": "Conflict", "code": 409, "message": "conflict"});
                (409, conflict)
            } else if seen_now.is_event() {
                (200, seen_now.body.clone())
            } else {
                (200, object.clone())
            };
            seen.push(seen_now);
            respond.send_response(
                Response::builder()
                    .status(code)
                    .body(Body::from(serde_json::to_vec(&reply).expect("json")))
                    .expect("response"),
            );
        }
        seen
    });
    (Client::new(service, "default"), server)
}

fn store_of<K>(objects: Vec<K>) -> Store<K>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let (store, mut writer) = reflector::store();
    writer.apply_watcher_event(&watcher::Event::Init);
    for object in objects {
        writer.apply_watcher_event(&watcher::Event::InitApply(object));
    }
    writer.apply_watcher_event(&watcher::Event::InitDone);
    store
}

fn config(allowed: Option<Value>) -> ProviderConfig {
    let mut spec = json!({
        "type": "alibaba",
        "region": "cn-hangzhou",
        "credentialsSecretRef": {"namespace": "system", "name": "creds"},
    });
    if let Some(selector) = allowed {
        spec["allowedNamespaces"] = selector;
    }
    serde_json::from_value(json!({
        "apiVersion": "secgroup.dev/v1alpha1", "kind": "ProviderConfig",
        "metadata": {"name": "cloud", "resourceVersion": "1"},
        "spec": spec,
    }))
    .expect("valid ProviderConfig")
}

fn world(provider: Arc<ProviderDouble>, config: ProviderConfig) -> Resolver {
    world_of(store_of(vec![config]), Arc::new(Connects(provider)))
}

fn world_of(configs: Store<ProviderConfig>, connector: Arc<dyn Connector>) -> Resolver {
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "creds", "namespace": "system", "resourceVersion": "7"},
        "stringData": {"accessKeyId": "AK", "accessKeySecret": "SK"},
    }))
    .expect("valid Secret");
    let namespace: Namespace = serde_json::from_value(json!({
        "metadata": {"name": "team", "labels": {"tier": "web"}},
    }))
    .expect("valid Namespace");
    Resolver::new(
        configs,
        HashMap::from([("system".to_owned(), store_of(vec![secret]))]),
        store_of(vec![namespace]),
        connector,
        Arc::new(Metrics::new()),
    )
}

/// A rule in namespace `team`, new (no finalizer, no status), with `extra`
/// merged into it.
fn rule(extra: Value) -> SecurityGroupRule {
    let mut object = json!({
        "apiVersion": "secgroup.dev/v1alpha1", "kind": "SecurityGroupRule",
        "metadata": {"name": "web", "namespace": "team", "uid": "uid-1", "generation": 1,
                     "resourceVersion": "1"},
        "spec": {"providerConfigRef": {"name": "cloud"}, "securityGroupId": "sg-1",
                 "rule": {"direction": "Ingress", "protocol": "TCP",
                          "ports": {"from": 443, "to": 443}, "peer": {"cidr": "10.0.0.0/8"}}},
    });
    merge(&mut object, extra);
    serde_json::from_value(object).expect("valid rule")
}

fn merge(into: &mut Value, from: Value) {
    match (into, from) {
        (Value::Object(into), Value::Object(from)) => {
            for (k, v) in from {
                merge(into.entry(k).or_insert(Value::Null), v);
            }
        }
        (into, from) => *into = from,
    }
}

/// The status a rule has once `web` was authorized with rule id `sgr-1`
/// at generation 1.
fn authorized_status() -> Value {
    json!({"metadata": {"finalizers": [FINALIZER]}, "status": {
        "observedGeneration": 1,
        "conditions": [{"type": "Ready", "status": "True", "reason": "Authorized",
                        "message": "the rule is authorized at the provider", "observedGeneration": 1,
                        "lastTransitionTime": "2026-01-01T00:00:00Z"}],
        "securityGroupId": "sg-1", "region": "cn-hangzhou", "ruleId": "sgr-1",
        "appliedRule": {"direction": "Ingress", "protocol": "TCP",
                        "ports": {"from": 443, "to": 443}, "peer": {"cidr": "10.0.0.0/8"}},
        "attemptEpoch": 0,
    }})
}

/// Deleting the object, which raises its generation (from 1).
fn deleting() -> Value {
    json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z", "generation": 2,
                        "finalizers": [FINALIZER]}})
}

struct Outcome {
    result: Result<Action, Error>,
    seen: Vec<Seen>,
}

impl Outcome {
    fn status_patches(&self) -> Vec<&Value> {
        self.seen
            .iter()
            .filter(|s| s.is_status_patch())
            .map(|s| &s.body["status"])
            .collect()
    }

    fn last_status(&self) -> &Value {
        self.status_patches().pop().expect("a status patch")
    }

    fn condition(&self, type_: &str) -> (String, String, String) {
        let c = self.last_status()["conditions"]
            .as_array()
            .expect("conditions")
            .iter()
            .find(|c| c["type"] == type_)
            .expect("condition present");
        let text = |k: &str| c[k].as_str().unwrap_or_default().to_owned();
        (text("status"), text("reason"), text("message"))
    }

    fn finalizer_patches(&self) -> Vec<&Value> {
        self.seen
            .iter()
            .filter(|s| s.is_finalizer_patch())
            .map(|s| &s.body)
            .collect()
    }

    fn event_reasons(&self) -> Vec<String> {
        self.seen
            .iter()
            .filter(|s| s.is_event() && s.method == "POST")
            .filter_map(|s| s.body["reason"].as_str().map(str::to_owned))
            .collect()
    }
}

fn context(client: Client, resolver: Resolver) -> Arc<Context> {
    let reporter = Reporter {
        controller: "secgroup-operator".into(),
        instance: None,
    };
    let mut ctx = Context::new(
        client.clone(),
        Recorder::new(client, reporter),
        resolver,
        mpsc::unbounded().0,
        Arc::new(Metrics::new()),
    );
    // Started a while ago: a describe now may show what an earlier process
    // left, without waiting out the read-after-write lag.
    ctx.started = Instant::now()
        .checked_sub(Duration::from_secs(5))
        .unwrap_or(ctx.started);
    Arc::new(ctx)
}

async fn reconcile_with(
    object: SecurityGroupRule,
    provider: &Arc<ProviderDouble>,
    config: ProviderConfig,
) -> Outcome {
    let (client, server) = api_server_logging(object.clone(), provider.journal.clone(), 0);
    let ctx = context(client, world(provider.clone(), config));
    let result = reconcile(Arc::new(object), ctx).await;
    let seen = server.await.expect("mock API server");
    Outcome { result, seen }
}

fn refused(kind: ErrorKind, code: &str) -> Result<Receipt, ProviderError> {
    Err(ProviderError::new(kind, code, "refused by the double"))
}

/// create → Ready in one pass and two writes: the finalizer (conditional
/// on the version read) before the call, which says a call may have been
/// made, then one status write with the outcome. No write ahead of the
/// authorize, no Event for a success.
#[tokio::test]
async fn a_new_rule_is_guarded_authorized_and_recorded_in_one_pass() {
    let provider = ProviderDouble::answering(vec![]);
    let out = reconcile_with(rule(json!({})), &provider, config(None)).await;
    assert!(matches!(out.result, Ok(ref a) if *a == Action::await_change()));
    assert_eq!(
        provider.journal(),
        ["PATCH rule", "authorize", "describe", "PATCH status"]
    );
    let finalizer = out.finalizer_patches()[0];
    assert_eq!(finalizer["metadata"]["finalizers"], json!([FINALIZER]));
    assert_eq!(finalizer["metadata"]["resourceVersion"], "1");
    let Some(Call::Authorize { token }) = provider.calls().first().cloned() else {
        panic!("an authorize: {:?}", provider.calls());
    };
    let status = out.last_status();
    assert_eq!(status["authorizing"], Value::Null);
    assert_eq!(status["ruleId"], "sgr-new0");
    assert_eq!(status["lastOperation"]["clientToken"], token.as_str());
    assert_eq!(status["lastOperation"]["requestId"], "req-1");
    assert_eq!(out.condition("Ready").1, "Authorized");
    assert!(out.event_reasons().is_empty(), "{:?}", out.event_reasons());
}

#[tokio::test]
async fn the_same_object_asks_with_the_same_token_every_time() {
    let first = ProviderDouble::answering(vec![]);
    reconcile_with(rule(json!({})), &first, config(None)).await;
    let second = ProviderDouble::answering(vec![]);
    reconcile_with(rule(json!({})), &second, config(None)).await;
    let changed = ProviderDouble::answering(vec![]);
    reconcile_with(
        rule(json!({"metadata": {"generation": 2}})),
        &changed,
        config(None),
    )
    .await;
    assert_eq!(first.calls()[0], second.calls()[0]);
    assert_ne!(first.calls()[0], changed.calls()[0]);
}

#[tokio::test]
async fn an_authorized_rule_is_left_alone() {
    let provider = ProviderDouble::answering(vec![]);
    let out = reconcile_with(rule(authorized_status()), &provider, config(None)).await;
    assert!(out.result.is_ok());
    assert_eq!(provider.calls(), vec![]);
    assert_eq!(out.condition("Ready").0, "True");
}

#[tokio::test]
async fn absent_revokes_the_recorded_rule_by_id_and_keeps_the_object() {
    let provider = ProviderDouble::holding(vec![web_at_cloud("sgr-1", Some("uid-1"))], vec![]);
    let mut extra = authorized_status();
    merge(&mut extra, json!({"spec": {"ensure": "Absent"}}));
    let out = reconcile_with(rule(extra), &provider, config(None)).await;
    assert!(out.result.is_ok());
    let calls = provider.calls();
    assert!(
        matches!(calls.as_slice(), [Call::Describe, Call::RevokeById { rule_id, .. }] if rule_id == "sgr-1"),
        "checked against the cloud, then revoked: {calls:?}"
    );
    assert_eq!(out.condition("Ready").1, "Revoked");
    assert_eq!(out.last_status()["ruleId"], Value::Null);
    assert!(out.finalizer_patches().is_empty(), "the object is kept");
}

#[tokio::test]
async fn deleting_revokes_then_releases_the_finalizer() {
    let provider = ProviderDouble::holding(vec![web_at_cloud("sgr-1", Some("uid-1"))], vec![]);
    let mut extra = authorized_status();
    merge(&mut extra, deleting());
    let out = reconcile_with(rule(extra), &provider, config(None)).await;
    assert!(out.result.is_ok(), "{:?}", out.result.err());
    let calls = provider.calls();
    assert!(
        matches!(calls.as_slice(), [Call::Describe, Call::RevokeById { rule_id, .. }] if rule_id == "sgr-1"),
        "{calls:?}"
    );
    // delete → gone in one write of the operator's: the finalizer, only
    // removed if the object is still as the pass read it. No status write
    // ahead of the revoke, none after it into an object about to vanish.
    assert_eq!(provider.journal(), ["describe", "revoke", "PATCH rule"]);
    let removal = out.finalizer_patches()[0];
    assert_eq!(removal["metadata"]["finalizers"], json!([]));
    assert_eq!(removal["metadata"]["resourceVersion"], "1");
}

/// Another controller's finalizer keeps the object after the operator's
/// goes: status then records the revoke, before the release.
#[tokio::test]
async fn a_deletion_another_finalizer_holds_records_the_revoke_first() {
    let provider = ProviderDouble::holding(vec![web_at_cloud("sgr-1", Some("uid-1"))], vec![]);
    let mut extra = authorized_status();
    merge(&mut extra, deleting());
    merge(
        &mut extra,
        json!({"metadata": {"finalizers": [FINALIZER, "example.com/hold"]}}),
    );
    let out = reconcile_with(rule(extra), &provider, config(None)).await;
    assert!(out.result.is_ok(), "{:?}", out.result.err());
    assert_eq!(
        provider.journal(),
        ["describe", "revoke", "PATCH status", "PATCH rule"]
    );
    assert_eq!(out.condition("Ready").1, "Revoked");
    assert_eq!(out.last_status()["appliedRule"], Value::Null);
    assert_eq!(
        out.finalizer_patches()[0]["metadata"]["finalizers"],
        json!(["example.com/hold"])
    );
}

/// A rule revoked by `Absent`, then deleted: nothing to call, and the
/// finalizer removal is the only write.
#[tokio::test]
async fn deleting_a_revoked_rule_writes_only_the_finalizer() {
    let provider = ProviderDouble::answering(vec![]);
    let mut extra = json!({"metadata": {"finalizers": [FINALIZER]}, "status": {
        "observedGeneration": 1,
        "conditions": [{"type": "Ready", "status": "True", "reason": "Revoked",
                        "message": "the rule is revoked at the provider", "observedGeneration": 1,
                        "lastTransitionTime": "2026-01-01T00:00:00Z"}],
        "securityGroupId": "sg-1", "region": "cn-hangzhou",
    }});
    merge(&mut extra, json!({"spec": {"ensure": "Absent"}}));
    merge(&mut extra, deleting());
    let out = reconcile_with(rule(extra), &provider, config(None)).await;
    assert!(out.result.is_ok(), "{:?}", out.result.err());
    assert_eq!(provider.journal(), ["describe", "PATCH rule"]);
}

/// `Absent` keeps its write ahead of the revoke: the spec may ask for the
/// rule again, and a revoke lost with the process must not leave status
/// claiming it authorized.
#[tokio::test]
async fn absent_records_the_rule_as_superseded_before_revoking_it() {
    let provider = ProviderDouble::holding(vec![web_at_cloud("sgr-1", Some("uid-1"))], vec![]);
    let mut extra = authorized_status();
    merge(
        &mut extra,
        json!({"metadata": {"generation": 2}, "spec": {"ensure": "Absent"}}),
    );
    let out = reconcile_with(rule(extra), &provider, config(None)).await;
    assert!(out.result.is_ok(), "{:?}", out.result.err());
    assert_eq!(
        provider.journal(),
        ["describe", "PATCH status", "revoke", "PATCH status"]
    );
    let patches = out.status_patches();
    assert_eq!(patches[0]["superseded"]["ruleId"], "sgr-1");
    assert_eq!(patches[0]["appliedRule"], Value::Null);
    assert_eq!(patches[1]["superseded"], Value::Null);
}

/// The process died between an authorize and its status write, the spec
/// unchanged: the finalizer says a call may have been made, a describe
/// finds the rule by its mark, and the authorize is sent again with the
/// same token, creating nothing twice.
#[tokio::test]
async fn an_authorize_lost_with_the_process_is_sent_again_with_its_token() {
    let fresh = ProviderDouble::answering(vec![]);
    reconcile_with(rule(json!({})), &fresh, config(None)).await;
    let provider = ProviderDouble::holding(vec![web_at_cloud("sgr-9", Some("uid-1"))], vec![]);
    let guarded = json!({"metadata": {"finalizers": [FINALIZER]}});
    let out = reconcile_with(rule(guarded), &provider, config(None)).await;
    assert!(out.result.is_ok(), "{:?}", out.result.err());
    assert_eq!(
        provider.journal(),
        ["describe", "authorize", "describe", "PATCH status"]
    );
    assert_eq!(provider.calls()[1], fresh.calls()[0], "the same token");
    assert_eq!(provider.rule_ids(), ["sgr-9"]);
    assert_eq!(out.last_status()["ruleId"], "sgr-9");
}

/// The process died between an authorize and its status write, and the
/// spec changed since: the rule the lost call created carries the mark,
/// so it is revoked before the new one is authorized.
#[tokio::test]
async fn a_rule_left_by_a_lost_authorize_of_an_older_spec_is_revoked() {
    let provider = ProviderDouble::holding(vec![web_at_cloud("sgr-9", Some("uid-1"))], vec![]);
    let changed = json!({"metadata": {"generation": 2, "finalizers": [FINALIZER]},
                         "spec": {"rule": {"ports": {"from": 22, "to": 22}}}});
    let out = reconcile_with(rule(changed), &provider, config(None)).await;
    assert!(out.result.is_ok(), "{:?}", out.result.err());
    assert!(
        matches!(provider.calls().as_slice(),
            [Call::Describe, Call::RevokeById { rule_id, .. }, Call::Authorize { .. }, Call::Describe]
                if rule_id == "sgr-9"),
        "{:?}",
        provider.calls()
    );
    assert_eq!(provider.rule_ids(), ["sgr-new0"]);
    assert_eq!(out.last_status()["appliedRule"]["ports"]["from"], 22);
}

/// The process died after an authorize at an older spec that differs from
/// the current one only in description (one identity): the older rule is
/// revoked, and the current one is authorized under a new attempt epoch,
/// written first, since the token of this generation may have been answered
/// without effect while the older rule stood.
#[tokio::test]
async fn an_older_version_of_the_desired_rule_is_replaced_under_a_new_token() {
    let provider = ProviderDouble::holding(vec![web_at_cloud("sgr-9", Some("uid-1"))], vec![]);
    let changed = json!({"metadata": {"generation": 2, "finalizers": [FINALIZER]},
                         "spec": {"rule": {"description": "changed"}}});
    let out = reconcile_with(rule(changed.clone()), &provider, config(None)).await;
    assert!(out.result.is_ok(), "{:?}", out.result.err());
    assert_eq!(
        provider.journal(),
        [
            "describe",
            "revoke",
            "PATCH status",
            "authorize",
            "describe",
            "PATCH status"
        ]
    );
    assert_eq!(out.status_patches()[0]["attemptEpoch"], 1);
    let group = provider.group.lock().expect("lock").clone();
    assert_eq!(group.len(), 1);
    assert!(
        group[0].rule.description.starts_with("changed "),
        "{group:?}"
    );
    // Not the token a first authorize at this generation is sent with.
    let first = ProviderDouble::answering(vec![]);
    let mut fresh = changed;
    fresh["metadata"]["finalizers"] = Value::Null;
    reconcile_with(rule(fresh), &first, config(None)).await;
    assert_ne!(provider.calls()[2], first.calls()[0]);
}

/// Deleted while an authorize's answer was lost with the process: nothing
/// is recorded, but the rule carries the mark and is revoked before the
/// finalizer goes.
#[tokio::test]
async fn a_deletion_revokes_a_rule_left_by_a_lost_authorize() {
    let provider = ProviderDouble::holding(vec![web_at_cloud("sgr-9", Some("uid-1"))], vec![]);
    let out = reconcile_with(rule(deleting()), &provider, config(None)).await;
    assert!(out.result.is_ok(), "{:?}", out.result.err());
    assert_eq!(provider.journal(), ["describe", "revoke", "PATCH rule"]);
    assert!(provider.rule_ids().is_empty());
}

/// A change the provider cannot make in place (no rule id to modify by):
/// the old rule is superseded and revoked, then the record is written again
/// before the authorize. Status naming the revoked rule would otherwise let
/// a pass after a crash take the new rule, which has the same identity and
/// mark, for the old one and revoke it.
#[tokio::test]
async fn an_authorize_after_a_revoke_in_the_same_pass_is_written_first() {
    let provider = ProviderDouble::holding(vec![web_at_cloud("sgr-1", Some("uid-1"))], vec![]);
    let mut extra = authorized_status();
    merge(
        &mut extra,
        json!({"metadata": {"generation": 2}, "spec": {"rule": {"priority": 5}},
               "status": {"ruleId": null}}),
    );
    let out = reconcile_with(rule(extra), &provider, config(None)).await;
    assert!(out.result.is_ok(), "{:?}", out.result.err());
    assert_eq!(
        provider.journal(),
        [
            "describe",
            "PATCH status",
            "revoke",
            "PATCH status",
            "authorize",
            "describe",
            "PATCH status"
        ]
    );
    let patches = out.status_patches();
    assert_eq!(patches[0]["superseded"]["rule"]["ports"]["from"], 443);
    assert_eq!(patches[1]["superseded"], Value::Null);
    assert_eq!(patches[1]["authorizing"]["priority"], 5);
    assert_eq!(out.last_status()["appliedRule"]["priority"], 5);
}

/// Status names a rule as superseded that is gone, and the spec asks for
/// the same rule again: the authorize is written first, or a pass after a
/// crash would take the new rule for the superseded one and revoke it.
#[tokio::test]
async fn a_rule_asked_for_again_while_status_names_it_superseded_is_written_first() {
    let provider = ProviderDouble::answering(vec![]);
    let again = json!({"metadata": {"generation": 3, "finalizers": [FINALIZER]}, "status": {
        "observedGeneration": 2, "securityGroupId": "sg-1", "region": "cn-hangzhou",
        "superseded": {"ruleId": "sgr-1", "rule": {"direction": "Ingress", "protocol": "TCP",
                       "ports": {"from": 443, "to": 443}, "peer": {"cidr": "10.0.0.0/8"}}},
    }});
    let out = reconcile_with(rule(again), &provider, config(None)).await;
    assert!(out.result.is_ok(), "{:?}", out.result.err());
    let journal = provider.journal();
    let authorize = journal
        .iter()
        .position(|j| j == "authorize")
        .expect("authorized");
    assert_eq!(journal[authorize - 1], "PATCH status", "{journal:?}");
    let first = out.status_patches()[0];
    assert_eq!(first["superseded"], Value::Null);
    assert_eq!(first["authorizing"]["ports"]["from"], 443);
}

/// In one process, an authorize whose status write failed is held in
/// memory: the next pass knows the rule even when the only describe it
/// could share predates the call, and revokes it when the spec moved on.
#[tokio::test]
async fn an_outcome_whose_status_write_failed_is_not_forgotten() {
    let provider = ProviderDouble::answering(vec![]);
    let (client, _server) = api_server_logging(rule(json!({})), provider.journal.clone(), 1);
    let ctx = context(client, world(provider.clone(), config(None)));
    let group = GroupRef {
        region: "cn-hangzhou".into(),
        security_group_id: "sg-1".into(),
    };
    // A describe before the authorize, fresh enough to be shared.
    ctx.snapshots
        .describe("cloud", &group, provider.as_ref(), Instant::now())
        .await
        .expect("described");
    // The describes after the authorize fail: the id stays unknown.
    *provider.failing_describes.lock().expect("lock") = 3;
    let first = reconcile(Arc::new(rule(json!({}))), ctx.clone()).await;
    assert!(matches!(first, Err(Error::Stale)), "{first:?}");
    assert_eq!(provider.rule_ids(), ["sgr-new0"]);

    let changed = json!({"metadata": {"generation": 2, "resourceVersion": "2",
                                      "finalizers": [FINALIZER]},
                         "spec": {"rule": {"ports": {"from": 22, "to": 22}}}});
    let second = reconcile(Arc::new(rule(changed)), ctx).await;
    assert!(second.is_ok(), "{second:?}");
    let calls = provider.calls();
    assert!(
        calls
            .iter()
            .any(|c| matches!(c, Call::RevokeById { rule_id, .. } if rule_id == "sgr-new0")),
        "{calls:?}"
    );
    let group = provider.group.lock().expect("lock").clone();
    assert_eq!(group.len(), 1, "{group:?}");
    assert_eq!(group[0].rule.ports.map(|p| p.from), Some(22));
}

#[tokio::test]
async fn deleting_a_rule_already_gone_at_the_provider_succeeds() {
    let provider = ProviderDouble::holding(
        vec![web_at_cloud("sgr-1", Some("uid-1"))],
        vec![refused(
            ErrorKind::AlreadyGone,
            "InvalidSecurityGroupRule.NotFound",
        )],
    );
    let mut extra = authorized_status();
    merge(&mut extra, deleting());
    let out = reconcile_with(rule(extra), &provider, config(None)).await;
    assert!(out.result.is_ok());
    assert_eq!(out.finalizer_patches().len(), 1);
}

#[tokio::test]
async fn a_refused_revoke_on_delete_keeps_the_finalizer_and_says_how_to_proceed() {
    let provider = ProviderDouble::holding(
        vec![web_at_cloud("sgr-1", Some("uid-1"))],
        vec![refused(
            ErrorKind::Invalid,
            "InvalidSecurityGroupId.Malformed",
        )],
    );
    let mut extra = authorized_status();
    merge(&mut extra, deleting());
    let out = reconcile_with(rule(extra), &provider, config(None)).await;
    assert!(matches!(out.result, Err(Error::CleanupPending { .. })));
    assert!(out.finalizer_patches().is_empty(), "the finalizer stays");
    let (stalled, reason, message) = out.condition("Stalled");
    assert_eq!(
        (stalled.as_str(), reason.as_str()),
        ("True", "ProviderError")
    );
    assert!(
        message.contains("InvalidSecurityGroupId.Malformed"),
        "{message}"
    );
    assert!(message.contains("deletionPolicy"), "{message}");
    assert_eq!(
        out.last_status()["lastOperation"]["code"],
        "InvalidSecurityGroupId.Malformed"
    );
    assert!(out.event_reasons().contains(&"ProviderError".to_owned()));
}

#[tokio::test]
async fn a_refused_rule_is_not_called_again_at_the_same_generation() {
    let provider = ProviderDouble::answering(vec![refused(
        ErrorKind::Invalid,
        "InvalidSecurityGroupId.NotFound",
    )]);
    let out = reconcile_with(rule(json!({})), &provider, config(None)).await;
    assert_eq!(out.condition("Stalled").0, "True");
    // The status the refusal wrote wakes the rule again: no second call.
    let mut again = rule(json!({}));
    again.status = Some(serde_json::from_value(out.last_status().clone()).expect("status"));
    let out = reconcile_with(again, &provider, config(None)).await;
    assert_eq!(provider.calls().len(), 1, "{:?}", provider.calls());
    assert!(matches!(out.result, Ok(ref a) if *a != Action::await_change()));
}

#[tokio::test]
async fn orphan_releases_the_finalizer_without_calls() {
    let provider = ProviderDouble::answering(vec![]);
    let mut extra = authorized_status();
    merge(&mut extra, deleting());
    merge(&mut extra, json!({"spec": {"deletionPolicy": "Orphan"}}));
    let out = reconcile_with(rule(extra), &provider, config(None)).await;
    assert!(out.result.is_ok());
    assert_eq!(provider.calls(), vec![]);
    assert_eq!(out.finalizer_patches().len(), 1);
    assert!(
        out.event_reasons().is_empty(),
        "no Event for what was asked"
    );
}

#[tokio::test]
async fn a_namespace_the_config_does_not_allow_is_stalled_without_calls() {
    let provider = ProviderDouble::answering(vec![]);
    let only_db = json!({"matchLabels": {"tier": "db"}});
    let out = reconcile_with(rule(json!({})), &provider, config(Some(only_db))).await;
    assert!(out.result.is_ok());
    assert_eq!(provider.calls(), vec![]);
    let (stalled, reason, message) = out.condition("Stalled");
    assert_eq!(
        (stalled.as_str(), reason.as_str()),
        ("True", "NamespaceNotAllowed")
    );
    assert!(message.contains("allowedNamespaces"), "{message}");
}

/// A CA Secret that is not there stalls the rule before any call, naming it.
#[tokio::test]
async fn a_missing_ca_secret_is_stalled_without_calls() {
    let provider = ProviderDouble::answering(vec![]);
    let mut with_ca = config(None);
    with_ca.spec.tls = serde_json::from_value(json!({
        "caSecretRef": {"namespace": "system", "name": "gateway-ca"}
    }))
    .expect("valid tls");
    let out = reconcile_with(rule(json!({})), &provider, with_ca).await;
    assert_eq!(provider.calls(), vec![]);
    let (stalled, reason, message) = out.condition("Stalled");
    assert_eq!(
        (stalled.as_str(), reason.as_str()),
        ("True", "CredentialsSecretNotFound")
    );
    assert!(
        message.contains("system/gateway-ca") && message.contains("ca.crt"),
        "{message}"
    );
}

#[tokio::test]
async fn throttling_waits_for_the_providers_retry_after() {
    let mut throttled = ProviderError::new(ErrorKind::Throttled, "Throttling.User", "slow down");
    throttled.retry_after = Some(Duration::from_millis(1500));
    let provider = ProviderDouble::answering(vec![Err(throttled)]);
    let out = reconcile_with(rule(json!({})), &provider, config(None)).await;
    assert!(matches!(out.result, Ok(ref a) if *a == Action::requeue(Duration::from_millis(1500))));
    assert_eq!(out.condition("Reconciling").0, "True");
    assert_eq!(out.condition("Reconciling").1, "Throttled");
}

/// Without a Retry-After, repeated throttles wait longer each time.
#[tokio::test]
async fn throttling_without_a_retry_after_backs_off() {
    let (client, _server) = api_server(rule(json!({})));
    let throttled = || refused(ErrorKind::Throttled, "Throttling.User");
    let provider = ProviderDouble::answering((0..6).map(|_| throttled()).collect());
    let ctx = context(client, world(provider.clone(), config(None)));
    let mut waits = Vec::new();
    for _ in 0..6 {
        match reconcile(Arc::new(rule(json!({}))), ctx.clone()).await {
            Ok(action) => waits.push(action),
            Err(e) => panic!("a throttle is handled in reconcile: {e}"),
        }
    }
    // The sixth ceiling is 32 s; full jitter keeps at least half of it.
    let object = ObjectRef::from_obj(&rule(json!({})));
    let pause = ctx.object_backoff.admit(&object).expect_err("backing off");
    assert!(pause >= Duration::from_secs(16), "{pause:?}");
    assert!(
        waits[1..]
            .iter()
            .all(|a| *a != Action::requeue(Duration::from_secs(1))),
        "{waits:?}"
    );
}

#[tokio::test]
async fn transient_failures_back_off_per_object() {
    let provider = ProviderDouble::answering(vec![refused(ErrorKind::Transient, "InternalError")]);
    let out = reconcile_with(rule(json!({})), &provider, config(None)).await;
    let Ok(action) = &out.result else {
        panic!("a provider failure is handled in reconcile");
    };
    assert_ne!(*action, Action::await_change());
    assert_eq!(out.condition("Stalled").0, "False");
    assert_eq!(out.condition("Reconciling").1, "Retrying");
}

#[tokio::test]
async fn rejected_credentials_pause_every_rule_of_the_config() {
    let provider = ProviderDouble::answering(vec![refused(
        ErrorKind::Unauthorized,
        "InvalidAccessKeyId.NotFound",
    )]);
    let (client, _server) = api_server(rule(json!({})));
    let ctx = context(client, world(provider.clone(), config(None)));
    let first = reconcile(Arc::new(rule(json!({}))), ctx.clone()).await;
    let mut other = rule(json!({}));
    other.metadata.name = Some("db".into());
    other.metadata.uid = Some("uid-2".into());
    let second = reconcile(Arc::new(other), ctx).await;
    assert_eq!(provider.calls().len(), 1, "{:?}", provider.calls());
    for result in [first, second] {
        assert!(matches!(result, Ok(ref a) if *a != Action::await_change()));
    }
}

/// After a restart every unsettled rule first describes its group (looking
/// for what a dead process left); rejected credentials pause those
/// describes too, instead of one describe per rule per pass.
#[tokio::test]
async fn rejected_credentials_pause_the_look_for_rules_a_dead_process_left() {
    let provider = Arc::new(ProviderDouble {
        rejecting_describes: true,
        ..ProviderDouble::default()
    });
    let guarded = json!({"metadata": {"finalizers": [FINALIZER]}});
    let (client, _server) = api_server(rule(guarded.clone()));
    let ctx = context(client, world(provider.clone(), config(None)));
    let first = reconcile(Arc::new(rule(guarded.clone())), ctx.clone()).await;
    let mut other = rule(guarded);
    other.metadata.name = Some("db".into());
    other.metadata.uid = Some("uid-2".into());
    let second = reconcile(Arc::new(other), ctx).await;
    assert_eq!(provider.calls(), vec![Call::Describe]);
    for result in [first, second] {
        assert!(matches!(result, Ok(ref a) if *a != Action::await_change()));
    }
}

#[tokio::test(start_paused = true)]
async fn nothing_is_judged_before_the_caches_are_filled() {
    let provider = ProviderDouble::answering(vec![]);
    let (client, server) = api_server(rule(json!({})));
    let (unfilled, _writer) = reflector::store::<Namespace>();
    let resolver = Resolver::new(
        store_of(vec![config(None)]),
        HashMap::new(),
        unfilled,
        Arc::new(Connects(provider.clone())),
        Arc::new(Metrics::new()),
    );
    let ctx = context(client, resolver);
    let result = reconcile(Arc::new(rule(json!({}))), ctx).await;
    assert!(matches!(result, Ok(ref a) if *a == Action::requeue(Duration::from_secs(1))));
    assert_eq!(provider.calls(), vec![]);
    assert!(
        server.await.expect("mock API server").is_empty(),
        "no status written"
    );
}

/// An authorize that meets an identical rule someone else created takes
/// nothing over: the object says whose rule is in the way, records nothing,
/// and its deletion calls nothing.
#[tokio::test]
async fn an_identical_foreign_rule_is_not_adopted() {
    let provider = ProviderDouble::holding(vec![web_at_cloud("sgr-planted", None)], vec![]);
    let out = reconcile_with(rule(json!({})), &provider, config(None)).await;
    assert!(out.result.is_ok());
    let (stalled, reason, message) = out.condition("Stalled");
    assert_eq!(
        (stalled.as_str(), reason.as_str()),
        ("True", "RuleAlreadyExists")
    );
    assert!(
        message.contains("sgr-planted") && message.contains("sg-1"),
        "{message}"
    );
    let status = out.last_status();
    assert_eq!(status["appliedRule"], Value::Null);
    assert_eq!(status["authorizing"], Value::Null);
    assert_eq!(status["ruleId"], Value::Null);
    assert!(
        out.event_reasons()
            .contains(&"RuleAlreadyExists".to_owned())
    );

    let mut gone = json!({"status": status.clone()});
    merge(&mut gone, deleting());
    let before = provider.calls().len();
    let out = reconcile_with(rule(gone), &provider, config(None)).await;
    assert!(out.result.is_ok(), "{:?}", out.result.err());
    assert!(
        provider.calls()[before..]
            .iter()
            .all(|c| *c == Call::Describe),
        "only a look for a rule left by a lost authorize: {:?}",
        provider.calls()
    );
    assert_eq!(provider.rule_ids(), ["sgr-planted"]);
}

/// A status that names someone else's rule is not acted on.
#[tokio::test]
async fn a_status_naming_a_foreign_rule_revokes_nothing() {
    let provider = ProviderDouble::holding(
        vec![
            web_at_cloud("sgr-1", Some("uid-1")),
            web_at_cloud("sgr-victim", Some("uid-other")),
        ],
        vec![],
    );
    let mut extra = authorized_status();
    merge(&mut extra, json!({"status": {"ruleId": "sgr-victim"}}));
    merge(&mut extra, deleting());
    let out = reconcile_with(rule(extra), &provider, config(None)).await;
    assert!(
        matches!(out.result, Err(Error::CleanupPending { .. })),
        "the finalizer stays"
    );
    assert_eq!(provider.calls(), vec![Call::Describe]);
    assert_eq!(out.condition("Stalled").1, "RecordMismatch");
    assert!(out.event_reasons().contains(&"RecordMismatch".to_owned()));
    assert_eq!(provider.rule_ids(), ["sgr-1", "sgr-victim"]);
}

/// A recorded rule the cloud no longer holds needs no revoke, once fresh
/// describes (read-after-write lag) agree it is gone.
#[tokio::test]
async fn a_recorded_rule_that_is_gone_is_not_revoked() {
    let provider = ProviderDouble::holding(vec![web_at_cloud("sgr-other", None)], vec![]);
    let mut extra = authorized_status();
    merge(&mut extra, deleting());
    let out = reconcile_with(rule(extra), &provider, config(None)).await;
    assert!(out.result.is_ok(), "{:?}", out.result.err());
    let calls = provider.calls();
    assert!(calls.iter().all(|c| *c == Call::Describe), "{calls:?}");
    assert_eq!(calls.len(), 3, "one shared describe, then two fresh ones");
    assert_eq!(out.finalizer_patches().len(), 1);
    assert_eq!(provider.rule_ids(), ["sgr-other"]);
}

/// "Already exists" (Baidu answers 409 to other conflicts too) counts only
/// when the rule shows in the group.
#[tokio::test]
async fn already_exists_without_the_rule_is_retried() {
    let provider = ProviderDouble::answering(vec![refused(ErrorKind::AlreadyExists, "Conflict")]);
    let out = reconcile_with(rule(json!({})), &provider, config(None)).await;
    assert!(out.result.is_ok());
    assert_eq!(out.condition("Reconciling").1, "Retrying");
    let status = out.last_status();
    assert_eq!(status["appliedRule"], Value::Null);
    assert_eq!(
        status["authorizing"]["ports"]["from"], 443,
        "may exist: kept"
    );
}

fn adopting_config() -> ProviderConfig {
    let mut config = config(None);
    config.spec.allow_adoption = Some(true);
    config
}

/// Adoption takes an unmarked identical rule over only when the object
/// opts in and its ProviderConfig allows it: the rule is marked in place
/// (ModifySecurityGroupRule) and recorded as the object's own.
#[tokio::test]
async fn an_allowed_adoption_marks_the_existing_rule() {
    let provider = ProviderDouble::holding(vec![web_at_cloud("sgr-planted", None)], vec![]);
    let out = reconcile_with(
        rule(json!({"spec": {"adopt": true}})),
        &provider,
        adopting_config(),
    )
    .await;
    assert!(out.result.is_ok());
    let calls = provider.calls();
    assert!(
        matches!(calls.as_slice(), [Call::Authorize { .. }, Call::Describe, Call::Modify { rule_id }] if rule_id == "sgr-planted"),
        "{calls:?}"
    );
    assert_eq!(out.condition("Ready").1, "Authorized");
    assert_eq!(out.last_status()["ruleId"], "sgr-planted");
    let group = provider.group.lock().expect("lock").clone();
    assert!(Mark::of_uid("uid-1").is_on(&group[0].rule.description));

    for (object, config) in [
        (rule(json!({})), adopting_config()),
        (rule(json!({"spec": {"adopt": true}})), config(None)),
    ] {
        let provider = ProviderDouble::holding(vec![web_at_cloud("sgr-planted", None)], vec![]);
        let out = reconcile_with(object, &provider, config).await;
        assert_eq!(out.condition("Stalled").1, "RuleAlreadyExists");
        assert!(
            !provider
                .calls()
                .iter()
                .any(|c| matches!(c, Call::Modify { .. }))
        );
    }
}

/// Another object's rule is never adopted, whatever the settings.
#[tokio::test]
async fn another_objects_rule_is_never_adopted() {
    let provider =
        ProviderDouble::holding(vec![web_at_cloud("sgr-theirs", Some("uid-other"))], vec![]);
    let out = reconcile_with(
        rule(json!({"spec": {"adopt": true}})),
        &provider,
        adopting_config(),
    )
    .await;
    assert_eq!(out.condition("Stalled").1, "RuleAlreadyExists");
    assert!(
        !provider
            .calls()
            .iter()
            .any(|c| matches!(c, Call::Modify { .. }))
    );
}

/// A change of only priority (Alibaba) is made in place by the rule's id,
/// after the describe shows the rule is the object's: no revoke, no gap.
#[tokio::test]
async fn a_priority_change_is_made_in_place() {
    let provider = ProviderDouble::holding(vec![web_at_cloud("sgr-1", Some("uid-1"))], vec![]);
    let mut extra = authorized_status();
    merge(
        &mut extra,
        json!({"metadata": {"generation": 2}, "spec": {"rule": {"priority": 5}}}),
    );
    let out = reconcile_with(rule(extra), &provider, config(None)).await;
    assert!(out.result.is_ok());
    let calls = provider.calls();
    assert!(
        matches!(calls.as_slice(), [Call::Describe, Call::Modify { rule_id }] if rule_id == "sgr-1"),
        "{calls:?}"
    );
    let status = out.last_status();
    assert_eq!(status["appliedRule"]["priority"], 5);
    assert_eq!(status["ruleId"], "sgr-1");
    assert_eq!(out.condition("Ready").1, "Authorized");
    assert_eq!(provider.group.lock().expect("lock")[0].rule.priority, 5);
}

/// An endpoint without ModifySecurityGroupRule: the rule is replaced,
/// revoke first, as where the call is not offered.
#[tokio::test]
async fn a_modify_the_endpoint_lacks_falls_back_to_replacing_the_rule() {
    let provider = ProviderDouble::holding(
        vec![web_at_cloud("sgr-1", Some("uid-1"))],
        vec![refused(
            ErrorKind::Invalid,
            crate::provider::MODIFY_UNSUPPORTED,
        )],
    );
    let mut extra = authorized_status();
    merge(
        &mut extra,
        json!({"metadata": {"generation": 2}, "spec": {"rule": {"priority": 5}}}),
    );
    let out = reconcile_with(rule(extra), &provider, config(None)).await;
    assert!(out.result.is_ok());
    let calls = provider.calls();
    assert!(
        matches!(
            calls.as_slice(),
            [Call::Describe, Call::Modify { .. }, Call::RevokeById { rule_id, .. }, Call::Authorize { .. }, Call::Describe]
                if rule_id == "sgr-1"
        ),
        "{calls:?}"
    );
    assert_eq!(out.condition("Ready").1, "Authorized");
    assert_eq!(out.last_status()["appliedRule"]["priority"], 5);
}

/// A describe before a revoke only reads: transient failures are asked
/// again within the pass instead of halting it.
#[tokio::test]
async fn a_failing_describe_before_a_revoke_is_asked_again() {
    let provider = ProviderDouble::holding(vec![web_at_cloud("sgr-1", Some("uid-1"))], vec![]);
    *provider.failing_describes.lock().expect("lock") = 2;
    let mut extra = authorized_status();
    merge(&mut extra, deleting());
    let out = reconcile_with(rule(extra), &provider, config(None)).await;
    assert!(out.result.is_ok(), "{:?}", out.result.err());
    let calls = provider.calls();
    assert!(
        matches!(
            calls.as_slice(),
            [
                Call::Describe,
                Call::Describe,
                Call::Describe,
                Call::RevokeById { .. }
            ]
        ),
        "{calls:?}"
    );
    assert_eq!(out.finalizer_patches().len(), 1);
}

/// A rule id that drift detection learned is recorded without a call.
#[tokio::test]
async fn a_rule_id_learned_by_drift_detection_is_recorded() {
    let provider = ProviderDouble::answering(vec![]);
    let mut object = rule(authorized_status());
    if let Some(status) = object.status.as_mut() {
        status.rule_id = None;
    }
    let (client, server) = api_server(object.clone());
    let ctx = context(client, world(provider.clone(), config(None)));
    ctx.drift.learned(
        kube::runtime::reflector::ObjectRef::from_obj(&object),
        "sgr-7".into(),
    );
    let result = reconcile(Arc::new(object), ctx).await;
    let out = Outcome {
        result,
        seen: server.await.expect("mock API server"),
    };
    assert!(out.result.is_ok());
    assert_eq!(provider.calls(), vec![]);
    assert_eq!(out.last_status()["ruleId"], "sgr-7");
}

mod gates;
mod origins;
mod trust;

/// A ProviderConfig's status changes as rules come and go; only a new spec
/// (generation) or new credentials may replace its client, whose token
/// bucket and namespace queues hold the config's rate limit.
#[test]
fn a_status_write_to_the_config_keeps_its_client() {
    let connector = Arc::new(CountedConnects {
        connects: Connects(ProviderDouble::answering(vec![])),
        built: AtomicUsize::new(0),
    });
    let at = |resource_version: &str, generation: i64| {
        let mut c = config(None);
        c.metadata.resource_version = Some(resource_version.into());
        c.metadata.generation = Some(generation);
        c
    };
    let (configs, mut writer) = reflector::store();
    writer.apply_watcher_event(&watcher::Event::Init);
    writer.apply_watcher_event(&watcher::Event::InitApply(at("1", 1)));
    writer.apply_watcher_event(&watcher::Event::InitDone);
    let resolver = world_of(configs, connector.clone());
    let key = |resolver: &Resolver| {
        resolver
            .resolve("cloud", "team")
            .expect("resolves")
            .credentials_key
    };

    let first = key(&resolver);
    writer.apply_watcher_event(&watcher::Event::Apply(at("2", 1)));
    assert_eq!(key(&resolver), first, "the credentials pause survives");
    assert_eq!(connector.built.load(Ordering::SeqCst), 1, "one client");

    writer.apply_watcher_event(&watcher::Event::Apply(at("3", 2)));
    assert_ne!(key(&resolver), first);
    assert_eq!(
        connector.built.load(Ordering::SeqCst),
        2,
        "a new spec connects again"
    );
}
