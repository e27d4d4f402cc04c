//! `ProviderConfig`: one cloud account, its endpoint and its credentials.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{conditions::Condition, rule::DeletionPolicy};

/// A cloud account that SecurityGroupRules refer to by name: which provider,
/// where its API is, which Secret holds its credentials, how fast the
/// operator may call it, and which namespaces may use it.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "secgroup.dev",
    version = "v1alpha1",
    kind = "ProviderConfig",
    category = "secgroup",
    status = "ProviderConfigStatus",
    printcolumn = r#"{"name":"Type","type":"string","jsonPath":".spec.type"}"#,
    printcolumn = r#"{"name":"Region","type":"string","jsonPath":".spec.region"}"#,
    printcolumn = r#"{"name":"Endpoint","type":"string","jsonPath":".spec.endpoint","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.type != 'apsarastack' || has(self.endpoint)").message("spec.endpoint is required when spec.type is apsarastack").field_path(".endpoint").reason(Reason::FieldValueRequired),
    validation = Rule::new("!has(self.apsara) || self.type == 'apsarastack'").message("spec.apsara is allowed only when spec.type is apsarastack").field_path(".apsara").reason(Reason::FieldValueForbidden),
    validation = Rule::new("!has(self.signatureVersion) || self.type != 'baidu'").message("spec.signatureVersion applies to alibaba and apsarastack only; Baidu always signs with bce-auth-v1").field_path(".signatureVersion").reason(Reason::FieldValueForbidden),
    validation = Rule::new("!has(self.endpoint) || !self.endpoint.startsWith('http://') || (has(self.allowInsecureHttp) && self.allowInsecureHttp)").message("spec.endpoint uses http://, which sends the access key id and signed requests in clear: use https://, or set spec.allowInsecureHttp: true").field_path(".endpoint").reason(Reason::FieldValueForbidden),
    validation = Rule::new("self.type != 'apsarastack' || !has(self.signatureVersion) || self.signatureVersion == 'v2'").message("spec.signatureVersion must be v2 for apsarastack").field_path(".signatureVersion").reason(Reason::FieldValueInvalid),
)]
pub struct ProviderConfigSpec {
    /// `alibaba` (Alibaba Cloud ECS), `apsarastack` (Alibaba Apsara Stack) or
    /// `baidu` (Baidu AI Cloud BCC).
    #[serde(rename = "type")]
    pub type_: ProviderType,

    /// API endpoint, e.g. `https://ecs.cn-hangzhou.aliyuncs.com`. Defaults to
    /// the provider's public endpoint for the region; required for Apsara Stack.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 512),
        regex(pattern = r"^https?://[^\s/?#@]+(/[^\s?#]*)?$")
    )]
    pub endpoint: Option<String>,

    /// Allows an `http://` endpoint: requests, the access key id and their
    /// signatures then travel in clear. The ProviderConfig shows it in its
    /// `InsecureEndpoint` condition. For test clouds on a trusted network only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_insecure_http: Option<bool>,

    /// Certificate authorities trusted for the endpoint besides the system's
    /// (the image's CA store), e.g. the private CA of an Apsara Stack gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSettings>,

    /// Default region of the rules that use this config, e.g. `cn-hangzhou` or `bj`.
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[a-z0-9][a-z0-9-]*$"))]
    pub region: String,

    /// The Secret with keys `accessKeyId`, `accessKeySecret` and optionally
    /// `securityToken`. The operator reads it only in namespaces it is granted.
    pub credentials_secret_ref: SecretRef,

    /// Alibaba signature: `v3` (ACS3-HMAC-SHA256, default for alibaba) or `v2`
    /// (HMAC-SHA1 RPC, the only one Apsara Stack gateways accept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature_version: Option<SignatureVersion>,

    /// Apsara Stack gateway settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apsara: Option<ApsaraSettings>,

    /// Client-side rate limit for calls to this account. Defaults to 10 calls
    /// per second with a burst of 20.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,

    /// How long a provider call may take. Defaults to 5 s to connect and
    /// 30 s for the whole request; the wait on the rate limit comes first
    /// and is not counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<CallTimeouts>,

    /// Which namespaces' SecurityGroupRules may use these credentials. Unset
    /// allows every namespace; an empty selector (`{}`) does too. Rules in
    /// other namespaces are refused (Stalled) without any provider call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_namespaces: Option<LabelSelector>,

    /// Lets a SecurityGroupRule that sets `spec.adopt: true` take over an
    /// identical cloud rule that the operator did not create (Alibaba Cloud
    /// only: the operator adds its ownership mark to the rule's description
    /// with ModifySecurityGroupRule, and from then on revokes it like its
    /// own). Off by default: an existing rule stalls the object with
    /// `RuleAlreadyExists`. Baidu needs no adoption (the mark is part of the
    /// remark, so the object gets a rule of its own), and Apsara Stack
    /// offers no way to mark an existing rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_adoption: Option<bool>,

    /// Defaults for the rules that use this config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defaults: Option<ProviderDefaults>,

    /// What the SecurityGroupRules of each set of namespaces may declare.
    /// Unset: no limit beyond `allowedNamespaces`. Set: a rule follows the
    /// first entry whose `namespaceSelector` selects its namespace, and a
    /// namespace that no entry selects may not use this config. A rule
    /// that breaks its entry is `Stalled` (`PolicyViolation`) before any
    /// provider call; revoking is never refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub policies: Option<Vec<NamespacePolicy>>,
}

/// Limits on the rules of the namespaces one selector picks. Everything a
/// field leaves unset is allowed, except world-open peers, cross-account
/// peers and `Drop`, which each need to be allowed explicitly.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NamespacePolicy {
    /// Names the entry in the messages of refused rules.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,

    /// The namespaces this entry governs; `{}` selects every namespace.
    /// Prefer the immutable `kubernetes.io/metadata.name` label, or labels
    /// tenants cannot set on their own namespaces.
    pub namespace_selector: LabelSelector,

    /// The security groups the rules may be in. Unset allows any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub security_group_ids: Option<Vec<String>>,

    /// The regions the rules may be in (a rule without `region` is in the
    /// config's). Unset allows any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub regions: Option<Vec<String>>,

    /// Directions (`Ingress`, `Egress`) in which a peer may be the whole
    /// Internet, `0.0.0.0/0` or `::/0`. Unset or empty refuses both.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 2))]
    pub allow_world_open: Vec<super::rule::Direction>,

    /// The shortest IPv4 prefix a `cidr` peer may have, 1 to 32 (16 refuses
    /// `10.0.0.0/8`). World-open peers follow `allowWorldOpen` instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 32))]
    pub min_ipv4_prefix_length: Option<u8>,

    /// The shortest IPv6 prefix an `ipv6Cidr` peer may have, 1 to 128.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 128))]
    pub min_ipv6_prefix_length: Option<u8>,

    /// Whether a peer security group may name another account
    /// (`peer.ownerAccount` or `peer.ownerId`). Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_cross_account_peers: bool,

    /// Whether rules may set `policy: Drop`, which can cut off traffic that
    /// other rules of a shared group accept. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_drop: bool,

    /// At most this many `Present` rules per namespace use this config; the
    /// oldest (by creation time) count first, later ones are refused. Unset:
    /// no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100000))]
    pub max_rules: Option<u32>,
}

/// What the operator observed about a ProviderConfig. Each concern writes
/// its own condition types under its own field manager: `conditions` is a
/// map keyed by `type`, so server-side apply merges their writes.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProviderConfigStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

impl ProviderConfigSpec {
    /// Whether the endpoint is plain `http://` (allowed only with `allowInsecureHttp`).
    pub fn plaintext_endpoint(&self) -> bool {
        self.endpoint
            .as_deref()
            .is_some_and(|e| e.starts_with("http://"))
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProviderType {
    Alibaba,
    Apsarastack,
    Baidu,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SignatureVersion {
    V2,
    V3,
}

/// Names a Secret.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct SecretRef {
    /// Namespace of the Secret.
    #[schemars(length(min = 1, max = 63))]
    pub namespace: String,
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// Extra trust for the endpoint's certificate, from exactly one source.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.caBundle), has(self.caSecretRef), has(self.caConfigMapRef)].filter(x, x).size() == 1").message("spec.tls must set exactly one of caBundle, caSecretRef or caConfigMapRef").reason(Reason::FieldValueInvalid))]
pub struct TlsSettings {
    /// PEM certificates (`-----BEGIN CERTIFICATE-----` blocks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 262144))]
    pub ca_bundle: Option<String>,
    /// A Secret key holding PEM certificates, read like the credentials
    /// Secret: only in the namespaces the operator reads Secrets in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<KeyRef>,
    /// A ConfigMap key holding PEM certificates (say, a bundle that
    /// trust-manager distributes), read in the same namespaces as Secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_config_map_ref: Option<KeyRef>,
}

/// One key of a Secret or ConfigMap.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct KeyRef {
    /// Namespace of the object.
    #[schemars(length(min = 1, max = 63))]
    pub namespace: String,
    /// Name of the object.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The key; defaults to `ca.crt`.
    #[serde(default = "default_ca_key")]
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub key: String,
}

fn default_ca_key() -> String {
    "ca.crt".to_owned()
}

/// How an Apsara Stack gateway wants ECS calls.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApsaraSettings {
    /// Sent as `x-acs-organizationid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub organization_id: Option<String>,
    /// Sent as `x-acs-resourcegroupid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub resource_group_id: Option<String>,
    /// `Root` (`/`), `Asapi` (`/asapi/v3`) or `Route` (`/apsara/route/Ecs/<Action>`).
    #[serde(default)]
    pub path: ApsaraPath,
    /// `Query` (parameters in the URL) or `Form` (form-encoded body).
    /// Defaults to `Form` with the `Route` path, whose reference puts every
    /// parameter in the body, and to `Query` otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_mode: Option<ApsaraBodyMode>,
    /// Sent as the lower-case `version` parameter that the route gateway's
    /// reference documents (e.g. `2016-01-01`), besides `Version=2014-05-26`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 32), regex(pattern = r"^[0-9A-Za-z.-]+$"))]
    pub version: Option<String>,
    /// Headers added to every request, e.g. `x-ascm-product-name: ecs`; they
    /// may not replace the signature's or the protocol's own headers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 16, "x-kubernetes-validations" = [{
        "rule": "self.all(k, k.matches('^[A-Za-z0-9][A-Za-z0-9-]*$') && !(k.lowerAscii() in ['host', 'authorization', 'content-type', 'content-length', 'accept', 'x-acs-signature-nonce', 'x-acs-date', 'x-acs-security-token']))",
        "message": "spec.apsara.extraHeaders: names are letters, digits and '-', and may not be host, authorization, content-type, content-length, accept or an x-acs signing header"
    }]))]
    pub extra_headers: BTreeMap<String, String>,
    /// Parameters added to every request and signed with it, e.g.
    /// `Department` or `Product`; they may not replace the request's own.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 16, "x-kubernetes-validations" = [{
        "rule": "self.all(k, k.matches('^[A-Za-z][A-Za-z0-9._]*$') && !(k in ['Action', 'Version', 'Format', 'AccessKeyId', 'SignatureMethod', 'SignatureVersion', 'SignatureNonce', 'Timestamp', 'Signature', 'SecurityToken', 'RegionId', 'regionId', 'SecurityGroupId', 'ClientToken', 'version']))",
        "message": "spec.apsara.extraParams: names are letters, digits, '.' and '_', and may not be a signature parameter, Action, Version, RegionId, regionId, SecurityGroupId, ClientToken or version (use spec.apsara.version)"
    }]))]
    pub extra_params: BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ApsaraPath {
    #[default]
    Root,
    Asapi,
    Route,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ApsaraBodyMode {
    Query,
    Form,
}

/// Limits of one provider call, in seconds.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallTimeouts {
    /// TCP and TLS connection setup, 1 to 60.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 60))]
    pub connect_seconds: Option<u32>,
    /// The whole request, from sending to the last byte of the answer, 1 to 300.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 300))]
    pub request_seconds: Option<u32>,
}

/// A token bucket: at most `qps` calls per second on average, `burst` at once.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub struct RateLimit {
    /// Sustained calls per second, 1 to 10000.
    #[schemars(range(min = 1, max = 10000))]
    pub qps: u32,
    /// Calls allowed at once, 1 to 10000.
    #[schemars(range(min = 1, max = 10000))]
    pub burst: u32,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self { qps: 10, burst: 20 }
    }
}

/// Defaults for rules that use a ProviderConfig.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProviderDefaults {
    /// Deletion policy of rules that set none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<DeletionPolicy>,
    /// How often each security group is described to notice drift, in
    /// seconds, 30 to 86400. Defaults to the operator's `--resync-interval`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 30, max = 86400))]
    pub resync_interval_seconds: Option<u32>,
}
