//! ECS 2014-05-26 security-group actions, shared by Alibaba and Apsara Stack:
//! `AuthorizeSecurityGroup[Egress]`, `RevokeSecurityGroup[Egress]` and
//! `DescribeSecurityGroupAttribute`, with the documented semantics and codes.
//!
//! Alibaba accepts rules as `Permissions.N.*`, as legacy flat parameters, and
//! revokes by `SecurityGroupRuleId.N`; Apsara Stack documents only the flat
//! parameters, so there the other two forms are unknown (ignored) parameters.

use std::collections::{BTreeMap, BTreeSet};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde_json::{Map, Value, json};

use super::{
    MissingRuleByAttributes, MissingRuleById, World,
    pipeline::{ApiError, Outcome},
    state::{Group, GroupKey},
};
use secgroup_operator::provider::{
    Direction, NicType, Peer, Policy, PortRange, Protocol, ProviderKind, Rule,
};

pub const API_VERSION: &str = "2014-05-26";
const MAX_RULES_PER_CALL: usize = 100;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EcsAction {
    Authorize(Direction),
    Revoke(Direction),
    Describe,
}

impl EcsAction {
    pub fn parse(action: &str) -> Option<Self> {
        Some(match action {
            "AuthorizeSecurityGroup" => Self::Authorize(Direction::Ingress),
            "AuthorizeSecurityGroupEgress" => Self::Authorize(Direction::Egress),
            "RevokeSecurityGroup" => Self::Revoke(Direction::Ingress),
            "RevokeSecurityGroupEgress" => Self::Revoke(Direction::Egress),
            "DescribeSecurityGroupAttribute" => Self::Describe,
            _ => return None,
        })
    }
}

type Params = BTreeMap<String, String>;

pub fn missing(name: &str) -> ApiError {
    ApiError::new(
        400,
        "MissingParameter",
        format!(
            "The input parameter \"{name}\" that is mandatory for processing this request is not supplied."
        ),
    )
}

fn invalid(code: &str, name: &str) -> ApiError {
    ApiError::new(
        400,
        code,
        format!("The specified parameter \"{name}\" is not valid."),
    )
}

fn non_empty<'a>(params: &'a Params, name: &str) -> Option<&'a str> {
    params
        .get(name)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
}

/// Runs one ECS action for `provider` with the call's business parameters.
pub fn execute(
    world: &mut World,
    provider: ProviderKind,
    action: EcsAction,
    params: &Params,
) -> Result<Outcome, ApiError> {
    let region = non_empty(params, "RegionId").ok_or_else(|| missing("RegionId"))?;
    let group_id =
        non_empty(params, "SecurityGroupId").ok_or_else(|| missing("SecurityGroupId"))?;
    let key = GroupKey {
        provider,
        region: region.to_owned(),
        id: group_id.to_owned(),
    };
    let auto_create = world.settings.auto_create_groups;
    if world.store.group_for_call(&key, auto_create).is_none() {
        return Err(ApiError::new(
            404,
            "InvalidSecurityGroupId.NotFound",
            "The specified SecurityGroupId does not exist.",
        ));
    }
    match action {
        EcsAction::Authorize(direction) => authorize(world, &key, direction, params),
        EcsAction::Revoke(direction) => revoke(world, &key, direction, params),
        EcsAction::Describe => describe(world, &key, params),
    }
}

fn authorize(
    world: &mut World,
    key: &GroupKey,
    direction: Direction,
    params: &Params,
) -> Result<Outcome, ApiError> {
    let rules = rules_from_params(world, key, direction, params)?;
    if rules.is_empty() {
        return Err(missing("Permissions"));
    }
    let mut effect = false;
    for rule in rules {
        let group = group_mut(world, key);
        // An existing rule is success without a change (documented).
        if group.find_same(key.provider, &rule).is_some() {
            continue;
        }
        let id = world.store.new_rule_id(key.provider, &mut world.rng);
        group_mut(world, key).add(id, rule);
        effect = true;
    }
    Ok(Outcome { body: None, effect })
}

fn revoke(
    world: &mut World,
    key: &GroupKey,
    direction: Direction,
    params: &Params,
) -> Result<Outcome, ApiError> {
    let ids = if key.provider == ProviderKind::Alibaba {
        indexed(params, "SecurityGroupRuleId.")
    } else {
        BTreeMap::new()
    };
    if ids.is_empty() {
        return revoke_by_attributes(world, key, direction, params);
    }
    if !rules_from_params(world, key, direction, params)?.is_empty() {
        return Err(ApiError::new(
            400,
            "InvalidParam.Permissions",
            "SecurityGroupRuleId cannot be combined with Permissions or rule attributes.",
        ));
    }
    if ids.len() > MAX_RULES_PER_CALL {
        return Err(invalid(
            "InvalidParam.SecurityGroupRuleId",
            "SecurityGroupRuleId",
        ));
    }
    let wanted: Vec<&str> = ids.values().map(|fields| fields[""].as_str()).collect();
    if wanted.iter().collect::<BTreeSet<_>>().len() != wanted.len() {
        return Err(ApiError::new(
            400,
            "InvalidParam.SecurityGroupRuleIdRepeated",
            "The specified SecurityGroupRuleId is repeated.",
        ));
    }
    let group = group_mut(world, key);
    let mut found = Vec::with_capacity(wanted.len());
    for id in &wanted {
        let index = group
            .rules
            .iter()
            .position(|r| r.id == *id && r.rule.direction == direction);
        match index {
            Some(index) => found.push(index),
            None => {
                return Err(missing_rule_by_id(
                    world.settings.alibaba_missing_rule_by_id,
                    id,
                ));
            }
        }
    }
    remove_all(group_mut(world, key), found);
    Ok(Outcome {
        body: None,
        effect: true,
    })
}

fn missing_rule_by_id(mode: MissingRuleById, id: &str) -> ApiError {
    match mode {
        MissingRuleById::NotFound => ApiError::new(
            404,
            "InvalidSecurityGroupRuleId.NotFound",
            format!("The specified security group rule id {id} does not exist."),
        ),
        MissingRuleById::InvalidParam => ApiError::new(
            400,
            "InvalidParam.SecurityGroupRuleId",
            format!("The specified SecurityGroupRuleId {id} is not valid."),
        ),
    }
}

fn revoke_by_attributes(
    world: &mut World,
    key: &GroupKey,
    direction: Direction,
    params: &Params,
) -> Result<Outcome, ApiError> {
    let rules = rules_from_params(world, key, direction, params)?;
    if rules.is_empty() {
        return Err(missing("Permissions"));
    }
    let when_missing = world.settings.alibaba_missing_rule_by_attributes;
    let group = group_mut(world, key);
    let mut found = Vec::new();
    for rule in &rules {
        match group.find_same(key.provider, rule) {
            Some(index) => found.push(index),
            None => match when_missing {
                MissingRuleByAttributes::RuleNotExist => {
                    return Err(ApiError::new(
                        400,
                        "InvalidSecurityGroupRule.RuleNotExist",
                        "The specified rule does not exist.",
                    ));
                }
                MissingRuleByAttributes::Success => {}
            },
        }
    }
    let effect = !found.is_empty();
    remove_all(group_mut(world, key), found);
    Ok(Outcome { body: None, effect })
}

fn remove_all(group: &mut Group, mut indexes: Vec<usize>) {
    indexes.sort_unstable();
    indexes.dedup();
    for index in indexes.into_iter().rev() {
        group.remove_at(index);
    }
}

fn group_mut<'a>(world: &'a mut World, key: &GroupKey) -> &'a mut Group {
    world
        .store
        .get_mut(key)
        .expect("the group was looked up at the start of the call")
}

/// `Prefix.N.Field=value` (or `Prefix.N=value`, field "") grouped by N.
fn indexed<'a>(params: &'a Params, prefix: &str) -> BTreeMap<usize, BTreeMap<&'a str, String>> {
    let mut out: BTreeMap<usize, BTreeMap<&str, String>> = BTreeMap::new();
    for (name, value) in params {
        let Some(rest) = name.strip_prefix(prefix) else {
            continue;
        };
        let (n, field) = rest.split_once('.').unwrap_or((rest, ""));
        if let Ok(n) = n.parse::<usize>() {
            out.entry(n).or_default().insert(field, value.clone());
        }
    }
    out
}

/// Top-level parameters that make a call a legacy flat-form rule.
const FLAT_RULE_FIELDS: [&str; 10] = [
    "IpProtocol",
    "PortRange",
    "SourceCidrIp",
    "Ipv6SourceCidrIp",
    "SourceGroupId",
    "SourcePrefixListId",
    "DestCidrIp",
    "Ipv6DestCidrIp",
    "DestGroupId",
    "DestPrefixListId",
];

fn rules_from_params(
    world: &World,
    key: &GroupKey,
    direction: Direction,
    params: &Params,
) -> Result<Vec<Rule>, ApiError> {
    let permissions = if key.provider == ProviderKind::Alibaba {
        indexed(params, "Permissions.")
    } else {
        BTreeMap::new()
    };
    let flat = FLAT_RULE_FIELDS.iter().any(|f| params.contains_key(*f));
    if flat && !permissions.is_empty() {
        return Err(ApiError::new(
            400,
            "InvalidParam.Permissions",
            "Permissions cannot be combined with the deprecated rule parameters.",
        ));
    }
    if permissions.len() > MAX_RULES_PER_CALL {
        return Err(invalid("InvalidParam.Permissions", "Permissions"));
    }
    let forms: Vec<BTreeMap<&str, &str>> = if flat {
        vec![
            params
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect(),
        ]
    } else {
        permissions
            .values()
            .map(|fields| fields.iter().map(|(n, v)| (*n, v.as_str())).collect())
            .collect()
    };
    let mut rules: Vec<Rule> = Vec::new();
    for form in forms {
        let field = |name: &str| form.get(name).copied().filter(|v| !v.is_empty());
        let rule = rule_from_fields(direction, &field)?;
        check_peer_group_exists(world, key, &rule)?;
        if rules.iter().any(|r| key.provider.same_rule(r, &rule)) {
            return Err(ApiError::new(
                400,
                "InvalidParam.DuplicatePermissions",
                "The specified Permissions contain duplicate rules.",
            ));
        }
        rules.push(rule);
    }
    Ok(rules)
}

/// A rule may name another group only if that group exists (same region).
fn check_peer_group_exists(world: &World, key: &GroupKey, rule: &Rule) -> Result<(), ApiError> {
    let Peer::Group {
        id,
        owner_account: None,
        owner_id: None,
    } = &rule.peer
    else {
        return Ok(());
    };
    let peer = GroupKey {
        id: id.clone(),
        ..key.clone()
    };
    if world.settings.auto_create_groups || world.store.get(&peer).is_some() {
        return Ok(());
    }
    let code = match rule.direction {
        Direction::Ingress => "InvalidSourceGroupId.NotFound",
        Direction::Egress => "InvalidDestGroupId.NotFound",
    };
    Err(ApiError::new(
        404,
        code,
        format!("The specified security group {id} does not exist."),
    ))
}

/// One rule from its fields (`IpProtocol`, `PortRange`, ...), validated as ECS does.
fn rule_from_fields<'a>(
    direction: Direction,
    field: &dyn Fn(&str) -> Option<&'a str>,
) -> Result<Rule, ApiError> {
    let protocol_text = field("IpProtocol").ok_or_else(|| missing("IpProtocol"))?;
    let protocol = Protocol::parse_wire(protocol_text)
        .ok_or_else(|| invalid("InvalidIpProtocol.ValueNotSupported", "IpProtocol"))?;
    let ports = match (protocol.has_ports(), field("PortRange")) {
        (true, None) => return Err(missing("PortRange")),
        (true, Some(text)) => Some(
            parse_port_range(text)
                .ok_or_else(|| invalid("InvalidPortRange.Malformed", "PortRange"))?,
        ),
        (false, None | Some("-1/-1")) => None,
        (false, Some(_)) => return Err(invalid("InvalidParam.PortRange", "PortRange")),
    };
    let source_ports = field("SourcePortRange")
        .map(|text| {
            parse_port_range(text)
                .ok_or_else(|| invalid("InvalidSourcePortRange.Malformed", "SourcePortRange"))
        })
        .transpose()?;
    let policy = match field("Policy").map(str::to_ascii_lowercase).as_deref() {
        None | Some("accept") => Policy::Accept,
        Some("drop") => Policy::Drop,
        Some(_) => return Err(invalid("InvalidPolicy.Malformed", "Policy")),
    };
    let priority = match field("Priority") {
        None => 1,
        Some(text) => text
            .parse::<u8>()
            .ok()
            .filter(|p| (1..=100).contains(p))
            .ok_or_else(|| invalid("InvalidPriority.Malformed", "Priority"))?,
    };
    let nic_type = match field("NicType").map(str::to_ascii_lowercase).as_deref() {
        None | Some("intranet") => NicType::Intranet,
        Some("internet") => NicType::Internet,
        Some(_) => return Err(invalid("InvalidNicType.ValueNotSupported", "NicType")),
    };
    let description = field("Description").unwrap_or_default();
    if description.chars().count() > 512 {
        return Err(invalid(
            "InvalidSecurityGroupDiscription.Malformed",
            "Description",
        ));
    }
    Ok(Rule {
        direction,
        protocol,
        ports,
        source_ports,
        peer: peer_from_fields(direction, field)?,
        policy,
        priority,
        nic_type,
        description: description.to_owned(),
    })
}

/// The peer: source fields for ingress, destination fields for egress.
fn peer_from_fields<'a>(
    direction: Direction,
    field: &dyn Fn(&str) -> Option<&'a str>,
) -> Result<Peer, ApiError> {
    let side = match direction {
        Direction::Ingress => "Source",
        Direction::Egress => "Dest",
    };
    let v4_name = format!("{side}CidrIp");
    let v6_name = format!("Ipv6{side}CidrIp");
    match (field(&v4_name), field(&v6_name)) {
        (Some(_), Some(_)) => Err(invalid(&format!("InvalidParam.{side}Ip"), &v4_name)),
        (Some(v4), None) => match Peer::parse_ip(v4) {
            Some(peer @ Peer::Cidr(_)) => Ok(peer),
            _ => Err(invalid(&format!("Invalid{side}CidrIp.Malformed"), &v4_name)),
        },
        (None, Some(v6)) => match Peer::parse_ip(v6) {
            Some(peer @ Peer::Ipv6Cidr(_)) => Ok(peer),
            _ => Err(invalid(&format!("InvalidParam.{v6_name}"), &v6_name)),
        },
        (None, None) => {
            if let Some(id) = field(&format!("{side}GroupId")) {
                return Ok(Peer::Group {
                    id: id.to_owned(),
                    owner_account: field(&format!("{side}GroupOwnerAccount")).map(str::to_owned),
                    owner_id: field(&format!("{side}GroupOwnerId")).map(str::to_owned),
                });
            }
            if field(&format!("{side}PrefixListId")).is_some() {
                return Err(ApiError::new(
                    404,
                    "InvalidPrefixListId.NotFound",
                    "The specified prefix list does not exist.",
                ));
            }
            Err(ApiError::new(
                400,
                &format!("MissingParameter.{side}"),
                format!("One of {side}CidrIp, Ipv6{side}CidrIp and {side}GroupId is required."),
            ))
        }
    }
}

/// `start/end` with 1 <= start <= end <= 65535.
fn parse_port_range(text: &str) -> Option<PortRange> {
    let (from, to) = text.split_once('/')?;
    let (from, to) = (
        from.trim().parse::<u16>().ok()?,
        to.trim().parse::<u16>().ok()?,
    );
    (from >= 1 && from <= to).then_some(PortRange { from, to })
}

fn describe(world: &World, key: &GroupKey, params: &Params) -> Result<Outcome, ApiError> {
    let group = world
        .store
        .get(key)
        .expect("looked up at the start of the call");
    let direction = match non_empty(params, "Direction") {
        None | Some("all") => None,
        Some("ingress") => Some(Direction::Ingress),
        Some("egress") => Some(Direction::Egress),
        Some(_) => return Err(invalid("InvalidDirection.Malformed", "Direction")),
    };
    let max_results = match non_empty(params, "MaxResults") {
        None => 500,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (10..=1000).contains(n))
            .ok_or_else(|| invalid("InvalidParam.MaxResults", "MaxResults"))?,
    };
    let start = match non_empty(params, "NextToken") {
        None => 0,
        Some(token) => decode_next_token(token)
            .ok_or_else(|| invalid("InvalidNextToken.Malformed", "NextToken"))?,
    };
    let matching: Vec<_> = group
        .rules
        .iter()
        .filter(|r| direction.is_none_or(|d| r.rule.direction == d))
        .collect();
    let page: Vec<Value> = matching
        .iter()
        .skip(start)
        .take(max_results)
        .map(|r| permission_json(&r.id, &r.rule, &r.created_time))
        .collect();
    let mut body = Map::new();
    body.insert("RegionId".into(), key.region.clone().into());
    body.insert("SecurityGroupId".into(), key.id.clone().into());
    body.insert("SecurityGroupName".into(), group.name.clone().into());
    body.insert("Description".into(), "".into());
    // Its groups are VPC groups: an empty VpcId would mean the classic network.
    body.insert("VpcId".into(), "vpc-fakecloud".into());
    body.insert("InnerAccessPolicy".into(), "Accept".into());
    body.insert("Permissions".into(), json!({ "Permission": page }));
    if start + max_results < matching.len() {
        body.insert(
            "NextToken".into(),
            encode_next_token(start + max_results).into(),
        );
    }
    Ok(Outcome {
        body: Some(body),
        effect: false,
    })
}

fn encode_next_token(offset: usize) -> String {
    URL_SAFE_NO_PAD.encode(format!("offset:{offset}"))
}

fn decode_next_token(token: &str) -> Option<usize> {
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(token).ok()?).ok()?;
    text.strip_prefix("offset:")?.parse().ok()
}

/// One `Permissions.Permission[]` entry, every key present as the API has it.
fn permission_json(id: &str, rule: &Rule, created_time: &str) -> Value {
    let (cidr, ipv6, group, owner) = match &rule.peer {
        Peer::Cidr(net) => (net.to_string(), String::new(), String::new(), String::new()),
        Peer::Ipv6Cidr(net) => (String::new(), net.to_string(), String::new(), String::new()),
        Peer::Group {
            id, owner_account, ..
        } => (
            String::new(),
            String::new(),
            id.clone(),
            owner_account.clone().unwrap_or_default(),
        ),
    };
    let (ingress, egress) = match rule.direction {
        Direction::Ingress => ((cidr, ipv6, group, owner), Default::default()),
        Direction::Egress => (Default::default(), (cidr, ipv6, group, owner)),
    };
    let (src_cidr, src_v6, src_group, src_owner): (String, String, String, String) = ingress;
    let (dst_cidr, dst_v6, dst_group, dst_owner): (String, String, String, String) = egress;
    let range = |p: PortRange| format!("{}/{}", p.from, p.to);
    json!({
        "SecurityGroupRuleId": id,
        "Direction": rule.direction.as_wire(),
        "IpProtocol": rule.protocol.name(),
        "PortRange": rule.effective_ports().map_or_else(|| "-1/-1".to_owned(), range),
        "SourceCidrIp": src_cidr,
        "Ipv6SourceCidrIp": src_v6,
        "SourceGroupId": src_group,
        "SourceGroupName": "",
        "SourceGroupOwnerAccount": src_owner,
        "SourcePrefixListId": "",
        "SourcePrefixListName": "",
        "SourcePortRange": rule.source_ports.map(range).unwrap_or_default(),
        "DestCidrIp": dst_cidr,
        "Ipv6DestCidrIp": dst_v6,
        "DestGroupId": dst_group,
        "DestGroupName": "",
        "DestGroupOwnerAccount": dst_owner,
        "DestPrefixListId": "",
        "DestPrefixListName": "",
        "PortRangeListId": "",
        "PortRangeListName": "",
        "NicType": match rule.nic_type {
            NicType::Intranet => "intranet",
            NicType::Internet => "internet",
        },
        "Policy": match rule.policy {
            Policy::Accept => "Accept",
            Policy::Drop => "Drop",
        },
        "Priority": rule.priority.to_string(),
        "Description": rule.description,
        "CreateTime": created_time,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<&'a str> + 'a {
        move |name| pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }

    #[test]
    fn ports_are_required_for_tcp_and_refused_for_icmp() {
        let tcp = [("IpProtocol", "tcp"), ("SourceCidrIp", "10.0.0.0/8")];
        let err = rule_from_fields(Direction::Ingress, &fields(&tcp)).expect_err("refused");
        assert_eq!(err.code, "MissingParameter");
        let icmp = [
            ("IpProtocol", "ICMP"),
            ("PortRange", "1/2"),
            ("SourceCidrIp", "10.0.0.0/8"),
        ];
        let err = rule_from_fields(Direction::Ingress, &fields(&icmp)).expect_err("refused");
        assert_eq!(err.code, "InvalidParam.PortRange");
        let reversed = [
            ("IpProtocol", "UDP"),
            ("PortRange", "200/1"),
            ("SourceCidrIp", "10.0.0.0/8"),
        ];
        let err = rule_from_fields(Direction::Ingress, &fields(&reversed)).expect_err("refused");
        assert_eq!(err.code, "InvalidPortRange.Malformed");
    }

    #[test]
    fn egress_rules_take_their_peer_from_the_destination() {
        let egress = [
            ("IpProtocol", "ALL"),
            ("DestCidrIp", "192.168.0.0/16"),
            ("SourceCidrIp", "10.0.0.0/8"),
        ];
        let rule = rule_from_fields(Direction::Egress, &fields(&egress)).expect("valid");
        assert_eq!(rule.peer, Peer::parse_ip("192.168.0.0/16").expect("valid"));
        let none = [("IpProtocol", "ALL"), ("SourceCidrIp", "10.0.0.0/8")];
        let err = rule_from_fields(Direction::Egress, &fields(&none)).expect_err("refused");
        assert_eq!(err.code, "MissingParameter.Dest");
    }

    #[test]
    fn next_tokens_round_trip_and_garbage_is_refused() {
        assert_eq!(decode_next_token(&encode_next_token(500)), Some(500));
        assert_eq!(decode_next_token("not a token"), None);
    }

    #[test]
    fn described_rules_use_the_documented_spelling() {
        let pairs = [
            ("IpProtocol", "tcp"),
            ("PortRange", "22/22"),
            ("SourceCidrIp", "10.0.0.0/8"),
            ("Policy", "drop"),
        ];
        let rule = rule_from_fields(Direction::Ingress, &fields(&pairs)).expect("valid");
        let json = permission_json("sgr-1", &rule, "2025-01-02T03:04:05Z");
        assert_eq!(json["IpProtocol"], "TCP");
        assert_eq!(json["Policy"], "Drop");
        assert_eq!(json["Priority"], "1");
        assert_eq!(json["DestCidrIp"], "");
        assert_eq!(json.as_object().map(Map::len), Some(26));
    }
}
