//! Wires the controller: informers, triggers, drift detection, readiness.

use std::{
    collections::{BTreeMap, HashMap},
    fmt::Debug,
    hash::{Hash, Hasher},
    sync::Arc,
    time::Duration,
};

use futures::{
    FutureExt, Stream, StreamExt, TryStreamExt, channel::mpsc, stream, stream::BoxStream,
};
use k8s_openapi::{
    NamespaceResourceScope,
    api::core::v1::{ConfigMap, Namespace, Secret},
};
use kube::{
    Api, Client, Resource, ResourceExt,
    runtime::{
        Controller, WatchStreamExt,
        controller::{self, Config as ControllerConfig},
        events::Recorder,
        reflector::{self, ObjectRef, Store},
        utils::{Backoff, PredicateConfig},
        watcher,
    },
};
use serde::de::DeserializeOwned;
use tracing::{debug, info, warn};

use super::{
    Context,
    backoff::WatchBackoff,
    configs, drift, error_policy,
    members::GroupMembers,
    reconcile,
    resolve::{Connector, Resolver},
    uninstall::{self, DeletionsSeen, Uninstall},
    usage,
};
use crate::{
    api::{ProviderConfig, SecurityGroupRule},
    metrics::Metrics,
    server::{self, Health},
};

/// What the controller watches and how hard it works.
#[derive(Clone, Debug)]
pub struct Config {
    /// Watch rules in this namespace only; `None`: all namespaces.
    pub namespace: Option<String>,
    /// Watch only rules matching this label selector.
    pub label_selector: Option<String>,
    /// Namespaces whose Secrets may hold provider credentials.
    pub secret_namespaces: Vec<String>,
    /// Read only the Secrets matching this label selector there.
    pub secret_label_selector: Option<String>,
    /// Rules reconciled at once.
    pub concurrency: u16,
    /// How often each security group is described to notice drift.
    pub resync_interval: Duration,
}

/// Runs the controller until SIGTERM or Ctrl-C, then lets running
/// reconciles finish. Dropping the future stops everything at once,
/// drift detection included.
pub async fn run(
    config: Config,
    client: Client,
    connector: Arc<dyn Connector>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
) -> anyhow::Result<()> {
    let deletions = DeletionsSeen::default();
    let watches = Watches::start(&client, &config, &deletions);
    let (uninstall, crd_events) = Uninstall::watch(client.clone(), deletions);
    let (wake, woken) = mpsc::unbounded();
    let ctx = context(
        &config, client, connector, metrics, &watches, uninstall, wake,
    );
    health.leading(watches.readiness());
    let _drift = AbortOnDrop(tokio::spawn(drift::run(
        ctx.clone(),
        watches.rules.clone(),
        config.resync_interval,
    )));
    info!(
        namespace = config.namespace.as_deref().unwrap_or("<all>"),
        "starting controller"
    );
    // kube's graceful shutdown waits for reconciles that never start when
    // the signal comes before the caches synced: the wait is bounded.
    let stop = crate::signal::shutdown().boxed().shared();
    let _config_status = AbortOnDrop(tokio::spawn(configs::run(ctx.client.clone(), stop.clone())));
    let guard = guard_configs_in_use(&config, ctx.client.clone(), stop.clone());
    let controller = controller(&config, watches, crd_events, woken, ctx, stop.clone());
    crate::signal::bounded(futures::future::join(controller, guard).map(drop), stop).await;
    info!("controller stopped");
    Ok(())
}

/// What one watch delivers: the objects that changed.
type Changes<K> = BoxStream<'static, Result<K, watcher::Error>>;

/// The informer caches the reconciles read, and the watches that fill them,
/// which the controller drives.
struct Watches {
    rules: Store<SecurityGroupRule>,
    /// The rules of each group, kept from the watch that fills `rules`.
    members: Arc<GroupMembers>,
    configs: Store<ProviderConfig>,
    namespaces: Store<Namespace>,
    /// By namespace: only the credentials namespaces are watched.
    secrets: HashMap<String, Store<Secret>>,
    /// CA bundles, by namespace: every ConfigMap of the credentials
    /// namespaces (they hold no secrets).
    config_maps: HashMap<String, Store<ConfigMap>>,
    rule_events: Changes<SecurityGroupRule>,
    config_events: Changes<ProviderConfig>,
    namespace_events: Changes<Namespace>,
    secret_events: Changes<Secret>,
    config_map_events: Changes<ConfigMap>,
}

impl Watches {
    /// `deletions` notes each rule deletion the rules watch sees.
    fn start(client: &Client, config: &Config, deletions: &DeletionsSeen) -> Self {
        let rule_api = match &config.namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        };
        let seen = deletions.clone();
        let (rules, rule_events) = cached(
            rule_api,
            labelled(&config.label_selector),
            move |event: &mut watcher::Event<SecurityGroupRule>| match event {
                watcher::Event::Apply(rule) | watcher::Event::InitApply(rule) => {
                    slim(rule);
                    // Before the cache shows the deletion to any reconcile.
                    // A rule's last event (it is gone) shows none.
                    if rule.metadata.deletion_timestamp.is_some() {
                        seen.note();
                    }
                }
                watcher::Event::Delete(rule) => slim(rule),
                watcher::Event::Init | watcher::Event::InitDone => {}
            },
        );
        let members = Arc::new(GroupMembers::default());
        let rule_events = rule_events
            .inspect_ok({
                let members = members.clone();
                move |event| members.fold(event)
            })
            .applied_objects()
            .inspect_ok(log_rule_event)
            .boxed();
        let (configs, config_events) = cached(Api::all(client.clone()), everything(), keep);
        let config_events = spec_changes(config_events.touched_objects()).boxed();
        let (namespaces, namespace_events) = cached(Api::all(client.clone()), everything(), keep);
        let (secrets, secret_events) = namespaced(
            client,
            &config.secret_namespaces,
            &labelled(&config.secret_label_selector),
        );
        let (config_maps, config_map_events) =
            namespaced(client, &config.secret_namespaces, &everything());
        Self {
            rules,
            members,
            configs,
            namespaces,
            secrets,
            config_maps,
            rule_events,
            config_events,
            namespace_events: namespace_events.touched_objects().boxed(),
            secret_events,
            config_map_events,
        }
    }

    /// Readiness waits for every cache to fill.
    fn readiness(&self) -> Vec<Box<dyn server::Readiness>> {
        let mut caches: Vec<Box<dyn server::Readiness>> = vec![
            Box::new(self.rules.clone()),
            Box::new(self.configs.clone()),
            Box::new(self.namespaces.clone()),
        ];
        caches.extend(self.secrets.values().cloned().map(|s| Box::new(s) as _));
        caches.extend(self.config_maps.values().cloned().map(|s| Box::new(s) as _));
        caches
    }
}

/// One watch feeding one cache. `prepare` sees each event before the cache
/// takes it, and drops what the operator never reads. Each watch backs off
/// on its own errors (`WatchBackoff`).
fn cached<K>(
    api: Api<K>,
    watch: watcher::Config,
    mut prepare: impl FnMut(&mut watcher::Event<K>) + Send + 'static,
) -> (
    Store<K>,
    impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
)
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone + Send + Sync,
{
    let (store, writer) = reflector::store();
    let events = watcher(api, watch)
        .backoff(WatchBackoff::default())
        .map_ok(move |mut event| {
            prepare(&mut event);
            event
        })
        .reflect(writer);
    (store, events)
}

/// One cache of `K` per namespace, and their events merged.
fn namespaced<K>(
    client: &Client,
    namespaces: &[String],
    watch: &watcher::Config,
) -> (HashMap<String, Store<K>>, Changes<K>)
where
    K: Resource<Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static,
    K::DynamicType: Default + Eq + Hash + Clone + Send + Sync,
{
    let (stores, events): (HashMap<_, _>, Vec<_>) = namespaces
        .iter()
        .map(|ns| {
            let api = Api::namespaced(client.clone(), ns);
            let (store, events) = cached(api, watch.clone(), keep);
            ((ns.clone(), store), events.touched_objects().boxed())
        })
        .unzip();
    (stores, stream::select_all(events).boxed())
}

fn everything() -> watcher::Config {
    watcher::Config::default()
}

fn labelled(selector: &Option<String>) -> watcher::Config {
    match selector {
        Some(selector) => watcher::Config::default().labels(selector),
        None => watcher::Config::default(),
    }
}

/// Caches an object as the API server sent it.
fn keep<K>(_: &mut watcher::Event<K>) {}

fn log_rule_event(rule: &SecurityGroupRule) {
    debug!(
        namespace = rule.metadata.namespace.as_deref().unwrap_or_default(),
        name = rule.metadata.name.as_deref().unwrap_or_default(),
        resource_version = rule
            .metadata
            .resource_version
            .as_deref()
            .unwrap_or_default(),
        deleting = rule.metadata.deletion_timestamp.is_some(),
        "rule event"
    );
}

/// The reconciles' shared state, over the watches' caches.
fn context(
    config: &Config,
    client: Client,
    connector: Arc<dyn Connector>,
    metrics: Arc<Metrics>,
    watches: &Watches,
    uninstall: Uninstall,
    wake: mpsc::UnboundedSender<ObjectRef<SecurityGroupRule>>,
) -> Arc<Context> {
    let resolver = Resolver::new(
        watches.configs.clone(),
        watches.secrets.clone(),
        watches.namespaces.clone(),
        connector,
        metrics.clone(),
    )
    .reading_secrets_labelled(config.secret_label_selector.clone())
    .reading_config_maps(watches.config_maps.clone());
    metrics.observe_rules(watches.rules.clone());
    let recorder = Recorder::new(client.clone(), super::events::reporter());
    Arc::new(
        Context::new(client, recorder, resolver, wake, metrics)
            .with_concurrency(config.concurrency.into())
            .with_rules(watches.rules.clone(), watches.members.clone())
            .abandoning_on_uninstall(uninstall),
    )
}

/// The controller: every rule event, and whatever else concerns a rule,
/// runs `reconcile` for it, until `stop`.
fn controller(
    config: &Config,
    watches: Watches,
    crd_events: impl Stream<Item = Result<uninstall::CrdMeta, watcher::Error>> + Send + 'static,
    woken: mpsc::UnboundedReceiver<ObjectRef<SecurityGroupRule>>,
    ctx: Arc<Context>,
    stop: impl Future<Output = ()> + Send + Sync + 'static,
) -> impl Future<Output = ()> {
    let rules = watches.rules;
    Controller::for_stream(watches.rule_events, rules.clone())
        .with_config(ControllerConfig::default().concurrency(config.concurrency))
        .trigger_backoff(NoPause)
        .watches_stream(watches.config_events, rules_using_config(rules.clone()))
        .watches_stream(
            watches.secret_events,
            rules_using_secret(rules.clone(), watches.configs.clone()),
        )
        .watches_stream(
            watches.config_map_events,
            rules_using_config_map(rules.clone(), watches.configs),
        )
        .watches_stream(watches.namespace_events, rules_in_namespace(rules.clone()))
        .watches_stream(crd_events, every_rule_on_uninstall(rules))
        .reconcile_on(woken)
        .graceful_shutdown_on(stop)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                // A requeue of a rule deleted meanwhile: expected, nothing to do.
                Err(e @ controller::Error::ObjectNotFound(_)) => {
                    debug!(error = %e, "rule gone before its requeue");
                }
                Err(e) => warn!(error = %e, "reconcile loop error"),
                Ok(_) => {}
            }
        })
}

/// Holds ProviderConfigs in use against deletion; only an instance that
/// sees every namespace can count their rules.
async fn guard_configs_in_use(
    config: &Config,
    client: Client,
    stop: impl Future<Output = ()> + Send + Sync + 'static,
) {
    if config.namespace.is_none() {
        usage::run(client, stop).await;
    } else {
        info!(
            "this instance watches one namespace only: ProviderConfigs in use are not guarded against deletion"
        );
    }
}

/// Drops what the operator never reads before a rule enters the cache, where
/// every rule stays: managedFields are most of a rule's size, a client-side
/// `kubectl apply` copies the whole object into an annotation, and labels
/// (filtered by the API server for `--label-selector`) and annotations
/// other than the operator's own (`secgroup.dev/paused`) are never read.
/// Even one label costs a map node of about half a KiB per rule.
fn slim(rule: &mut SecurityGroupRule) {
    let meta = &mut rule.metadata;
    meta.managed_fields = None;
    meta.labels = None;
    meta.annotations = meta
        .annotations
        .take()
        .map(|all| {
            all.into_iter()
                .filter(|(key, _)| key.starts_with(OWN_ANNOTATIONS))
                .collect::<BTreeMap<_, _>>()
        })
        .filter(|own| !own.is_empty());
}

/// The prefix of the annotations the operator reads.
const OWN_ANNOTATIONS: &str = "secgroup.dev/";

/// Aborts a spawned task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Every watch backs off on its own errors (`WatchBackoff`). The
/// controller's own backoff over all of them together would pause every
/// trigger on any one watch's error, and after an API server restart the
/// watches' errors kept all reconciles waiting for minutes.
struct NoPause;

impl Iterator for NoPause {
    type Item = std::time::Duration;

    fn next(&mut self) -> Option<Self::Item> {
        Some(std::time::Duration::ZERO)
    }
}

impl Backoff for NoPause {
    fn reset(&mut self) {}
}

/// The ProviderConfig changes that concern its rules: a new spec, or the
/// config's deletion; never its status, which changes as rules come and go
/// and would otherwise run every rule of the config from a cache that may
/// not show its own last write. Nor a change of pace alone (`rateLimit`,
/// `timeouts`): it cannot make the config invalid (the CRD bounds both) nor
/// change what a rule holds, and the next call of any rule uses it (a client
/// is rebuilt for the config's new generation). At 10,000 rules such a change
/// ran 10,000 reconciles that did nothing.
fn spec_changes(
    configs: impl Stream<Item = Result<ProviderConfig, watcher::Error>> + Send + 'static,
) -> impl Stream<Item = Result<ProviderConfig, watcher::Error>> + Send + 'static {
    configs.predicate_filter(what_rules_read, PredicateConfig::default())
}

/// A digest of what the rules of `config` read of it.
fn what_rules_read(config: &ProviderConfig) -> Option<u64> {
    let mut spec = config.spec.clone();
    spec.rate_limit = None;
    spec.timeouts = None;
    let mut digest = std::hash::DefaultHasher::new();
    serde_json::to_vec(&spec).ok()?.hash(&mut digest);
    config
        .metadata
        .deletion_timestamp
        .is_some()
        .hash(&mut digest);
    Some(digest.finish())
}

fn rules_using_config(
    rules: Store<SecurityGroupRule>,
) -> impl Fn(ProviderConfig) -> Vec<ObjectRef<SecurityGroupRule>> + Send + Sync + 'static {
    move |config| {
        let name = config.name_any();
        rules
            .state()
            .iter()
            .filter(|r| r.spec.provider_config_ref.name == name)
            .map(|r| ObjectRef::from_obj(r.as_ref()))
            .collect()
    }
}

fn rules_using_secret(
    rules: Store<SecurityGroupRule>,
    configs: Store<ProviderConfig>,
) -> impl Fn(Secret) -> Vec<ObjectRef<SecurityGroupRule>> + Send + Sync + 'static {
    move |secret| {
        let (ns, name) = (secret.namespace().unwrap_or_default(), secret.name_any());
        rules_of_configs(&rules, &configs, |c| {
            let credentials = &c.spec.credentials_secret_ref;
            let ca = c.spec.tls.as_ref().and_then(|t| t.ca_secret_ref.as_ref());
            (credentials.namespace == ns && credentials.name == name)
                || ca.is_some_and(|r| r.namespace == ns && r.name == name)
        })
    }
}

fn rules_using_config_map(
    rules: Store<SecurityGroupRule>,
    configs: Store<ProviderConfig>,
) -> impl Fn(ConfigMap) -> Vec<ObjectRef<SecurityGroupRule>> + Send + Sync + 'static {
    move |config_map| {
        let (ns, name) = (
            config_map.namespace().unwrap_or_default(),
            config_map.name_any(),
        );
        rules_of_configs(&rules, &configs, |c| {
            let ca = c
                .spec
                .tls
                .as_ref()
                .and_then(|t| t.ca_config_map_ref.as_ref());
            ca.is_some_and(|r| r.namespace == ns && r.name == name)
        })
    }
}

/// The rules of every ProviderConfig that `uses` selects.
fn rules_of_configs(
    rules: &Store<SecurityGroupRule>,
    configs: &Store<ProviderConfig>,
    uses: impl Fn(&ProviderConfig) -> bool,
) -> Vec<ObjectRef<SecurityGroupRule>> {
    let using: Vec<String> = configs
        .state()
        .iter()
        .filter(|c| uses(c))
        .map(|c| c.name_any())
        .collect();
    rules
        .state()
        .iter()
        .filter(|r| using.contains(&r.spec.provider_config_ref.name))
        .map(|r| ObjectRef::from_obj(r.as_ref()))
        .collect()
}

/// Rules waiting in cleanup (say, for a missing Secret) are released at once
/// when the CRD starts to go.
fn every_rule_on_uninstall(
    rules: Store<SecurityGroupRule>,
) -> impl Fn(uninstall::CrdMeta) -> Vec<ObjectRef<SecurityGroupRule>> + Send + Sync + 'static {
    move |crd| {
        if !uninstall::is_terminating(&crd) {
            return Vec::new();
        }
        rules
            .state()
            .iter()
            .filter(|r| r.metadata.deletion_timestamp.is_some())
            .map(|r| ObjectRef::from_obj(r.as_ref()))
            .collect()
    }
}

fn rules_in_namespace(
    rules: Store<SecurityGroupRule>,
) -> impl Fn(Namespace) -> Vec<ObjectRef<SecurityGroupRule>> + Send + Sync + 'static {
    move |namespace| {
        let name = namespace.name_any();
        rules
            .state()
            .iter()
            .filter(|r| r.namespace().as_deref() == Some(name.as_str()))
            .map(|r| ObjectRef::from_obj(r.as_ref()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures::stream;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use kube::runtime::utils::StreamBackoff;

    use super::*;
    use crate::api::provider_config::{CallTimeouts, RateLimit};

    /// kube's controller starts due reconciles in no particular order once
    /// all of its `concurrency` run: the reconciles' slots must be shared
    /// between namespaces at that same number, or one namespace's backlog
    /// fills them all and another's deletion waits behind it.
    #[tokio::test]
    async fn a_namespace_holds_at_most_three_quarters_of_the_controllers_reconciles() {
        let (service, _server) = tower_test::mock::pair::<
            http::Request<kube::client::Body>,
            http::Response<kube::client::Body>,
        >();
        let client = Client::new(service, "default");
        let config = Config {
            namespace: None,
            label_selector: None,
            secret_namespaces: vec!["system".to_owned()],
            secret_label_selector: None,
            concurrency: 8,
            resync_interval: Duration::from_secs(600),
        };
        let deletions = DeletionsSeen::default();
        let watches = Watches::start(&client, &config, &deletions);
        let (uninstall, _) = Uninstall::watch(client.clone(), deletions);
        let (wake, _) = mpsc::unbounded();
        let connector = Arc::new(super::super::connector::Clients);
        let metrics = Arc::new(Metrics::new());
        let ctx = context(
            &config, client, connector, metrics, &watches, uninstall, wake,
        );
        let rule = |namespace: &str, name: &str| ObjectRef::new(name).within(namespace);
        let held: Vec<_> = (0..6)
            .map(|i| ctx.slots.enter(&rule("a", &i.to_string())).expect("a slot"))
            .collect();
        assert!(
            ctx.slots.enter(&rule("a", "6")).is_err(),
            "a holds 6 of the 8"
        );
        assert!(
            ctx.slots.enter(&rule("b", "0")).is_ok(),
            "b still gets a slot"
        );
        drop(held);
    }

    /// A config's status, or only its pace, runs none of its rules; any
    /// other change of its spec, or its deletion, runs them all.
    #[tokio::test]
    async fn only_a_new_spec_of_a_config_runs_its_rules() {
        let config = |resource_version: &str, generation: i64, uid: &str| {
            let config: ProviderConfig = serde_json::from_value(serde_json::json!({
                "apiVersion": "secgroup.dev/v1alpha1", "kind": "ProviderConfig",
                "metadata": {"name": "cloud", "uid": uid,
                             "resourceVersion": resource_version, "generation": generation},
                "spec": {"type": "alibaba", "region": "cn-hangzhou",
                         "credentialsSecretRef": {"namespace": "system", "name": "creds"}},
            }))
            .expect("valid ProviderConfig");
            Ok(config)
        };
        let paced = |resource_version: &str, generation: i64| {
            config(resource_version, generation, "a").map(|mut c| {
                c.spec.rate_limit = Some(RateLimit {
                    qps: 200,
                    burst: 20,
                });
                c.spec.timeouts = Some(CallTimeouts {
                    connect_seconds: Some(3),
                    request_seconds: None,
                });
                c
            })
        };
        let in_region = |resource_version: &str, generation: i64, region: &str| {
            paced(resource_version, generation).map(|mut c| {
                c.spec.region = region.into();
                c
            })
        };
        let deleted = |resource_version: &str, generation: i64| {
            in_region(resource_version, generation, "cn-beijing").map(|mut c| {
                c.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::UNIX_EPOCH));
                c
            })
        };
        let events = stream::iter([
            config("1", 1, "a"),
            config("2", 1, "a"), // a status write
            paced("3", 2),       // only the pace
            in_region("4", 3, "cn-beijing"),
            deleted("5", 4),
            config("6", 1, "b"), // deleted and created again
        ]);
        let passed: Vec<_> = spec_changes(events)
            .map(|c| c.expect("no error").resource_version())
            .collect()
            .await;
        let versions = |v: &[&str]| v.iter().map(|v| Some((*v).to_owned())).collect::<Vec<_>>();
        assert_eq!(passed, versions(&["1", "4", "5", "6"]));
    }

    fn store_of<K>(objects: Vec<K>) -> Store<K>
    where
        K: kube::Resource + Clone + 'static,
        K::DynamicType: Default + Eq + std::hash::Hash + Clone,
    {
        let (store, mut writer) = reflector::store();
        for object in objects {
            writer.apply_watcher_event(&watcher::Event::Apply(object));
        }
        store
    }

    /// A change to a CA ConfigMap, or to a Secret, runs the rules of the
    /// configs that name it, and only those.
    #[test]
    fn a_ca_config_map_or_secret_runs_the_rules_of_the_configs_naming_it() {
        let config = |name: &str, tls: serde_json::Value| -> ProviderConfig {
            serde_json::from_value(serde_json::json!({
                "apiVersion": "secgroup.dev/v1alpha1", "kind": "ProviderConfig",
                "metadata": {"name": name},
                "spec": {"type": "alibaba", "region": "cn-hangzhou", "tls": tls,
                         "credentialsSecretRef": {"namespace": "system", "name": format!("{name}-creds")}},
            }))
            .expect("valid ProviderConfig")
        };
        let configs = store_of(vec![
            config(
                "by-map",
                serde_json::json!({"caConfigMapRef": {"namespace": "system", "name": "ca"}}),
            ),
            config(
                "by-secret",
                serde_json::json!({"caSecretRef": {"namespace": "system", "name": "ca"}}),
            ),
        ]);
        let rule = |name: &str, config: &str| -> SecurityGroupRule {
            serde_json::from_value(serde_json::json!({
                "apiVersion": "secgroup.dev/v1alpha1", "kind": "SecurityGroupRule",
                "metadata": {"name": name, "namespace": "team"},
                "spec": {"providerConfigRef": {"name": config}, "securityGroupId": "sg-1",
                         "rule": {"direction": "Ingress", "protocol": "ALL", "peer": {"cidr": "10.0.0.0/8"}}},
            }))
            .expect("valid rule")
        };
        let rules = store_of(vec![rule("a", "by-map"), rule("b", "by-secret")]);
        let object =
            |name: &str| serde_json::json!({"metadata": {"name": name, "namespace": "system"}});
        let names = |refs: Vec<ObjectRef<SecurityGroupRule>>| {
            refs.into_iter().map(|r| r.name).collect::<Vec<_>>()
        };
        let by_map = rules_using_config_map(rules.clone(), configs.clone());
        let map = |name| serde_json::from_value::<ConfigMap>(object(name)).expect("ConfigMap");
        assert_eq!(names(by_map(map("ca"))), ["a"]);
        assert!(by_map(map("other")).is_empty());
        let by_secret = rules_using_secret(rules, configs);
        let secret = |name| serde_json::from_value::<Secret>(object(name)).expect("Secret");
        assert_eq!(names(by_secret(secret("ca"))), ["b"]);
        assert_eq!(names(by_secret(secret("by-map-creds"))), ["a"]);
    }

    #[test]
    fn cached_rules_keep_only_what_the_operator_reads() {
        let mut rule: SecurityGroupRule = serde_json::from_value(serde_json::json!({
            "apiVersion": "secgroup.dev/v1alpha1",
            "kind": "SecurityGroupRule",
            "metadata": {
                "name": "r", "namespace": "n", "uid": "u-1", "resourceVersion": "7",
                "generation": 2, "finalizers": ["secgroup.dev/revoke"],
                "labels": {"app.kubernetes.io/managed-by": "Helm"},
                "annotations": {
                    "kubectl.kubernetes.io/last-applied-configuration": "{}",
                    "team": "web", crate::controller::gate::PAUSED: "true"
                },
                "managedFields": [{"manager": "kubectl", "operation": "Apply", "fieldsType": "FieldsV1", "fieldsV1": {}}]
            },
            "spec": {
                "providerConfigRef": {"name": "p"}, "securityGroupId": "sg-1",
                "rule": {"direction": "Ingress", "protocol": "TCP", "peer": {"cidr": "10.0.0.0/8"}}
            },
            "status": {"ruleId": "sgr-1"}
        }))
        .expect("valid rule");
        let before = rule.clone();
        slim(&mut rule);
        assert_eq!(rule.metadata.managed_fields, None);
        assert_eq!(rule.metadata.labels, None);
        assert_eq!(
            rule.annotations().keys().collect::<Vec<_>>(),
            [crate::controller::gate::PAUSED]
        );
        assert_eq!(rule.uid(), before.uid());
        assert_eq!(rule.resource_version(), before.resource_version());
        assert_eq!(rule.metadata.generation, before.metadata.generation);
        assert_eq!(rule.finalizers(), before.finalizers());
        assert_eq!(rule.spec, before.spec);
        assert_eq!(rule.status, before.status);

        let mut plain = before;
        plain.metadata.annotations = Some(BTreeMap::from([(
            "kubectl.kubernetes.io/last-applied-configuration".into(),
            "{}".into(),
        )]));
        slim(&mut plain);
        assert_eq!(plain.metadata.annotations, None, "no empty map is kept");
    }

    /// Errors from one watch must not hold back what the others deliver:
    /// the merged triggers go on at once, however many errors come first.
    #[tokio::test(start_paused = true)]
    async fn watch_errors_do_not_pause_the_triggers() {
        let mut events = vec![Err("apiserver unreachable"); 50];
        events.push(Ok("rule changed"));
        let started = tokio::time::Instant::now();
        let delivered: Vec<_> = StreamBackoff::new(stream::iter(events), NoPause)
            .collect()
            .await;
        assert_eq!(delivered.len(), 51, "the stream must not end on errors");
        assert_eq!(delivered.last(), Some(&Ok("rule changed")));
        assert_eq!(started.elapsed(), Duration::ZERO);
    }
}
