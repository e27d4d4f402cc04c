//! Finds the provider client for a rule: its ProviderConfig, the config's
//! credentials Secret, and whether the rule's namespace may use them.
//! Reads only the informer caches; never the API server directly.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use k8s_openapi::{
    ByteString,
    api::core::v1::{ConfigMap, Namespace, Secret},
};
use kube::{
    ResourceExt,
    core::{Selector, SelectorExt},
    runtime::reflector::{ObjectRef, Store},
};

use super::audit::{Audited, Subject};
use crate::{
    api::{
        ProviderConfig, SecurityGroupRule,
        conditions::reasons,
        provider_config::{KeyRef, ProviderType},
        rule::{DeletionPolicy, Origin},
    },
    cache::synced,
    metrics::Metrics,
    provider::{Provider, ProviderKind},
};

use super::share::Share;

/// Builds a provider client from a ProviderConfig, its credentials Secret
/// and the PEM certificates it trusts besides the system's (`extra_roots`).
/// The operator uses the real clients; unit tests plug in doubles.
pub trait Connector: Send + Sync {
    fn connect(
        &self,
        config: &ProviderConfig,
        secret: &Secret,
        extra_roots: &[u8],
    ) -> Result<Connected, ConnectFailure>;
}

/// A connected client and the access key id it signs with (for the audit trail).
pub struct Connected {
    pub provider: Arc<dyn Provider>,
    pub access_key_id: String,
}

/// Why no client could be built. Messages name fields and keys, never values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnectFailure {
    /// The ProviderConfig's spec cannot be used (endpoint, TLS).
    Config(String),
    /// The credentials Secret lacks a key or holds a malformed one.
    Secret(String),
}

/// Why a rule cannot be acted on until someone changes something.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("ProviderConfig {0} does not exist")]
    ConfigNotFound(String),
    #[error(
        "ProviderConfig {config} does not allow SecurityGroupRules in namespace {namespace} (see its spec.allowedNamespaces)"
    )]
    NamespaceNotAllowed { config: String, namespace: String },
    #[error("namespace {0} is not known yet")]
    NamespaceUnknown(String),
    #[error("ProviderConfig {config} has an invalid spec.allowedNamespaces: {reason}")]
    BadSelector { config: String, reason: String },
    #[error(
        "the operator does not read Secrets in namespace {0}: move the credentials Secret to a namespace it watches (--secret-namespace)"
    )]
    SecretNamespaceNotWatched(String),
    #[error("credentials Secret {namespace}/{name} does not exist{}", label_hint(.selector))]
    SecretNotFound {
        namespace: String,
        name: String,
        /// The operator reads only Secrets matching this label selector.
        selector: Option<String>,
    },
    #[error("credentials Secret {namespace}/{name} is invalid: {reason}")]
    SecretInvalid {
        namespace: String,
        name: String,
        reason: String,
    },
    #[error("ProviderConfig {config} cannot be used: {reason}")]
    ConfigInvalid { config: String, reason: String },
    #[error("CA {kind} {namespace}/{name} ({field}) does not exist or has no key {key}")]
    CaNotFound {
        /// `Secret` or `ConfigMap`.
        kind: &'static str,
        /// The ProviderConfig field that names it.
        field: &'static str,
        namespace: String,
        name: String,
        key: String,
    },
    #[error(
        "the operator reads ConfigMaps only in the namespaces it reads Secrets in (--secret-namespace): move CA ConfigMap {namespace}/{name} to one of them"
    )]
    ConfigMapNamespaceNotWatched { namespace: String, name: String },
}

impl ResolveError {
    /// The `Stalled` condition reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::ConfigNotFound(_) => reasons::PROVIDER_CONFIG_NOT_FOUND,
            Self::NamespaceNotAllowed { .. } | Self::BadSelector { .. } => {
                reasons::NAMESPACE_NOT_ALLOWED
            }
            Self::NamespaceUnknown(_) => reasons::PROGRESSING,
            Self::SecretNamespaceNotWatched(_)
            | Self::SecretNotFound { .. }
            | Self::CaNotFound { kind: "Secret", .. } => reasons::SECRET_NOT_FOUND,
            Self::SecretInvalid { .. } => reasons::SECRET_INVALID,
            Self::ConfigInvalid { .. }
            | Self::CaNotFound { .. }
            | Self::ConfigMapNamespaceNotWatched { .. } => reasons::PROVIDER_CONFIG_INVALID,
        }
    }

    /// Whether this resolves itself without anyone changing anything.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::NamespaceUnknown(_))
    }
}

fn ca_not_found(kind: &'static str, field: &'static str, reference: &KeyRef) -> ResolveError {
    ResolveError::CaNotFound {
        kind,
        field,
        namespace: reference.namespace.clone(),
        name: reference.name.clone(),
        key: reference.key.clone(),
    }
}

/// The value of `key` in an object's binary map, else in its text map.
fn key_of(
    binary: Option<&std::collections::BTreeMap<String, ByteString>>,
    text: Option<&std::collections::BTreeMap<String, String>>,
    key: &str,
) -> Option<Vec<u8>> {
    binary
        .and_then(|d| d.get(key))
        .map(|v| v.0.clone())
        .or_else(|| Some(text?.get(key)?.clone().into_bytes()))
}

fn label_hint(selector: &Option<String>) -> String {
    selector
        .as_ref()
        .map(|s| format!(" or is not labelled {s}"))
        .unwrap_or_default()
}

/// A rule's provider, ready to call.
#[derive(Clone)]
pub struct Resolved {
    pub provider: Arc<dyn Provider>,
    pub kind: ProviderKind,
    pub config_name: String,
    /// The access key id of the config's credentials (never the secret).
    pub access_key_id: String,
    /// Where calls go: the account's key and the endpoint, hashed.
    pub origin: Origin,
    /// Changes whenever the config or its Secret changes: keys the
    /// per-credentials backoff, so fixed credentials are tried at once, and
    /// the shared describes, so none made elsewhere serves a check.
    pub credentials_key: String,
    pub default_region: String,
    pub default_deletion_policy: DeletionPolicy,
    /// Whether rules that opt in may take over existing rules (`allowAdoption`).
    pub allow_adoption: bool,
}

pub fn kind_of(t: ProviderType) -> ProviderKind {
    match t {
        ProviderType::Alibaba => ProviderKind::Alibaba,
        ProviderType::Apsarastack => ProviderKind::Apsara,
        ProviderType::Baidu => ProviderKind::Baidu,
    }
}

/// Informer caches and a cache of connected clients, one per ProviderConfig,
/// rebuilt when the config or its Secret changes.
pub struct Resolver {
    pub configs: Store<ProviderConfig>,
    pub secrets: HashMap<String, Store<Secret>>,
    /// ConfigMaps (CA bundles), in the same namespaces as `secrets`.
    pub config_maps: HashMap<String, Store<ConfigMap>>,
    pub namespaces: Store<Namespace>,
    /// The label selector the Secret informers use, for error messages.
    secret_selector: Option<String>,
    connector: Arc<dyn Connector>,
    /// Every client is wrapped to count and time its calls.
    metrics: Arc<Metrics>,
    clients: Mutex<HashMap<String, CachedClient>>,
}

struct CachedClient {
    /// The config's generation and the resourceVersions of the Secret and the
    /// CA Secret or ConfigMap it was built from.
    versions: (Option<i64>, Option<String>, Option<String>),
    connection: Connection,
}

/// A ProviderConfig's client, its share of the rate limit, and its key id.
#[derive(Clone)]
struct Connection {
    provider: Arc<dyn Provider>,
    share: Arc<Share>,
    access_key_id: String,
}

impl Resolver {
    pub fn new(
        configs: Store<ProviderConfig>,
        secrets: HashMap<String, Store<Secret>>,
        namespaces: Store<Namespace>,
        connector: Arc<dyn Connector>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            configs,
            secrets,
            config_maps: HashMap::new(),
            namespaces,
            secret_selector: None,
            connector,
            metrics,
            clients: Mutex::default(),
        }
    }

    /// The Secret informers read only Secrets matching `selector`.
    #[must_use]
    pub fn reading_secrets_labelled(mut self, selector: Option<String>) -> Self {
        self.secret_selector = selector;
        self
    }

    /// CA bundles may come from ConfigMaps in these caches.
    #[must_use]
    pub fn reading_config_maps(mut self, config_maps: HashMap<String, Store<ConfigMap>>) -> Self {
        self.config_maps = config_maps;
        self
    }

    /// Resolves the provider for `rule`, its mutating calls audited in its name.
    pub fn resolve_rule(&self, rule: &SecurityGroupRule) -> Result<Resolved, ResolveError> {
        let namespace = rule.namespace().unwrap_or_default();
        let mut resolved = self.resolve(&rule.spec.provider_config_ref.name, &namespace)?;
        let subject = Subject {
            namespace,
            name: rule.name_any(),
            uid: rule.uid().unwrap_or_default(),
            provider_config: resolved.config_name.clone(),
            access_key_id: resolved.access_key_id.clone(),
        };
        resolved.provider = Audited::wrap(resolved.provider, subject);
        Ok(resolved)
    }

    /// Waits until every cache `resolve` reads has its first full list, so a
    /// rule is never judged against an empty cache right after start.
    pub async fn caches_ready(&self) {
        let secrets = futures::future::join_all(self.secrets.values().map(synced));
        let config_maps = futures::future::join_all(self.config_maps.values().map(synced));
        futures::join!(
            synced(&self.configs),
            synced(&self.namespaces),
            secrets,
            config_maps
        );
    }

    /// Resolves the provider for a rule named `config_name` in `namespace`.
    pub fn resolve(&self, config_name: &str, namespace: &str) -> Result<Resolved, ResolveError> {
        let config = self
            .configs
            .get(&ObjectRef::new(config_name))
            .ok_or_else(|| ResolveError::ConfigNotFound(config_name.to_owned()))?;
        self.check_namespace(&config, namespace)?;
        let secret_ref = &config.spec.credentials_secret_ref;
        let secret = self
            .secret(&secret_ref.namespace, &secret_ref.name)?
            .ok_or_else(|| ResolveError::SecretNotFound {
                namespace: secret_ref.namespace.clone(),
                name: secret_ref.name.clone(),
                selector: self.secret_selector.clone(),
            })?;
        let Connection {
            provider,
            share,
            access_key_id,
        } = self.client(&config, &secret)?;
        Ok(Resolved {
            // Calls wait for the namespace's turn at the config's rate.
            provider: share.wrap(provider, namespace),
            kind: kind_of(config.spec.type_),
            config_name: config_name.to_owned(),
            origin: super::origin::of(&config.spec, &access_key_id),
            access_key_id,
            credentials_key: format!(
                "{config_name}@{}/{}",
                config.metadata.generation.unwrap_or_default(),
                secret.resource_version().unwrap_or_default()
            ),
            default_region: config.spec.region.clone(),
            allow_adoption: config.spec.allow_adoption == Some(true),
            default_deletion_policy: config
                .spec
                .defaults
                .as_ref()
                .and_then(|d| d.deletion_policy)
                .unwrap_or_default(),
        })
    }

    fn check_namespace(
        &self,
        config: &ProviderConfig,
        namespace: &str,
    ) -> Result<(), ResolveError> {
        let Some(selector) = &config.spec.allowed_namespaces else {
            return Ok(());
        };
        let selector =
            Selector::try_from(selector.clone()).map_err(|e| ResolveError::BadSelector {
                config: config.name_any(),
                reason: e.to_string(),
            })?;
        let ns = self
            .namespaces
            .get(&ObjectRef::new(namespace))
            .ok_or_else(|| ResolveError::NamespaceUnknown(namespace.to_owned()))?;
        if selector.matches(ns.labels()) {
            Ok(())
        } else {
            Err(ResolveError::NamespaceNotAllowed {
                config: config.name_any(),
                namespace: namespace.to_owned(),
            })
        }
    }

    /// A Secret from the cache of its namespace, which must be one the operator reads.
    fn secret(&self, namespace: &str, name: &str) -> Result<Option<Arc<Secret>>, ResolveError> {
        let secrets = self
            .secrets
            .get(namespace)
            .ok_or_else(|| ResolveError::SecretNamespaceNotWatched(namespace.to_owned()))?;
        Ok(secrets.get(&ObjectRef::new(name).within(namespace)))
    }

    /// The config's extra CA certificates (from its one source), and the
    /// resourceVersion of the Secret or ConfigMap they came from.
    fn extra_roots(
        &self,
        config: &ProviderConfig,
    ) -> Result<(Vec<u8>, Option<String>), ResolveError> {
        let Some(tls) = &config.spec.tls else {
            return Ok((Vec::new(), None));
        };
        if let Some(reference) = &tls.ca_secret_ref {
            let missing = || ca_not_found("Secret", "spec.tls.caSecretRef", reference);
            let secret = self
                .secret(&reference.namespace, &reference.name)?
                .ok_or_else(missing)?;
            let pem = key_of(
                secret.data.as_ref(),
                secret.string_data.as_ref(),
                &reference.key,
            )
            .ok_or_else(missing)?;
            return Ok((pem, secret.resource_version()));
        }
        if let Some(reference) = &tls.ca_config_map_ref {
            let missing = || ca_not_found("ConfigMap", "spec.tls.caConfigMapRef", reference);
            let config_map = self
                .config_maps
                .get(&reference.namespace)
                .ok_or_else(|| ResolveError::ConfigMapNamespaceNotWatched {
                    namespace: reference.namespace.clone(),
                    name: reference.name.clone(),
                })?
                .get(&ObjectRef::new(&reference.name).within(&reference.namespace))
                .ok_or_else(missing)?;
            let pem = key_of(
                config_map.binary_data.as_ref(),
                config_map.data.as_ref(),
                &reference.key,
            )
            .ok_or_else(missing)?;
            return Ok((pem, config_map.resource_version()));
        }
        Ok((tls.ca_bundle.clone().unwrap_or_default().into_bytes(), None))
    }

    fn client(&self, config: &ProviderConfig, secret: &Secret) -> Result<Connection, ResolveError> {
        let (extra_roots, ca_version) = self.extra_roots(config)?;
        // The config's generation, not its resourceVersion: status writes
        // (its conditions change as rules come and go) must not replace the
        // client, whose token bucket and namespace queues hold the rate.
        let versions = (
            config.metadata.generation,
            secret.resource_version(),
            ca_version,
        );
        let name = config.name_any();
        let mut clients = self
            .clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(cached) = clients.get(&name).filter(|c| c.versions == versions) {
            return Ok(cached.connection.clone());
        }
        let connected = self
            .connector
            .connect(config, secret, &extra_roots)
            .map_err(|failure| match failure {
                ConnectFailure::Secret(reason) => ResolveError::SecretInvalid {
                    namespace: secret.namespace().unwrap_or_default(),
                    name: secret.name_any(),
                    reason,
                },
                ConnectFailure::Config(reason) => ResolveError::ConfigInvalid {
                    config: name.clone(),
                    reason,
                },
            })?;
        let rate = config.spec.rate_limit.unwrap_or_default();
        let connection = Connection {
            provider: self.metrics.meter(connected.provider),
            share: Share::new(rate.qps, rate.burst),
            access_key_id: connected.access_key_id,
        };
        clients.insert(
            name,
            CachedClient {
                versions,
                connection: connection.clone(),
            },
        );
        Ok(connection)
    }
}
