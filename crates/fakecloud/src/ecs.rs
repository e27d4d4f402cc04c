//! ECS 2014-05-26 security-group actions, shared by Alibaba and Apsara Stack:
//! `AuthorizeSecurityGroup[Egress]`, `RevokeSecurityGroup[Egress]`,
//! `ModifySecurityGroupRule`/`ModifySecurityGroupEgressRule` (Alibaba) and
//! `DescribeSecurityGroupAttribute`, with the documented semantics and codes.
//!
//! Alibaba accepts rules as `Permissions.N.*`, as legacy flat parameters, and
//! revokes and modifies by `SecurityGroupRuleId`; Apsara Stack documents only
//! the flat parameters, so there the other forms are unknown (ignored)
//! parameters.

use std::collections::{BTreeMap, BTreeSet};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde_json::{Map, Value, json};

use super::{
    MissingRuleByAttributes, MissingRuleById, World,
    cloud::Cloud,
    ecs_rule::{EcsRule, Network, Reading, invalid, missing, operation_denied},
    pipeline::{ApiError, Outcome},
    rule_json::Direction,
    state::{Group, GroupKey, WireRule},
};

pub const API_VERSION: &str = "2014-05-26";
const MAX_RULES_PER_CALL: usize = 100;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EcsAction {
    Authorize(Direction),
    Revoke(Direction),
    Modify(Direction),
    Describe,
}

impl EcsAction {
    pub fn parse(action: &str) -> Option<Self> {
        Some(match action {
            "AuthorizeSecurityGroup" => Self::Authorize(Direction::Ingress),
            "AuthorizeSecurityGroupEgress" => Self::Authorize(Direction::Egress),
            "RevokeSecurityGroup" => Self::Revoke(Direction::Ingress),
            "RevokeSecurityGroupEgress" => Self::Revoke(Direction::Egress),
            "ModifySecurityGroupRule" => Self::Modify(Direction::Ingress),
            "ModifySecurityGroupEgressRule" => Self::Modify(Direction::Egress),
            "DescribeSecurityGroupAttribute" => Self::Describe,
            _ => return None,
        })
    }
}

/// Where an ECS call came in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gateway {
    Alibaba,
    /// Apsara Stack at `/` or `/asapi/v3`.
    Apsara,
    /// Apsara Stack's `/apsara/route/Ecs/<Action>` (seed 000).
    ApsaraRoute,
}

impl Gateway {
    fn cloud(self) -> Cloud {
        match self {
            Self::Alibaba => Cloud::Alibaba,
            Self::Apsara | Self::ApsaraRoute => Cloud::Apsara,
        }
    }
}

type Params = BTreeMap<String, String>;

fn non_empty<'a>(params: &'a Params, name: &str) -> Option<&'a str> {
    params
        .get(name)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
}

fn unknown_action() -> ApiError {
    ApiError::new(
        404,
        "InvalidAction.NotFound",
        "Specified api is not found, please check your url and method.",
    )
}

/// Runs one ECS action with the call's business parameters.
pub fn execute(
    world: &mut World,
    gateway: Gateway,
    action: EcsAction,
    params: &Params,
) -> Result<Outcome, ApiError> {
    let provider = gateway.cloud();
    if matches!(action, EcsAction::Modify(_)) && provider != Cloud::Alibaba {
        return Err(unknown_action());
    }
    if gateway == Gateway::ApsaraRoute && non_empty(params, "regionId").is_none() {
        // Required by the route gateway next to `RegionId` (seed 000).
        return Err(missing("regionId"));
    }
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
        EcsAction::Modify(direction) => modify(world, &key, direction, params),
        EcsAction::Describe => describe(world, &key, params),
    }
}

/// How `key`'s group reads a rule.
fn reading(world: &World, key: &GroupKey) -> Reading {
    let kind = group(world, key).kind;
    Reading {
        case_sensitive_protocol: key.provider == Cloud::Apsara,
        network: kind.network,
        enterprise: kind.enterprise,
    }
}

fn authorize(
    world: &mut World,
    key: &GroupKey,
    direction: Direction,
    params: &Params,
) -> Result<Outcome, ApiError> {
    let rules = rules_from_params(world, key, direction, params)?;
    let group = group(world, key);
    // An existing rule is success without a change (documented).
    let new: Vec<EcsRule> = rules
        .into_iter()
        .filter(|rule| group.find_same(&WireRule::Ecs(rule.clone())).is_none())
        .collect();
    if group
        .rule_quota
        .is_some_and(|quota| group.rules.len() + new.len() > quota)
    {
        return Err(ApiError::new(
            403,
            "AuthorizationLimitExceed",
            "The limit of authorization records in the security group reaches.",
        ));
    }
    let effect = !new.is_empty();
    for rule in new {
        let id = world.store.new_rule_id(key.provider, &mut world.rng);
        group_mut(world, key).add(id, WireRule::Ecs(rule));
    }
    Ok(Outcome { body: None, effect })
}

/// `SecurityGroupRuleId.N` values (Alibaba only), checked for count and repeats.
fn rule_ids<'a>(key: &GroupKey, params: &'a Params) -> Result<Vec<&'a str>, ApiError> {
    if key.provider != Cloud::Alibaba {
        return Ok(Vec::new());
    }
    let ids: Vec<&str> = indexed(params, "SecurityGroupRuleId.")
        .into_values()
        .filter_map(|fields| fields.get("").copied())
        .collect();
    if ids.len() > MAX_RULES_PER_CALL {
        return Err(invalid(
            "InvalidParam.SecurityGroupRuleId",
            "SecurityGroupRuleId",
        ));
    }
    if ids.iter().collect::<BTreeSet<_>>().len() != ids.len() {
        return Err(ApiError::new(
            400,
            "InvalidParam.SecurityGroupRuleIdRepeated",
            "The specified SecurityGroupRuleId is repeated.",
        ));
    }
    Ok(ids)
}

fn revoke(
    world: &mut World,
    key: &GroupKey,
    direction: Direction,
    params: &Params,
) -> Result<Outcome, ApiError> {
    let ids = rule_ids(key, params)?;
    if ids.is_empty() {
        return revoke_by_attributes(world, key, direction, params);
    }
    if has_rule_fields(params) {
        return Err(ApiError::new(
            400,
            "InvalidParam.Permissions",
            "SecurityGroupRuleId cannot be combined with Permissions or rule attributes.",
        ));
    }
    let mut found = Vec::with_capacity(ids.len());
    for id in ids {
        found.push(index_of(world, key, direction, id)?);
    }
    remove_all(group_mut(world, key), found);
    Ok(Outcome {
        body: None,
        effect: true,
    })
}

/// The index of rule `id` of this direction, or the configured "no such rule id".
fn index_of(
    world: &World,
    key: &GroupKey,
    direction: Direction,
    id: &str,
) -> Result<usize, ApiError> {
    group(world, key)
        .rules
        .iter()
        .position(|r| r.id == id && r.rule.direction() == Some(direction))
        .ok_or_else(|| missing_rule_by_id(world.settings.alibaba_missing_rule_by_id, id))
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

/// The answer to a rule, named by its attributes, that does not exist.
fn missing_rule(world: &World, provider: Cloud) -> Option<ApiError> {
    let mode = match provider {
        Cloud::Apsara => world.settings.apsara_missing_rule_by_attributes,
        _ => world.settings.alibaba_missing_rule_by_attributes,
    };
    match mode {
        MissingRuleByAttributes::RuleNotExist => Some(ApiError::new(
            400,
            "InvalidSecurityGroupRule.RuleNotExist",
            "The specified rule does not exist.",
        )),
        MissingRuleByAttributes::GroupAuthItemNotFound => Some(ApiError::new(
            403,
            "InvalidGroupAuthItem.NotFound",
            "Specified group authorized item does not exist in our records.",
        )),
        MissingRuleByAttributes::Success => None,
    }
}

fn revoke_by_attributes(
    world: &mut World,
    key: &GroupKey,
    direction: Direction,
    params: &Params,
) -> Result<Outcome, ApiError> {
    let rules = rules_from_params(world, key, direction, params)?;
    let mut found = Vec::new();
    for rule in rules {
        match group(world, key).find_same(&WireRule::Ecs(rule)) {
            Some(index) => found.push(index),
            None => {
                if let Some(error) = missing_rule(world, key.provider) {
                    return Err(error);
                }
            }
        }
    }
    let effect = !found.is_empty();
    remove_all(group_mut(world, key), found);
    Ok(Outcome { body: None, effect })
}

/// Changes a rule in place: the one named by `SecurityGroupRuleId` takes
/// every attribute given (an absent or empty one keeps its value, as the
/// documentation says a value cannot be emptied); without an id, the rule
/// with the given attributes takes the given description and priority.
fn modify(
    world: &mut World,
    key: &GroupKey,
    direction: Direction,
    params: &Params,
) -> Result<Outcome, ApiError> {
    let reading = reading(world, key);
    let index = match non_empty(params, "SecurityGroupRuleId") {
        Some(id) => index_of(world, key, direction, id)?,
        None => {
            let field = |name: &str| non_empty(params, name);
            let wanted = EcsRule::from_fields(direction, &field, reading)?;
            match group(world, key).find_same(&WireRule::Ecs(wanted)) {
                Some(index) => index,
                None => {
                    return Err(missing_rule(world, key.provider).unwrap_or_else(|| {
                        ApiError::new(
                            400,
                            "InvalidSecurityGroupRule.RuleNotExist",
                            "The specified rule does not exist.",
                        )
                    }));
                }
            }
        }
    };
    let WireRule::Ecs(old) = &group(world, key).rules[index].rule else {
        unreachable!("ECS groups hold ECS rules");
    };
    let mut merged = old.wire_fields();
    for (name, value) in params.iter().filter(|(_, v)| !v.is_empty()) {
        if let Some(slot) = merged.get_mut(name.as_str()) {
            slot.clone_from(value);
        }
    }
    // An enterprise group refuses only what the call sets, not what the rule keeps.
    let setting = |name: &str| non_empty(params, name).is_some();
    if reading.enterprise
        && ["Policy", "SourceGroupId", "DestGroupId"]
            .into_iter()
            .any(setting)
    {
        return Err(operation_denied());
    }
    let field = |name: &str| {
        merged
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    };
    let kept = Reading {
        enterprise: false,
        ..reading
    };
    let new = EcsRule::from_fields(direction, &field, kept)?;
    let group = group(world, key);
    let clash = group
        .rules
        .iter()
        .enumerate()
        .any(|(i, r)| i != index && r.rule.same(&WireRule::Ecs(new.clone())));
    if clash {
        return Err(ApiError::new(
            400,
            "InvalidParam.DuplicatePermissions",
            "The modified rule is the same as another rule of the security group.",
        ));
    }
    let effect = *old != new;
    if effect {
        group_mut(world, key).replace_at(index, WireRule::Ecs(new));
    }
    Ok(Outcome { body: None, effect })
}

fn remove_all(group: &mut Group, mut indexes: Vec<usize>) {
    indexes.sort_unstable();
    indexes.dedup();
    for index in indexes.into_iter().rev() {
        group.remove_at(index);
    }
}

fn group<'a>(world: &'a World, key: &GroupKey) -> &'a Group {
    world
        .store
        .get(key)
        .expect("the group was looked up at the start of the call")
}

fn group_mut<'a>(world: &'a mut World, key: &GroupKey) -> &'a mut Group {
    world
        .store
        .get_mut(key)
        .expect("the group was looked up at the start of the call")
}

/// `Prefix.N.Field=value` (or `Prefix.N=value`, field "") grouped by N.
fn indexed<'a>(params: &'a Params, prefix: &str) -> BTreeMap<usize, BTreeMap<&'a str, &'a str>> {
    let mut out: BTreeMap<usize, BTreeMap<&str, &str>> = BTreeMap::new();
    for (name, value) in params {
        let Some(rest) = name.strip_prefix(prefix) else {
            continue;
        };
        let (n, field) = rest.split_once('.').unwrap_or((rest, ""));
        if let Ok(n) = n.parse::<usize>() {
            out.entry(n).or_default().insert(field, value.as_str());
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

fn has_rule_fields(params: &Params) -> bool {
    FLAT_RULE_FIELDS.iter().any(|f| params.contains_key(*f))
        || params.keys().any(|k| k.starts_with("Permissions."))
}

/// The rules a call names, at least one.
fn rules_from_params(
    world: &World,
    key: &GroupKey,
    direction: Direction,
    params: &Params,
) -> Result<Vec<EcsRule>, ApiError> {
    let permissions = if key.provider == Cloud::Alibaba {
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
        permissions.into_values().collect()
    };
    let reading = reading(world, key);
    let mut rules: Vec<EcsRule> = Vec::new();
    for form in forms {
        let field = |name: &str| form.get(name).copied().filter(|v| !v.is_empty());
        let rule = EcsRule::from_fields(direction, &field, reading)?;
        check_peer_group_exists(world, key, &rule)?;
        if rules.iter().any(|r| r.same(&rule)) {
            return Err(ApiError::new(
                400,
                "InvalidParam.DuplicatePermissions",
                "The specified Permissions contain duplicate rules.",
            ));
        }
        rules.push(rule);
    }
    if rules.is_empty() {
        return Err(missing("Permissions"));
    }
    Ok(rules)
}

/// A rule may name another group of the same account only if that group exists (same region).
fn check_peer_group_exists(world: &World, key: &GroupKey, rule: &EcsRule) -> Result<(), ApiError> {
    let (id, owner_account, owner_id) = rule.peer_group();
    if id.is_empty() || !owner_account.is_empty() || !owner_id.is_empty() {
        return Ok(());
    }
    let peer = GroupKey {
        id: id.to_owned(),
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

fn describe(world: &World, key: &GroupKey, params: &Params) -> Result<Outcome, ApiError> {
    let group = group(world, key);
    let direction = match non_empty(params, "Direction") {
        None | Some("all") => None,
        Some("ingress") => Some(Direction::Ingress),
        Some("egress") => Some(Direction::Egress),
        Some(_) => return Err(invalid("InvalidDirection.Malformed", "Direction")),
    };
    // A classic-network group answers one NIC type per call, `internet` by
    // default; a VPC group's rules are all `intranet`.
    let nic_type = match (group.kind.network, non_empty(params, "NicType")) {
        (Network::Vpc, _) => None,
        (Network::Classic, None | Some("internet")) => Some("internet"),
        (Network::Classic, Some("intranet")) => Some("intranet"),
        (Network::Classic, Some(_)) => {
            return Err(invalid("InvalidNicType.ValueNotSupported", "NicType"));
        }
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
    let matching: Vec<(&str, &str, &EcsRule)> = group
        .described(world.describe_lag)
        .into_iter()
        .filter_map(|r| match &r.rule {
            WireRule::Ecs(rule) => Some((r.id.as_str(), r.created_time.as_str(), rule)),
            WireRule::Bcc(_) => None,
        })
        .filter(|(_, _, r)| direction.is_none_or(|d| r.direction == d))
        .filter(|(_, _, r)| nic_type.is_none_or(|n| r.nic_type == n))
        .collect();
    let page: Vec<Value> = matching
        .iter()
        .skip(start)
        .take(max_results)
        .map(|(id, created, rule)| rule.permission(id, created))
        .collect();
    let vpc_id = match group.kind.network {
        Network::Vpc => format!("vpc-{}", key.id.trim_start_matches("sg-")),
        Network::Classic => String::new(),
    };
    let mut body = Map::new();
    body.insert("RegionId".into(), key.region.clone().into());
    body.insert("SecurityGroupId".into(), key.id.clone().into());
    body.insert("SecurityGroupName".into(), group.name.clone().into());
    body.insert("Description".into(), "".into());
    body.insert("VpcId".into(), vpc_id.into());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_tokens_round_trip_and_garbage_is_refused() {
        assert_eq!(decode_next_token(&encode_next_token(500)), Some(500));
        assert_eq!(decode_next_token("not a token"), None);
    }

    #[test]
    fn modify_actions_name_their_direction() {
        assert_eq!(
            EcsAction::parse("ModifySecurityGroupEgressRule"),
            Some(EcsAction::Modify(Direction::Egress))
        );
        assert_eq!(EcsAction::parse("modifysecuritygrouprule"), None);
    }
}
