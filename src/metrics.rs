//! Prometheus metrics, served on `/metrics` of `--metrics-addr`.
//!
//! Every label value is a fixed word (a provider, an operation, an outcome,
//! a state): no rule, namespace or group name, so cardinality stays bounded
//! and nothing a user wrote ends up in a label.
//!
//! kube-runtime keeps its scheduling queue private, so the queue is seen
//! from outside: `secgroup_reconciles_in_flight` (running now) and
//! `secgroup_requeues_pending` (rules whose last reconcile asked to run again
//! later and that have not run since).

use std::{
    collections::HashSet,
    sync::{Arc, Mutex, OnceLock},
    time::Instant,
};

use async_trait::async_trait;
use kube::runtime::{
    controller::Action,
    reflector::{ObjectRef, Store},
};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric, text::encode},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::{ConstGauge, Gauge},
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

use crate::{
    api::{SecurityGroupRule, conditions},
    provider::{
        Authorize, DescribedRule, GroupRef, Modify, Operation, Provider, ProviderError,
        ProviderKind, Receipt, Revoke, error::ErrorKind,
    },
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    provider: &'static str,
    action: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    provider: &'static str,
    action: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderLabels {
    provider: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

/// The operator's metrics and the registry that serves them.
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ResultLabels, Counter>,
    reconcile_duration: Histogram,
    in_flight: Gauge,
    provider_calls: Family<CallLabels, Counter>,
    provider_call_duration: Family<ActionLabels, Histogram>,
    provider_throttled: Family<ProviderLabels, Counter>,
    leader: Gauge,
    requeues: Arc<Requeues>,
    rules: Arc<RuleStates>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("secgroup");
        let reconciles = Family::<ResultLabels, Counter>::default();
        registry.register(
            "reconciles",
            "Reconciles of SecurityGroupRules, by result (success or error)",
            reconciles.clone(),
        );
        // 5 ms .. ~40 s: a reconcile is a few API calls, or waits on a throttled provider.
        let reconcile_duration = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        registry.register(
            "reconcile_duration_seconds",
            "Time one reconcile of a SecurityGroupRule took",
            reconcile_duration.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "reconciles_in_flight",
            "Reconciles running now",
            in_flight.clone(),
        );
        let provider_calls = Family::<CallLabels, Counter>::default();
        registry.register(
            "provider_calls",
            "Cloud provider calls, by provider, action (authorize, revoke, describe) and outcome (Success or the error kind)",
            provider_calls.clone(),
        );
        let provider_call_duration =
            Family::<ActionLabels, Histogram>::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.005, 2.0, 12))
            });
        registry.register(
            "provider_call_duration_seconds",
            "Latency of cloud provider calls, rate-limiter wait included",
            provider_call_duration.clone(),
        );
        let provider_throttled = Family::<ProviderLabels, Counter>::default();
        registry.register(
            "provider_throttled",
            "Provider answers that asked the operator to slow down",
            provider_throttled.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this instance runs the controller (holds the lease, or runs without leader election), else 0",
            leader.clone(),
        );
        let requeues = Arc::new(Requeues::default());
        registry.register_collector(Box::new(requeues.clone()));
        let rules = Arc::new(RuleStates::default());
        registry.register_collector(Box::new(rules.clone()));
        Self {
            registry,
            reconciles,
            reconcile_duration,
            in_flight,
            provider_calls,
            provider_call_duration,
            provider_throttled,
            leader,
            requeues,
            rules,
        }
    }

    /// The text exposition format, for `/metrics`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }

    /// Lets `secgroup_rules` count the rules of the controller's cache.
    pub fn observe_rules(&self, rules: Store<SecurityGroupRule>) {
        let _ = self.rules.0.set(rules.clone());
        let _ = self.requeues.store.set(rules);
    }

    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// Marks one reconcile as started; finish it with [`ReconcileTimer::finish`].
    pub fn reconcile_started(&self, rule: &ObjectRef<SecurityGroupRule>) -> ReconcileTimer<'_> {
        self.in_flight.inc();
        self.requeues.ran(rule);
        ReconcileTimer {
            metrics: self,
            started: Instant::now(),
        }
    }

    /// Records what the controller will do next with `rule`: a scheduled
    /// requeue counts as pending until the rule runs again.
    pub fn next_action(&self, rule: ObjectRef<SecurityGroupRule>, action: &Action) {
        if *action != Action::await_change() {
            self.requeues.scheduled(rule);
        }
    }

    fn provider_call(
        &self,
        kind: ProviderKind,
        op: Operation,
        outcome: &'static str,
        started: Instant,
    ) {
        let (provider, action) = (kind.as_str(), op.as_str());
        self.provider_calls
            .get_or_create(&CallLabels {
                provider,
                action,
                outcome,
            })
            .inc();
        self.provider_call_duration
            .get_or_create(&ActionLabels { provider, action })
            .observe(started.elapsed().as_secs_f64());
        if outcome == ErrorKind::Throttled.as_str() {
            self.provider_throttled
                .get_or_create(&ProviderLabels { provider })
                .inc();
        }
    }

    /// Wraps a provider client so that every call it makes is counted and timed.
    pub fn meter(self: &Arc<Self>, provider: Arc<dyn Provider>) -> Arc<dyn Provider> {
        Arc::new(Metered {
            inner: provider,
            metrics: self.clone(),
        })
    }
}

/// One running reconcile; it leaves `reconciles_in_flight` when dropped,
/// also when the controller drops it unfinished.
pub struct ReconcileTimer<'a> {
    metrics: &'a Metrics,
    started: Instant,
}

impl ReconcileTimer<'_> {
    pub fn finish(self, succeeded: bool) {
        let result = if succeeded { "success" } else { "error" };
        self.metrics
            .reconciles
            .get_or_create(&ResultLabels { result })
            .inc();
        self.metrics
            .reconcile_duration
            .observe(self.started.elapsed().as_secs_f64());
    }
}

impl Drop for ReconcileTimer<'_> {
    fn drop(&mut self) {
        self.metrics.in_flight.dec();
    }
}

/// A provider client whose calls are counted and timed.
struct Metered {
    inner: Arc<dyn Provider>,
    metrics: Arc<Metrics>,
}

impl Metered {
    fn record<T>(&self, op: Operation, started: Instant, result: &Result<T, ProviderError>) {
        let outcome = match result {
            Ok(_) => "Success",
            Err(e) => e.kind.as_str(),
        };
        self.metrics
            .provider_call(self.inner.kind(), op, outcome, started);
    }
}

#[async_trait]
impl Provider for Metered {
    fn kind(&self) -> ProviderKind {
        self.inner.kind()
    }

    async fn authorize(&self, call: &Authorize) -> Result<Receipt, ProviderError> {
        let started = Instant::now();
        let result = self.inner.authorize(call).await;
        self.record(Operation::Authorize, started, &result);
        result
    }

    async fn revoke(&self, call: &Revoke) -> Result<Receipt, ProviderError> {
        let started = Instant::now();
        let result = self.inner.revoke(call).await;
        self.record(Operation::Revoke, started, &result);
        result
    }

    async fn modify(&self, call: &Modify) -> Result<Receipt, ProviderError> {
        let started = Instant::now();
        let result = self.inner.modify(call).await;
        self.record(Operation::Modify, started, &result);
        result
    }

    async fn describe(&self, group: &GroupRef) -> Result<Vec<DescribedRule>, ProviderError> {
        let started = Instant::now();
        let result = self.inner.describe(group).await;
        self.record(Operation::Describe, started, &result);
        result
    }
}

/// Rules whose last reconcile scheduled another one that has not run yet.
#[derive(Debug, Default)]
struct Requeues {
    pending: Mutex<HashSet<ObjectRef<SecurityGroupRule>>>,
    /// Rules deleted meanwhile never run again: only cached rules count.
    store: OnceLock<Store<SecurityGroupRule>>,
}

impl Requeues {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<ObjectRef<SecurityGroupRule>>> {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn scheduled(&self, rule: ObjectRef<SecurityGroupRule>) {
        self.lock().insert(rule);
    }

    fn ran(&self, rule: &ObjectRef<SecurityGroupRule>) {
        self.lock().remove(rule);
    }

    fn count(&self) -> i64 {
        let mut pending = self.lock();
        if let Some(store) = self.store.get() {
            pending.retain(|rule| store.get(rule).is_some());
        }
        i64::try_from(pending.len()).unwrap_or(i64::MAX)
    }
}

impl Collector for Requeues {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let gauge = ConstGauge::new(self.count());
        let metric = encoder.encode_descriptor(
            "requeues_pending",
            "Rules waiting for a scheduled retry or recheck",
            None,
            gauge.metric_type(),
        )?;
        gauge.encode(metric)
    }
}

/// The state of a rule as kstatus reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleState {
    Ready,
    Stalled,
    Reconciling,
}

impl RuleState {
    const ALL: [Self; 3] = [Self::Ready, Self::Stalled, Self::Reconciling];

    fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "Ready",
            Self::Stalled => "Stalled",
            Self::Reconciling => "Reconciling",
        }
    }

    /// `Stalled=True` wins; `Ready=True` for the current generation is Ready;
    /// anything else (no status yet, an older generation, in progress) is Reconciling.
    pub fn of(rule: &SecurityGroupRule) -> Self {
        let generation = rule.metadata.generation;
        let holds = |type_| {
            rule.status.as_ref().is_some_and(|s| {
                conditions::find(&s.conditions, type_)
                    .is_some_and(|c| c.status == "True" && c.observed_generation == generation)
            })
        };
        if holds(conditions::types::STALLED) {
            Self::Stalled
        } else if holds(conditions::types::READY) {
            Self::Ready
        } else {
            Self::Reconciling
        }
    }
}

/// `secgroup_rules{state}`, counted from the controller's cache at scrape time.
#[derive(Debug, Default)]
struct RuleStates(OnceLock<Store<SecurityGroupRule>>);

impl Collector for RuleStates {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // A standby has no cache: it reports no rules rather than zeros.
        let Some(store) = self.0.get() else {
            return Ok(());
        };
        let mut counts = [0_i64; 3];
        for rule in store.state() {
            let state = RuleState::of(&rule);
            if let Some(i) = RuleState::ALL.iter().position(|s| *s == state) {
                counts[i] += 1;
            }
        }
        let mut metric = encoder.encode_descriptor(
            "rules",
            "SecurityGroupRules this instance watches, by state (Ready, Stalled, Reconciling)",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for (state, count) in RuleState::ALL.iter().zip(counts) {
            let labels = StateLabels {
                state: state.as_str(),
            };
            ConstGauge::new(count).encode(metric.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use kube::runtime::{reflector::store::Writer, watcher};
    use serde_json::json;

    use super::*;

    /// Answers every call with the error it was given, or success.
    struct Answering(Option<ErrorKind>);

    #[async_trait]
    impl Provider for Answering {
        fn kind(&self) -> ProviderKind {
            ProviderKind::Baidu
        }
        async fn authorize(&self, _: &Authorize) -> Result<Receipt, ProviderError> {
            unreachable!("not called")
        }
        async fn revoke(&self, _: &Revoke) -> Result<Receipt, ProviderError> {
            unreachable!("not called")
        }
        async fn describe(&self, _: &GroupRef) -> Result<Vec<DescribedRule>, ProviderError> {
            match self.0 {
                None => Ok(Vec::new()),
                Some(kind) => Err(ProviderError::new(kind, "Code", "message")),
            }
        }
    }

    fn group() -> GroupRef {
        GroupRef {
            region: "bj".into(),
            security_group_id: "g-secret-name".into(),
        }
    }

    /// The value of the sample line that starts with `prefix`.
    fn sample(text: &str, prefix: &str) -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    /// Asserts the value of each (sample line prefix, value).
    fn assert_samples(text: &str, expected: &[(&str, f64)]) {
        for (prefix, value) in expected {
            assert_eq!(sample(text, prefix), Some(*value), "{prefix} in\n{text}");
        }
    }

    fn rule(name: &str, generation: i64, conditions: serde_json::Value) -> SecurityGroupRule {
        serde_json::from_value(json!({
            "apiVersion": "secgroup.dev/v1alpha1", "kind": "SecurityGroupRule",
            "metadata": {"name": name, "namespace": "team-a", "generation": generation},
            "spec": {"providerConfigRef": {"name": "c"}, "securityGroupId": "sg-1",
                     "rule": {"direction": "Ingress", "protocol": "TCP", "peer": {"cidr": "10.0.0.0/8"}}},
            "status": {"conditions": conditions}
        }))
        .expect("valid rule")
    }

    fn condition(type_: &str, status: &str, generation: i64) -> serde_json::Value {
        json!({"type": type_, "status": status, "reason": "R", "observedGeneration": generation,
               "lastTransitionTime": "2025-01-01T00:00:00Z"})
    }

    fn store_of(rules: Vec<SecurityGroupRule>) -> Store<SecurityGroupRule> {
        let mut writer = Writer::default();
        for rule in rules {
            writer.apply_watcher_event(&watcher::Event::Apply(rule));
        }
        writer.as_reader()
    }

    #[tokio::test]
    async fn provider_calls_are_counted_by_outcome_and_throttling_separately() {
        let metrics = Arc::new(Metrics::new());
        let ok = metrics.meter(Arc::new(Answering(None)));
        let throttled = metrics.meter(Arc::new(Answering(Some(ErrorKind::Throttled))));
        ok.describe(&group()).await.expect("ok");
        ok.describe(&group()).await.expect("ok");
        throttled.describe(&group()).await.expect_err("throttled");
        let text = metrics.render();
        assert_samples(
            &text,
            &[
                (
                    r#"secgroup_provider_calls_total{provider="baidu",action="describe",outcome="Success"}"#,
                    2.0,
                ),
                (
                    r#"secgroup_provider_calls_total{provider="baidu",action="describe",outcome="Throttled"}"#,
                    1.0,
                ),
                (
                    r#"secgroup_provider_throttled_total{provider="baidu"}"#,
                    1.0,
                ),
                (
                    r#"secgroup_provider_call_duration_seconds_count{provider="baidu",action="describe"}"#,
                    3.0,
                ),
            ],
        );
        assert!(!text.contains("g-secret-name"), "no group id in labels");
    }

    #[test]
    fn reconciles_are_counted_by_result_and_timed() {
        let metrics = Metrics::new();
        let object = ObjectRef::new("web").within("team-a");
        metrics.reconcile_started(&object).finish(true);
        let running = metrics.reconcile_started(&object);
        assert_eq!(
            sample(&metrics.render(), "secgroup_reconciles_in_flight"),
            Some(1.0)
        );
        running.finish(false);
        drop(metrics.reconcile_started(&object));
        assert_samples(
            &metrics.render(),
            &[
                (r#"secgroup_reconciles_total{result="success"}"#, 1.0),
                (r#"secgroup_reconciles_total{result="error"}"#, 1.0),
                ("secgroup_reconcile_duration_seconds_count", 2.0),
                ("secgroup_reconciles_in_flight", 0.0),
            ],
        );
    }

    #[test]
    fn a_requeue_is_pending_until_the_rule_runs_again_or_leaves_the_cache() {
        let metrics = Metrics::new();
        let (kept, deleted) = (rule("kept", 1, json!([])), rule("deleted", 1, json!([])));
        metrics.observe_rules(store_of(vec![kept.clone()]));
        let kept_ref = ObjectRef::from_obj(&kept);
        metrics.next_action(
            kept_ref.clone(),
            &Action::requeue(std::time::Duration::from_secs(5)),
        );
        metrics.next_action(
            ObjectRef::from_obj(&deleted),
            &Action::requeue(std::time::Duration::from_secs(5)),
        );
        metrics.next_action(kept_ref.clone(), &Action::await_change());
        assert_eq!(
            sample(&metrics.render(), "secgroup_requeues_pending"),
            Some(1.0)
        );
        metrics.reconcile_started(&kept_ref).finish(true);
        assert_eq!(
            sample(&metrics.render(), "secgroup_requeues_pending"),
            Some(0.0)
        );
    }

    #[test]
    fn rules_are_counted_by_state_of_their_current_generation() {
        let metrics = Metrics::new();
        assert!(
            !metrics.render().contains("secgroup_rules{"),
            "no cache, no rule counts"
        );
        metrics.observe_rules(store_of(vec![
            rule("ready", 2, json!([condition("Ready", "True", 2)])),
            rule(
                "ready-for-an-older-spec",
                3,
                json!([condition("Ready", "True", 2)]),
            ),
            rule(
                "stalled",
                1,
                json!([
                    condition("Ready", "False", 1),
                    condition("Stalled", "True", 1)
                ]),
            ),
            rule("new", 1, json!([])),
        ]));
        let text = metrics.render();
        assert_samples(
            &text,
            &[
                (r#"secgroup_rules{state="Ready"}"#, 1.0),
                (r#"secgroup_rules{state="Stalled"}"#, 1.0),
                (r#"secgroup_rules{state="Reconciling"}"#, 2.0),
            ],
        );
        assert!(
            !text.contains("ready-for-an-older-spec"),
            "no rule names in labels"
        );
    }
}
