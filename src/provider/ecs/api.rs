//! ECS 2014-05-26 RPC calls as parameter lists, and the describe response as
//! normalised rules. Pure: no signing, no IO.

use serde::Deserialize;
use serde_json::Value;

use crate::provider::{
    Authorize, DescribedRule, Direction, GroupRef, Modify, NicType, Peer, Policy, PortRange,
    Protocol, Revoke, RevokeTarget, Rule,
};

pub const API_VERSION: &str = "2014-05-26";
/// The largest page DescribeSecurityGroupAttribute returns.
pub const DESCRIBE_PAGE_SIZE: &str = "1000";

/// One RPC call before signing: the action and its business parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RpcCall {
    pub action: &'static str,
    pub params: Vec<(String, String)>,
}

/// How a rule's fields are named on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleForm {
    /// `Permissions.1.IpProtocol`, … (public ECS).
    Permissions,
    /// `IpProtocol`, … one rule per call: the deprecated form Apsara Stack documents.
    Flat,
}

impl RuleForm {
    fn name(self, field: &str) -> String {
        match self {
            Self::Permissions => format!("Permissions.1.{field}"),
            Self::Flat => field.to_string(),
        }
    }
}

pub fn authorize_action(direction: Direction) -> &'static str {
    match direction {
        Direction::Ingress => "AuthorizeSecurityGroup",
        Direction::Egress => "AuthorizeSecurityGroupEgress",
    }
}

pub fn revoke_action(direction: Direction) -> &'static str {
    match direction {
        Direction::Ingress => "RevokeSecurityGroup",
        Direction::Egress => "RevokeSecurityGroupEgress",
    }
}

fn group_params(group: &GroupRef, region: &str) -> Vec<(String, String)> {
    vec![
        ("RegionId".into(), region.into()),
        ("SecurityGroupId".into(), group.security_group_id.clone()),
    ]
}

pub fn authorize_call(call: &Authorize, region: &str, form: RuleForm) -> RpcCall {
    let mut params = group_params(&call.group, region);
    params.push(("ClientToken".into(), call.client_token.clone()));
    params.extend(rule_params(&call.rule, form, true));
    RpcCall {
        action: authorize_action(call.rule.direction),
        params,
    }
}

/// By `SecurityGroupRuleId.1` when the id is known, looks like one (`sgr-`)
/// and the form supports ids, else by the rule's matching attributes
/// (without `Description`, which is not part of Alibaba's rule identity).
/// ECS answers a malformed id with the same code as a missing rule, which a
/// revoke takes for "already gone".
pub fn revoke_call(call: &Revoke, region: &str, form: RuleForm) -> RpcCall {
    let mut params = group_params(&call.group, region);
    params.push(("ClientToken".into(), call.client_token.clone()));
    match (&call.target, form) {
        (RevokeTarget::Id { rule_id, .. }, RuleForm::Permissions)
            if rule_id.starts_with("sgr-") =>
        {
            params.push(("SecurityGroupRuleId.1".into(), rule_id.clone()));
        }
        (target, _) => params.extend(rule_params(target.rule(), form, false)),
    }
    RpcCall {
        action: revoke_action(call.target.rule().direction),
        params,
    }
}

/// `ModifySecurityGroupRule` (or `…EgressRule`) by `SecurityGroupRuleId`:
/// sets the priority and the description, the rule stays in place.
pub fn modify_call(call: &Modify, region: &str) -> RpcCall {
    let mut params = group_params(&call.group, region);
    params.push(("ClientToken".into(), call.client_token.clone()));
    params.push(("SecurityGroupRuleId".into(), call.rule_id.clone()));
    params.push(("Priority".into(), call.rule.priority.to_string()));
    params.push(("Description".into(), call.rule.description.clone()));
    RpcCall {
        action: match call.rule.direction {
            Direction::Ingress => "ModifySecurityGroupRule",
            Direction::Egress => "ModifySecurityGroupEgressRule",
        },
        params,
    }
}

/// One page of both directions' rules; of one NIC type's only when `nic_type`
/// is given (a classic-network group answers `internet` rules without it).
pub fn describe_call(
    group: &GroupRef,
    region: &str,
    next_token: Option<&str>,
    nic_type: Option<NicType>,
) -> RpcCall {
    let mut params = group_params(group, region);
    params.push(("Direction".into(), "all".into()));
    params.push(("MaxResults".into(), DESCRIBE_PAGE_SIZE.into()));
    if let Some(nic_type) = nic_type {
        params.push(("NicType".into(), nic_type_wire(nic_type).into()));
    }
    if let Some(token) = next_token {
        params.push(("NextToken".into(), token.into()));
    }
    RpcCall {
        action: "DescribeSecurityGroupAttribute",
        params,
    }
}

/// `from/to`; `-1/-1` for protocols without ports.
fn port_range_wire(rule: &Rule) -> String {
    match rule.effective_ports() {
        Some(PortRange { from, to }) => format!("{from}/{to}"),
        None => "-1/-1".to_string(),
    }
}

/// The rule's fields; the peer is the source of an ingress rule and the
/// destination of an egress one.
fn rule_params(rule: &Rule, form: RuleForm, with_description: bool) -> Vec<(String, String)> {
    let side = match rule.direction {
        Direction::Ingress => "Source",
        Direction::Egress => "Dest",
    };
    // Apsara's values are case sensitive and lower case (seed 000); Alibaba
    // takes any case, and its SDK's vectors spell them upper case.
    let protocol = match form {
        RuleForm::Flat => rule.protocol.name().to_ascii_lowercase(),
        RuleForm::Permissions => rule.protocol.name().to_owned(),
    };
    let mut fields: Vec<(String, String)> = vec![
        ("IpProtocol".into(), protocol),
        ("PortRange".into(), port_range_wire(rule)),
    ];
    match &rule.peer {
        Peer::Cidr(net) => fields.push((format!("{side}CidrIp"), net.to_string())),
        Peer::Ipv6Cidr(net) => fields.push((format!("Ipv6{side}CidrIp"), net.to_string())),
        Peer::Group {
            id,
            owner_account,
            owner_id,
        } => {
            fields.push((format!("{side}GroupId"), id.clone()));
            if let Some(account) = owner_account {
                fields.push((format!("{side}GroupOwnerAccount"), account.clone()));
            }
            if let Some(owner) = owner_id {
                fields.push((format!("{side}GroupOwnerId"), owner.clone()));
            }
        }
    }
    if let Some(PortRange { from, to }) = rule.source_ports {
        fields.push(("SourcePortRange".into(), format!("{from}/{to}")));
    }
    // Defaults are left out: enterprise security groups refuse an explicit
    // Policy (InvalidGroupParameter.OperationDenied), and priority 1 is the
    // default everywhere.
    if rule.policy != Policy::Accept {
        fields.push(("Policy".into(), policy_wire(rule.policy).into()));
    }
    if rule.priority != 1 {
        fields.push(("Priority".into(), rule.priority.to_string()));
    }
    fields.push(("NicType".into(), nic_type_wire(rule.nic_type).into()));
    if with_description && !rule.description.is_empty() {
        fields.push(("Description".into(), rule.description.clone()));
    }
    fields
        .into_iter()
        .map(|(field, value)| (form.name(&field), value))
        .collect()
}

fn policy_wire(policy: Policy) -> &'static str {
    match policy {
        Policy::Accept => "accept",
        Policy::Drop => "drop",
    }
}

fn nic_type_wire(nic_type: NicType) -> &'static str {
    match nic_type {
        NicType::Intranet => "intranet",
        NicType::Internet => "internet",
    }
}

/// The fields of a described rule this client reads; every one may be an
/// empty string (Alibaba's way of saying "unused").
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct Permission {
    security_group_rule_id: String,
    direction: String,
    ip_protocol: String,
    port_range: String,
    source_cidr_ip: String,
    ipv6_source_cidr_ip: String,
    source_group_id: String,
    source_group_owner_account: String,
    source_port_range: String,
    dest_cidr_ip: String,
    ipv6_dest_cidr_ip: String,
    dest_group_id: String,
    dest_group_owner_account: String,
    nic_type: String,
    policy: String,
    /// A string in the SDK model, a number in older documentation.
    priority: Value,
    description: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct Permissions {
    permission: Vec<Permission>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct DescribeResponse {
    next_token: String,
    permissions: Permissions,
    security_group_id: Option<String>,
    vpc_id: Option<String>,
}

/// One page of DescribeSecurityGroupAttribute.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DescribePage {
    pub rules: Vec<DescribedRule>,
    /// `None` on the last page.
    pub next_token: Option<String>,
    /// The group the answer is about, when it says.
    pub security_group_id: Option<String>,
    /// A group of the classic network (an empty `VpcId`): describe shows
    /// one NIC type per call there.
    pub classic: bool,
}

/// Parses a describe page. Rules this model cannot express (prefix-list
/// peers, unknown protocols) are left out: no declared rule can match them.
pub fn parse_describe(body: &[u8]) -> Result<DescribePage, serde_json::Error> {
    let response: DescribeResponse = serde_json::from_slice(body)?;
    Ok(DescribePage {
        rules: response
            .permissions
            .permission
            .iter()
            .filter_map(described_rule)
            .collect(),
        next_token: Some(response.next_token).filter(|token| !token.is_empty()),
        security_group_id: response.security_group_id,
        classic: response.vpc_id.is_some_and(|vpc| vpc.is_empty()),
    })
}

fn described_rule(p: &Permission) -> Option<DescribedRule> {
    let direction = match p.direction.to_ascii_lowercase().as_str() {
        "ingress" => Direction::Ingress,
        "egress" => Direction::Egress,
        _ => return None,
    };
    let protocol = Protocol::parse_wire(&p.ip_protocol)?;
    let (cidr, ipv6, group, owner, other_side) = match direction {
        Direction::Ingress => (
            &p.source_cidr_ip,
            &p.ipv6_source_cidr_ip,
            &p.source_group_id,
            &p.source_group_owner_account,
            [&p.dest_cidr_ip, &p.ipv6_dest_cidr_ip],
        ),
        Direction::Egress => (
            &p.dest_cidr_ip,
            &p.ipv6_dest_cidr_ip,
            &p.dest_group_id,
            &p.dest_group_owner_account,
            [&p.source_cidr_ip, &p.ipv6_source_cidr_ip],
        ),
    };
    if other_side.iter().any(|cidr| !cidr.trim().is_empty()) {
        // A "quintuple" rule: its other-side CIDR is part of its identity
        // (RevokeSecurityGroup's matching set), and no declared rule has one.
        return None;
    }
    let peer = if !cidr.is_empty() {
        Peer::parse_ip(cidr)?
    } else if !ipv6.is_empty() {
        Peer::parse_ip(ipv6)?
    } else if !group.is_empty() {
        Peer::Group {
            id: group.clone(),
            owner_account: Some(owner.clone()).filter(|o| !o.is_empty()),
            owner_id: None,
        }
    } else {
        // A prefix-list peer, which the model does not express.
        return None;
    };
    Some(DescribedRule {
        rule_id: p.security_group_rule_id.clone(),
        rule: Rule {
            direction,
            protocol,
            ports: if protocol.has_ports() {
                parse_port_range(&p.port_range)
            } else {
                None
            },
            source_ports: parse_port_range(&p.source_port_range),
            peer,
            policy: if p.policy.eq_ignore_ascii_case("drop") {
                Policy::Drop
            } else {
                Policy::Accept
            },
            priority: parse_priority(&p.priority),
            nic_type: if p.nic_type.eq_ignore_ascii_case("internet") {
                NicType::Internet
            } else {
                NicType::Intranet
            },
            description: p.description.clone(),
        },
    })
}

/// `22/22` or `1/200`; `-1/-1`, empty or malformed mean none.
fn parse_port_range(s: &str) -> Option<PortRange> {
    let (from, to) = s.trim().split_once('/')?;
    let range = PortRange {
        from: from.parse().ok()?,
        to: to.parse().ok()?,
    };
    (range.from >= 1 && range.from <= range.to).then_some(range)
}

/// `"1"` or `1`; absent or unreadable means Alibaba's default, 1.
fn parse_priority(value: &Value) -> u8 {
    let parsed = match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    parsed.and_then(|p| u8::try_from(p).ok()).unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        provider::fixtures::ssh_from_ten,
        sign::vectors::{self, pairs},
    };

    fn group() -> GroupRef {
        GroupRef {
            region: "cn-hangzhou".into(),
            security_group_id: "sg-bp67acfmxazb4p0000".into(),
        }
    }

    fn authorize(rule: Rule) -> RpcCall {
        let call = Authorize {
            group: group(),
            rule,
            client_token: "t".into(),
        };
        authorize_call(&call, "cn-hangzhou", RuleForm::Permissions)
    }

    fn sorted(mut params: Vec<(String, String)>) -> Vec<(String, String)> {
        params.sort();
        params
    }

    fn param<'a>(call: &'a RpcCall, name: &str) -> Option<&'a str> {
        call.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Our authorize carries exactly the business parameters the official SDK
    /// put in the query of vector B2 (same rule, same token), less the
    /// defaults the vector spells out and enterprise groups refuse.
    #[test]
    fn an_authorize_has_the_parameters_the_sdk_sends() {
        let b2 = vectors::get("B2");
        let call = authorize_call(
            &Authorize {
                group: group(),
                rule: ssh_from_ten(),
                client_token: "k8s-sgr-3f1c2a9e-6b7d-4c1e-9a55-0e2f4b6d8a10".into(),
            },
            "cn-hangzhou",
            RuleForm::Permissions,
        );
        assert_eq!(call.action, "AuthorizeSecurityGroup");
        let defaults = [
            ("Permissions.1.Policy", "accept"),
            ("Permissions.1.Priority", "1"),
        ];
        let expected: Vec<_> = pairs(&b2["query"])
            .into_iter()
            .filter(|(k, v)| !defaults.contains(&(k.as_str(), v.as_str())))
            .collect();
        assert_eq!(sorted(call.params), sorted(expected));
    }

    /// Enterprise groups refuse an explicit Policy; only what differs from
    /// the defaults (accept, priority 1) is sent.
    #[test]
    fn policy_and_priority_are_sent_only_when_not_the_default() {
        let plain = authorize(ssh_from_ten());
        assert_eq!(param(&plain, "Permissions.1.Policy"), None);
        assert_eq!(param(&plain, "Permissions.1.Priority"), None);
        let mut rule = ssh_from_ten();
        rule.policy = Policy::Drop;
        rule.priority = 7;
        let explicit = authorize(rule);
        assert_eq!(param(&explicit, "Permissions.1.Policy"), Some("drop"));
        assert_eq!(param(&explicit, "Permissions.1.Priority"), Some("7"));
    }

    /// Vector B4 revokes egress rules by id; ours names one id the same way.
    #[test]
    fn a_revoke_by_id_names_the_rule_id_and_the_direction_s_action() {
        let b4 = vectors::get("B4");
        let mut egress = ssh_from_ten();
        egress.direction = Direction::Egress;
        let call = revoke_call(
            &Revoke {
                group: group(),
                target: RevokeTarget::Id {
                    rule_id: "sgr-bp1aaaa0001".into(),
                    rule: egress,
                },
                client_token: "k8s-sgr-revoke-0001".into(),
            },
            "cn-hangzhou",
            RuleForm::Permissions,
        );
        assert_eq!(call.action, "RevokeSecurityGroupEgress");
        let expected: Vec<_> = pairs(&b4["query"])
            .into_iter()
            .filter(|(k, _)| k != "SecurityGroupRuleId.2")
            .collect();
        assert_eq!(sorted(call.params), sorted(expected));
    }

    /// Without an id, revoke matches on attributes, and leaves out the
    /// description, which Alibaba does not match on.
    #[test]
    fn a_revoke_by_attributes_sends_the_identity_without_the_description() {
        let call = revoke_call(
            &Revoke {
                group: group(),
                target: RevokeTarget::Attributes(ssh_from_ten()),
                client_token: "t".into(),
            },
            "cn-hangzhou",
            RuleForm::Permissions,
        );
        assert_eq!(call.action, "RevokeSecurityGroup");
        assert_eq!(param(&call, "Permissions.1.PortRange"), Some("22/22"));
        assert_eq!(
            param(&call, "Permissions.1.SourceCidrIp"),
            Some("10.0.0.0/8")
        );
        assert_eq!(param(&call, "Permissions.1.Description"), None);
    }

    /// An id that is not an ECS rule id is not trusted to name the rule.
    #[test]
    fn a_malformed_rule_id_revokes_by_attributes() {
        let call = revoke_call(
            &Revoke {
                group: group(),
                target: RevokeTarget::Id {
                    rule_id: "rule-1".into(),
                    rule: ssh_from_ten(),
                },
                client_token: "t".into(),
            },
            "cn-hangzhou",
            RuleForm::Permissions,
        );
        assert_eq!(param(&call, "SecurityGroupRuleId.1"), None);
        assert_eq!(
            param(&call, "Permissions.1.SourceCidrIp"),
            Some("10.0.0.0/8")
        );
    }

    /// Apsara's gateway knows no rule ids: the flat form revokes by attributes even when an id is known.
    #[test]
    fn the_flat_form_revokes_by_attributes_with_unprefixed_names() {
        let call = revoke_call(
            &Revoke {
                group: group(),
                target: RevokeTarget::Id {
                    rule_id: "sgr-1".into(),
                    rule: ssh_from_ten(),
                },
                client_token: "t".into(),
            },
            "cn-hangzhou",
            RuleForm::Flat,
        );
        assert_eq!(param(&call, "IpProtocol"), Some("tcp"));
        assert_eq!(param(&call, "SourceCidrIp"), Some("10.0.0.0/8"));
        assert!(
            call.params
                .iter()
                .all(|(k, _)| !k.starts_with("Permissions.")
                    && !k.starts_with("SecurityGroupRuleId"))
        );
    }

    /// Egress rules name their peer as the destination; groups carry their owner.
    #[test]
    fn egress_and_group_peers_use_destination_fields() {
        let mut rule = ssh_from_ten();
        rule.direction = Direction::Egress;
        rule.protocol = Protocol::Icmp;
        rule.ports = None;
        rule.peer = Peer::Group {
            id: "sg-2".into(),
            owner_account: Some("acct".into()),
            owner_id: None,
        };
        rule.source_ports = Some(PortRange { from: 80, to: 81 });
        let call = authorize(rule);
        assert_eq!(call.action, "AuthorizeSecurityGroupEgress");
        assert_eq!(param(&call, "Permissions.1.PortRange"), Some("-1/-1"));
        assert_eq!(param(&call, "Permissions.1.DestGroupId"), Some("sg-2"));
        assert_eq!(
            param(&call, "Permissions.1.DestGroupOwnerAccount"),
            Some("acct")
        );
        assert_eq!(param(&call, "Permissions.1.SourcePortRange"), Some("80/81"));
        assert_eq!(param(&call, "Permissions.1.SourceCidrIp"), None);
    }

    #[test]
    fn tcp_without_ports_is_sent_as_the_full_range_and_ipv6_uses_its_own_field() {
        let mut rule = ssh_from_ten();
        rule.ports = None;
        rule.peer = Peer::parse_ip("2001:DB8::/32").expect("v6");
        let call = authorize(rule);
        assert_eq!(param(&call, "Permissions.1.PortRange"), Some("1/65535"));
        assert_eq!(
            param(&call, "Permissions.1.Ipv6SourceCidrIp"),
            Some("2001:db8::/32")
        );
    }

    #[test]
    fn a_describe_asks_for_both_directions_in_pages_of_a_thousand() {
        let first = describe_call(&group(), "cn-hangzhou", None, None);
        assert_eq!(first.action, "DescribeSecurityGroupAttribute");
        assert_eq!(param(&first, "Direction"), Some("all"));
        assert_eq!(param(&first, "MaxResults"), Some("1000"));
        assert_eq!(param(&first, "NextToken"), None);
        assert_eq!(param(&first, "NicType"), None);
        let next = describe_call(&group(), "cn-hangzhou", Some("p2"), Some(NicType::Intranet));
        assert_eq!(param(&next, "NextToken"), Some("p2"));
        assert_eq!(param(&next, "NicType"), Some("intranet"));
    }

    /// Described rules come back in Alibaba's spellings: capitalised policy,
    /// upper-case protocol, numeric or string priority, empty unused fields.
    #[test]
    fn described_rules_normalise_alibaba_spellings() {
        let body = br#"{"RequestId":"r","NextToken":"next","Permissions":{"Permission":[
            {"SecurityGroupRuleId":"sgr-1","Direction":"ingress","IpProtocol":"TCP","PortRange":"22/22",
             "SourceCidrIp":"10.0.0.0/8","Ipv6SourceCidrIp":"","SourceGroupId":"","SourcePortRange":"",
             "DestCidrIp":"","NicType":"intranet","Policy":"Accept","Priority":"1",
             "Description":"managed by sg-operator","CreateTime":"2018-12-12T07:28:38Z"},
            {"SecurityGroupRuleId":"sgr-2","Direction":"egress","IpProtocol":"ALL","PortRange":"-1/-1",
             "DestCidrIp":"","Ipv6DestCidrIp":"2001:DB8:0::/32","DestGroupId":"","Policy":"Drop","Priority":7,
             "NicType":"","Description":""},
            {"SecurityGroupRuleId":"sgr-3","Direction":"ingress","IpProtocol":"TCP","PortRange":"1/65535",
             "SourceGroupId":"sg-peer","SourceGroupOwnerAccount":"","Policy":"accept","Priority":"1"},
            {"SecurityGroupRuleId":"sgr-4","Direction":"ingress","IpProtocol":"TCP","PortRange":"1/2",
             "SourcePrefixListId":"pl-1","Policy":"Accept"}
        ]}}"#;
        let page = parse_describe(body).expect("parses");
        assert_eq!(page.next_token.as_deref(), Some("next"));
        assert_eq!(page.rules.len(), 3, "the prefix-list rule is left out");
        assert_eq!(page.rules[0].rule_id, "sgr-1");
        assert_eq!(page.rules[0].rule, ssh_from_ten());
        let egress = &page.rules[1].rule;
        assert_eq!(
            (
                egress.protocol,
                egress.ports,
                egress.policy,
                egress.priority
            ),
            (Protocol::All, None, Policy::Drop, 7)
        );
        assert_eq!(egress.peer, Peer::parse_ip("2001:db8::/32").expect("v6"));
        assert_eq!(egress.nic_type, NicType::Intranet);
        let group_rule = &page.rules[2].rule;
        assert_eq!(group_rule.ports, Some(PortRange::ALL));
        assert_eq!(
            group_rule.peer,
            Peer::Group {
                id: "sg-peer".into(),
                owner_account: None,
                owner_id: None
            }
        );
    }

    #[test]
    fn a_modify_sets_priority_and_description_by_rule_id() {
        let mut rule = ssh_from_ten();
        rule.priority = 7;
        rule.direction = Direction::Egress;
        let call = modify_call(
            &Modify {
                group: group(),
                rule_id: "sgr-1".into(),
                rule,
                client_token: "sgo-t".into(),
            },
            "cn-hangzhou",
        );
        assert_eq!(call.action, "ModifySecurityGroupEgressRule");
        let param = |name: &str| {
            call.params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(param("SecurityGroupRuleId"), Some("sgr-1"));
        assert_eq!(param("Priority"), Some("7"));
        assert_eq!(param("Description"), Some("managed by sg-operator"));
        assert_eq!(param("ClientToken"), Some("sgo-t"));
    }

    /// A quintuple rule with the same five-tuple is another rule (its
    /// other-side CIDR is part of Alibaba's identity): it must never be taken
    /// for the declared one.
    #[test]
    fn quintuple_rules_are_not_the_declared_rule() {
        let body = br#"{"RequestId":"r","Permissions":{"Permission":[
            {"SecurityGroupRuleId":"sgr-5","Direction":"ingress","IpProtocol":"TCP","PortRange":"22/22",
             "SourceCidrIp":"10.0.0.0/8","DestCidrIp":"192.168.0.0/24","Policy":"Accept","Priority":"1"},
            {"SecurityGroupRuleId":"sgr-6","Direction":"egress","IpProtocol":"TCP","PortRange":"22/22",
             "DestCidrIp":"10.0.0.0/8","Ipv6SourceCidrIp":"2001:db8::/32","Policy":"Accept","Priority":"1"},
            {"SecurityGroupRuleId":"sgr-7","Direction":"ingress","IpProtocol":"TCP","PortRange":"22/22",
             "SourceCidrIp":"10.0.0.0/8","DestCidrIp":"","Policy":"Accept","Priority":"1"}
        ]}}"#;
        let page = parse_describe(body).expect("parses");
        let ids: Vec<_> = page.rules.iter().map(|d| d.rule_id.as_str()).collect();
        assert_eq!(ids, ["sgr-7"]);
    }

    #[test]
    fn the_last_page_has_no_next_token() {
        let page =
            parse_describe(br#"{"RequestId":"r","NextToken":"","Permissions":{"Permission":[]}}"#)
                .expect("parses");
        assert_eq!(
            page,
            DescribePage {
                rules: vec![],
                next_token: None,
                security_group_id: None,
                classic: false,
            }
        );
        assert!(
            parse_describe(br#"{"RequestId":"r"}"#)
                .expect("parses")
                .rules
                .is_empty()
        );
    }
}
