//! `SecurityGroupRule`: one cloud security group rule, declared.

use jiff::Timestamp;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::conditions::Condition;

/// One security group rule that the operator keeps authorized (`ensure:
/// Present`) or revoked (`ensure: Absent`) at the cloud provider that the
/// referenced ProviderConfig names. Deleting the object revokes the rule
/// unless `deletionPolicy` is `Orphan`.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "secgroup.dev",
    version = "v1alpha1",
    kind = "SecurityGroupRule",
    namespaced,
    shortname = "sgr",
    category = "secgroup",
    status = "SecurityGroupRuleStatus",
    printcolumn = r#"{"name":"Provider","type":"string","jsonPath":".spec.providerConfigRef.name"}"#,
    printcolumn = r#"{"name":"Group","type":"string","jsonPath":".spec.securityGroupId"}"#,
    printcolumn = r#"{"name":"Direction","type":"string","jsonPath":".spec.rule.direction"}"#,
    printcolumn = r#"{"name":"Protocol","type":"string","jsonPath":".spec.rule.protocol"}"#,
    printcolumn = r#"{"name":"Ports","type":"string","jsonPath":".status.summary.ports"}"#,
    printcolumn = r#"{"name":"Peer","type":"string","jsonPath":".status.summary.peer"}"#,
    printcolumn = r#"{"name":"Ensure","type":"string","jsonPath":".spec.ensure"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.providerConfigRef == oldSelf.providerConfigRef").message("spec.providerConfigRef is immutable: create a new SecurityGroupRule to move a rule to other credentials").field_path(".providerConfigRef").reason(Reason::FieldValueForbidden),
    validation = Rule::new("self.securityGroupId == oldSelf.securityGroupId").message("spec.securityGroupId is immutable: create a new SecurityGroupRule to move a rule to another group").field_path(".securityGroupId").reason(Reason::FieldValueForbidden),
    validation = Rule::new("has(self.region) == has(oldSelf.region) && (!has(self.region) || self.region == oldSelf.region)").message("spec.region is immutable: create a new SecurityGroupRule to move a rule to another region").field_path(".region").reason(Reason::FieldValueForbidden),
    validation = Rule::new("self.rule.direction == oldSelf.rule.direction").message("spec.rule.direction is immutable: create a new SecurityGroupRule for the other direction").field_path(".rule.direction").reason(Reason::FieldValueForbidden),
)]
pub struct SecurityGroupRuleSpec {
    /// The cluster-scoped ProviderConfig whose cloud account and credentials
    /// manage this rule. Immutable.
    pub provider_config_ref: ProviderConfigRef,

    /// Region of the security group. Defaults to the ProviderConfig's region.
    /// Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[a-z0-9][a-z0-9-]*$"))]
    pub region: Option<String>,

    /// The security group that holds the rule, e.g. `sg-bp67acfmxazb4p` (Alibaba,
    /// Apsara Stack) or `g-nky7qeom` (Baidu). Immutable.
    #[schemars(
        length(min = 3, max = 64),
        regex(pattern = r"^[a-z]{1,8}-[A-Za-z0-9]+$")
    )]
    pub security_group_id: String,

    /// `Present` keeps the rule authorized; `Absent` revokes it but keeps this
    /// object, so GitOps tools can declare a rule's removal.
    #[serde(default)]
    pub ensure: Ensure,

    /// What deleting this object does to the cloud rule: `Delete` revokes it,
    /// `Orphan` leaves it in place. Defaults to the ProviderConfig's default,
    /// else `Delete`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<DeletionPolicy>,

    /// `Manage` (default) authorizes and revokes the rule. `Observe` only
    /// reports whether the declared rule exists at the provider, and its
    /// id, and never calls a mutating API; deleting an observed rule leaves
    /// the cloud rule in place (Crossplane's `managementPolicies:
    /// ["Observe"]`, ASO's `reconcile-policy: skip`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub management_policy: Option<ManagementPolicy>,

    /// Take over an identical cloud rule that the operator did not create,
    /// when the ProviderConfig's `allowAdoption` permits it: the rule gets
    /// this object's ownership mark, and deleting this object revokes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adopt: Option<bool>,

    /// The rule itself.
    pub rule: RuleSpec,
}

/// Names a cluster-scoped ProviderConfig.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct ProviderConfigRef {
    /// Name of the ProviderConfig.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum Ensure {
    #[default]
    Present,
    Absent,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ManagementPolicy {
    #[default]
    Manage,
    Observe,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    #[default]
    Delete,
    Orphan,
}

/// A security group rule in provider-neutral terms.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!has(self.ports) || self.protocol in ['TCP', 'UDP']").message("spec.rule.ports is allowed only with protocol TCP or UDP; omit it for ICMP, ICMPv6, GRE and ALL").field_path(".ports").reason(Reason::FieldValueForbidden),
    validation = Rule::new("!has(self.sourcePorts) || self.protocol in ['TCP', 'UDP']").message("spec.rule.sourcePorts is allowed only with protocol TCP or UDP").field_path(".sourcePorts").reason(Reason::FieldValueForbidden),
    validation = Rule::new("!has(self.nicType) || self.nicType == 'Intranet' || !has(self.peer.securityGroupId)").message("spec.rule.nicType must be Intranet when the peer is a security group").field_path(".nicType").reason(Reason::FieldValueInvalid),
)]
pub struct RuleSpec {
    /// `Ingress` (traffic into the group) or `Egress`. Immutable.
    pub direction: Direction,

    /// `TCP`, `UDP`, `ICMP`, `ICMPv6`, `GRE` or `ALL`.
    pub protocol: Protocol,

    /// Destination ports, TCP and UDP only. Omitted means every port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<PortRange>,

    /// Source ports, TCP and UDP only (Alibaba Cloud and Apsara Stack).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ports: Option<PortRange>,

    /// The other side of the traffic: exactly one of `cidr`, `ipv6Cidr`, `securityGroupId`.
    pub peer: Peer,

    /// `Accept` (default) or `Drop`. `Drop` is supported by Alibaba Cloud and
    /// Apsara Stack only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<Policy>,

    /// 1 (highest, default) to 100 (Alibaba Cloud and Apsara Stack).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub priority: Option<u8>,

    /// `Intranet` (default) or `Internet` (Alibaba Cloud classic network only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nic_type: Option<NicType>,

    /// Free text, at most 234 characters. The operator adds its ownership
    /// mark (` sgo:` and 16 hex digits, from this object's UID) before it
    /// sends the rule, so the text cannot contain `sgo:` itself. On Baidu
    /// this is the rule's remark, which is part of the rule's identity there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    #[x_kube(validation = Rule::new("size(self) <= 234").message("spec.rule.description may have at most 234 characters: the operator adds a 21-character ownership mark, and Baidu's remark holds 255").reason(Reason::FieldValueInvalid))]
    #[x_kube(validation = Rule::new("!self.contains('sgo:')").message("spec.rule.description must not contain 'sgo:': the operator adds that ownership mark itself").reason(Reason::FieldValueForbidden))]
    pub description: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum Direction {
    Ingress,
    Egress,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum Protocol {
    #[serde(rename = "TCP")]
    Tcp,
    #[serde(rename = "UDP")]
    Udp,
    #[serde(rename = "ICMP")]
    Icmp,
    #[serde(rename = "ICMPv6")]
    Icmpv6,
    #[serde(rename = "GRE")]
    Gre,
    #[serde(rename = "ALL")]
    All,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum Policy {
    Accept,
    Drop,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum NicType {
    Intranet,
    Internet,
}

/// An inclusive port range.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, KubeSchema)]
#[x_kube(validation = Rule::new("self.from <= self.to").message("port range 'from' must be less than or equal to 'to'").reason(Reason::FieldValueInvalid))]
pub struct PortRange {
    /// First port, 1 to 65535.
    #[schemars(range(min = 1, max = 65535))]
    pub from: u16,
    /// Last port, 1 to 65535, at least `from`.
    #[schemars(range(min = 1, max = 65535))]
    pub to: u16,
}

/// The other side of the traffic. Exactly one of `cidr`, `ipv6Cidr` and
/// `securityGroupId` is set.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("[has(self.cidr), has(self.ipv6Cidr), has(self.securityGroupId)].filter(x, x).size() == 1").message("spec.rule.peer must set exactly one of cidr, ipv6Cidr or securityGroupId").reason(Reason::FieldValueInvalid),
    validation = Rule::new("!has(self.ownerAccount) || has(self.securityGroupId)").message("spec.rule.peer.ownerAccount is allowed only with securityGroupId").field_path(".ownerAccount").reason(Reason::FieldValueForbidden),
    validation = Rule::new("!has(self.ownerId) || has(self.securityGroupId)").message("spec.rule.peer.ownerId is allowed only with securityGroupId").field_path(".ownerId").reason(Reason::FieldValueForbidden),
)]
pub struct Peer {
    /// An IPv4 network in CIDR form with its host bits zero, e.g. `10.0.0.0/8`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 18))]
    #[x_kube(validation = Rule::new("isCIDR(self) && cidr(self).ip().family() == 4").message("spec.rule.peer.cidr must be an IPv4 CIDR such as 10.0.0.0/8").reason(Reason::FieldValueInvalid))]
    #[x_kube(validation = Rule::new("!isCIDR(self) || cidr(self) == cidr(self).masked()").message("spec.rule.peer.cidr must have its host bits zero, e.g. 10.0.0.0/8 rather than 10.1.2.3/8").reason(Reason::FieldValueInvalid))]
    pub cidr: Option<String>,

    /// An IPv6 network in CIDR form with its host bits zero, e.g. `2001:db8::/32`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 43))]
    #[x_kube(validation = Rule::new("isCIDR(self) && cidr(self).ip().family() == 6").message("spec.rule.peer.ipv6Cidr must be an IPv6 CIDR such as 2001:db8::/32").reason(Reason::FieldValueInvalid))]
    #[x_kube(validation = Rule::new("!isCIDR(self) || cidr(self) == cidr(self).masked()").message("spec.rule.peer.ipv6Cidr must have its host bits zero, e.g. 2001:db8::/32").reason(Reason::FieldValueInvalid))]
    pub ipv6_cidr: Option<String>,

    /// Another security group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 3, max = 64),
        regex(pattern = r"^[a-z]{1,8}-[A-Za-z0-9]+$")
    )]
    pub security_group_id: Option<String>,

    /// Account (name) that owns `securityGroupId`, for cross-account rules (Alibaba).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub owner_account: Option<String>,

    /// Account id that owns `securityGroupId`, for cross-account rules (Alibaba).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 32), regex(pattern = r"^[0-9]+$"))]
    pub owner_id: Option<String>,
}

/// What the operator observed and did.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecurityGroupRuleStatus {
    /// The `metadata.generation` the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// `Ready`, `Reconciling` and `Stalled`, per Kubernetes API conventions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,

    /// The provider's id of the authorized rule, learned by describing the group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 3, max = 64), regex(pattern = r"^(sgr|r)-[A-Za-z0-9]+$"))]
    pub rule_id: Option<String>,

    /// The security group the rule was authorized in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 3, max = 64),
        regex(pattern = r"^[a-z]{1,8}-[A-Za-z0-9]+$")
    )]
    pub security_group_id: Option<String>,

    /// The region the rule was authorized in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[a-z0-9][a-z0-9-]*$"))]
    pub region: Option<String>,

    /// The rule as last authorized: what a revoke removes, so that deletion
    /// never depends on the current spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_rule: Option<RuleSpec>,

    /// A rule still to be revoked: replaced by a spec change, or on its way
    /// out because the rule is `Absent` or being deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub superseded: Option<SupersededRule>,

    /// A rule whose authorize was sent and whose outcome is not known (the
    /// call failed in a way that may have had an effect): it may exist at
    /// the provider. The next pass authorizes it again if the spec still
    /// asks for it, else revokes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorizing: Option<RuleSpec>,

    /// Raised before a deliberate new attempt at the same generation (for
    /// example re-authorizing a rule deleted out of band), so the new attempt
    /// gets a new ClientToken instead of a replay of the old one.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub attempt_epoch: u32,

    /// Where the rules this status names were authorized, as short hashes
    /// (never a secret). A revoke that finds the security group missing
    /// takes the rule for gone only while the ProviderConfig still points
    /// there: with another account or endpoint the group would be missing
    /// too, while the rule lives on where it was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,

    /// The last provider call and its outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_operation: Option<LastOperation>,

    /// Human-readable columns for `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<Summary>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A previously authorized rule that is to be revoked.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SupersededRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 3, max = 64), regex(pattern = r"^(sgr|r)-[A-Za-z0-9]+$"))]
    pub rule_id: Option<String>,
    pub rule: RuleSpec,
}

/// Where a rule was authorized: the first 16 hex digits of SHA-256 of the
/// ProviderConfig's access key id, and of its place (provider type,
/// `spec.endpoint`, or none for the public one, and for Apsara Stack the
/// organization and resource group).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Origin {
    #[schemars(regex(pattern = r"^[0-9a-f]{16}$"))]
    pub access_key: String,
    #[schemars(regex(pattern = r"^[0-9a-f]{16}$"))]
    pub endpoint: String,
}

/// The last provider call.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastOperation {
    /// `Authorize`, `Revoke`, `Describe` or `Modify`.
    pub action: ProviderAction,
    /// The idempotency token sent; the same across retries of one intent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
    /// The provider's request id, for support tickets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    pub result: OperationResult,
    /// The provider's error code, when it answered with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[schemars(schema_with = "super::conditions::timestamp_schema")]
    pub time: Timestamp,
}

/// Which provider call an operation was (kube-runtime's `controller::Action`
/// is what a reconcile asks of the controller, a different thing).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum ProviderAction {
    Authorize,
    Revoke,
    Describe,
    Modify,
}

impl ProviderAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Authorize => "authorize",
            Self::Revoke => "revoke",
            Self::Describe => "describe",
            Self::Modify => "modify",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum OperationResult {
    Succeeded,
    AlreadyGone,
    AlreadyExists,
    Failed,
}

/// Flattened views of the spec for printer columns.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct Summary {
    pub ports: String,
    pub peer: String,
}

impl RuleSpec {
    /// The printer-column summary of this rule.
    pub fn summary(&self) -> Summary {
        let ports = match self.ports {
            Some(p) if p.from == p.to => p.from.to_string(),
            Some(p) => format!("{}-{}", p.from, p.to),
            None if matches!(self.protocol, Protocol::Tcp | Protocol::Udp) => "all".to_owned(),
            None => "-".to_owned(),
        };
        let peer = self
            .peer
            .cidr
            .clone()
            .or_else(|| self.peer.ipv6_cidr.clone())
            .or_else(|| self.peer.security_group_id.clone())
            .unwrap_or_default();
        Summary { ports, peer }
    }
}
