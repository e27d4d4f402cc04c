//! A ProviderConfig's per-namespace policy (`spec.policies`): which entry
//! governs a namespace, and whether a rule keeps to it. Pure: it reads only
//! what it is given, so every class of refusal is tested without a cluster.

use std::collections::BTreeMap;

use kube::core::{Selector, SelectorExt};

use crate::api::{
    SecurityGroupRule,
    provider_config::NamespacePolicy,
    rule::{Direction, Ensure, Policy, RuleSpec},
};

/// Why a rule may not be authorized: the spec field at fault, and what the
/// policy allows (its message names the config and the entry).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Violation {
    pub field: &'static str,
    pub message: String,
}

/// The entry of `policies` that governs a namespace with these labels: the
/// first whose selector matches. `Ok(None)` when the config sets no
/// policies (no limits); an error when policies are set and none selects
/// the namespace.
pub fn governing<'a>(
    config: &str,
    policies: Option<&'a [NamespacePolicy]>,
    namespace: &str,
    labels: &BTreeMap<String, String>,
) -> Result<Option<&'a NamespacePolicy>, Violation> {
    let Some(policies) = policies else {
        return Ok(None);
    };
    for entry in policies {
        let selector =
            Selector::try_from(entry.namespace_selector.clone()).map_err(|e| Violation {
                field: "metadata.namespace",
                message: format!(
                    "ProviderConfig {config} spec.policies[{}].namespaceSelector is invalid: {e}",
                    entry.name
                ),
            })?;
        if selector.matches(labels) {
            return Ok(Some(entry));
        }
    }
    Err(Violation {
        field: "metadata.namespace",
        message: format!(
            "no entry of ProviderConfig {config} spec.policies selects namespace {namespace}, so it may not use this config"
        ),
    })
}

/// What is checked of one rule.
pub struct Subject<'a> {
    pub rule: &'a RuleSpec,
    pub security_group_id: &'a str,
    /// The rule's region, or the config's when the rule names none.
    pub region: &'a str,
    /// How many rules of the namespace that count against `maxRules` are
    /// older than this one (see `rank`).
    pub rank: usize,
}

/// Whether `subject` keeps to `entry` of ProviderConfig `config`; the first
/// broken limit otherwise.
pub fn check(
    config: &str,
    entry: &NamespacePolicy,
    subject: &Subject<'_>,
) -> Result<(), Violation> {
    let at = |key: &str| {
        format!(
            "ProviderConfig {config} spec.policies[{}].{key}",
            entry.name
        )
    };
    if let Some(regions) = &entry.regions
        && !regions.iter().any(|r| r == subject.region)
    {
        return Err(Violation {
            field: "spec.region",
            message: format!(
                "region {} is not one of {} ({})",
                subject.region,
                at("regions"),
                regions.join(", ")
            ),
        });
    }
    if let Some(groups) = &entry.security_group_ids
        && !groups.iter().any(|g| g == subject.security_group_id)
    {
        return Err(Violation {
            field: "spec.securityGroupId",
            message: format!(
                "security group {} is not one of {} ({})",
                subject.security_group_id,
                at("securityGroupIds"),
                groups.join(", ")
            ),
        });
    }
    check_peer(entry, subject.rule, &at)?;
    if subject.rule.policy == Some(Policy::Drop) && !entry.allow_drop {
        return Err(Violation {
            field: "spec.rule.policy",
            message: format!("Drop is refused: {} is not set", at("allowDrop")),
        });
    }
    if let Some(max) = entry.max_rules
        && subject.rank >= max as usize
    {
        return Err(Violation {
            field: "metadata.namespace",
            message: format!(
                "the namespace already holds {max} older Present rules using ProviderConfig {config}, the most {} allows: delete one or raise the limit",
                at("maxRules")
            ),
        });
    }
    Ok(())
}

fn check_peer(
    entry: &NamespacePolicy,
    rule: &RuleSpec,
    at: &dyn Fn(&str) -> String,
) -> Result<(), Violation> {
    let peer = &rule.peer;
    let cidrs = [
        (
            "spec.rule.peer.cidr",
            peer.cidr.as_deref(),
            entry.min_ipv4_prefix_length,
            "minIpv4PrefixLength",
        ),
        (
            "spec.rule.peer.ipv6Cidr",
            peer.ipv6_cidr.as_deref(),
            entry.min_ipv6_prefix_length,
            "minIpv6PrefixLength",
        ),
    ];
    for (field, cidr, min, key) in cidrs {
        let Some(cidr) = cidr else { continue };
        let Some(length) = prefix_length(cidr) else {
            continue;
        };
        if length == 0 {
            if !entry.allow_world_open.contains(&rule.direction) {
                return Err(Violation {
                    field,
                    message: format!(
                        "{cidr} opens the group to the whole Internet, and {} does not list {}",
                        at("allowWorldOpen"),
                        direction_name(rule.direction)
                    ),
                });
            }
        } else if let Some(min) = min
            && length < min
        {
            return Err(Violation {
                field,
                message: format!(
                    "{cidr} is wider than /{min}, the shortest prefix {} allows",
                    at(key)
                ),
            });
        }
    }
    let cross = [
        ("spec.rule.peer.ownerAccount", peer.owner_account.is_some()),
        ("spec.rule.peer.ownerId", peer.owner_id.is_some()),
    ];
    if let Some((field, _)) = cross.into_iter().find(|(_, set)| *set)
        && !entry.allow_cross_account_peers
    {
        return Err(Violation {
            field,
            message: format!(
                "a security group of another account is refused: {} is not set",
                at("allowCrossAccountPeers")
            ),
        });
    }
    Ok(())
}

fn direction_name(d: Direction) -> &'static str {
    match d {
        Direction::Ingress => "Ingress",
        Direction::Egress => "Egress",
    }
}

/// The prefix length of a CIDR (the schema admits only well-formed ones).
fn prefix_length(cidr: &str) -> Option<u8> {
    cidr.rsplit_once('/')?.1.parse().ok()
}

/// How many rules among `all` count against `rule`'s `maxRules` and are
/// older than it: same namespace and config, `Present`, not being deleted;
/// ordered by creation time, then name. The oldest rules keep their place,
/// so a limit lowered later refuses the newest ones.
pub fn rank<'a>(
    rule: &SecurityGroupRule,
    all: impl IntoIterator<Item = &'a SecurityGroupRule>,
) -> usize {
    let key = |r: &SecurityGroupRule| {
        (
            r.metadata.creation_timestamp.as_ref().map(|t| t.0),
            r.metadata.name.clone().unwrap_or_default(),
        )
    };
    let own = key(rule);
    all.into_iter()
        .filter(|other| {
            other.metadata.namespace == rule.metadata.namespace
                && other.spec.provider_config_ref == rule.spec.provider_config_ref
                && other.spec.ensure == Ensure::Present
                && other.metadata.deletion_timestamp.is_none()
                && key(other) < own
        })
        .count()
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn entry(extra: Value) -> NamespacePolicy {
        let mut v = json!({"name": "team-a", "namespaceSelector": {"matchLabels": {"team": "a"}}});
        v.as_object_mut()
            .expect("present")
            .extend(extra.as_object().expect("present").clone());
        serde_json::from_value(v).expect("valid entry")
    }

    fn rule_spec(extra: Value) -> RuleSpec {
        let mut v = json!({"direction": "Ingress", "protocol": "TCP",
                           "ports": {"from": 443, "to": 443}, "peer": {"cidr": "10.1.0.0/16"}});
        v.as_object_mut()
            .expect("present")
            .extend(extra.as_object().expect("present").clone());
        serde_json::from_value(v).expect("valid rule")
    }

    fn checked(entry: &NamespacePolicy, rule: &RuleSpec) -> Result<(), Violation> {
        check(
            "shared",
            entry,
            &Subject {
                rule,
                security_group_id: "sg-1",
                region: "cn-hangzhou",
                rank: 0,
            },
        )
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn no_policies_govern_nothing() {
        assert_eq!(governing("shared", None, "a", &labels(&[])), Ok(None));
    }

    #[test]
    fn the_first_selecting_entry_governs_and_an_unselected_namespace_is_refused() {
        let policies = [
            entry(json!({})),
            entry(json!({"name": "rest", "namespaceSelector": {}})),
        ];
        let a = governing("shared", Some(&policies), "a", &labels(&[("team", "a")]));
        assert_eq!(a.expect("present").map(|e| e.name.as_str()), Some("team-a"));
        let b = governing("shared", Some(&policies), "b", &labels(&[("team", "b")]));
        assert_eq!(b.expect("present").map(|e| e.name.as_str()), Some("rest"));

        let only_a = [entry(json!({}))];
        let refused = governing("shared", Some(&only_a), "b", &labels(&[("team", "b")]))
            .expect_err("refused");
        assert_eq!(refused.field, "metadata.namespace");
        assert!(
            refused
                .message
                .contains("spec.policies selects namespace b"),
            "{refused}"
        );
    }

    #[test]
    fn an_invalid_selector_is_named() {
        let bad = [entry(json!({"namespaceSelector": {"matchExpressions": [
            {"key": "team", "operator": "Nearly", "values": ["x"]}]}}))];
        let e =
            governing("shared", Some(&bad), "a", &labels(&[("team", "a")])).expect_err("refused");
        assert!(
            e.message
                .contains("spec.policies[team-a].namespaceSelector"),
            "{e}"
        );
    }

    #[test]
    fn an_empty_entry_allows_an_ordinary_rule() {
        assert_eq!(checked(&entry(json!({})), &rule_spec(json!({}))), Ok(()));
    }

    #[test]
    fn regions_outside_the_list_are_refused() {
        let e = entry(json!({"regions": ["cn-beijing"]}));
        let v = checked(&e, &rule_spec(json!({}))).expect_err("refused");
        assert_eq!(v.field, "spec.region");
        assert!(
            v.message
                .contains("ProviderConfig shared spec.policies[team-a].regions"),
            "{v}"
        );
        let ok = entry(json!({"regions": ["cn-beijing", "cn-hangzhou"]}));
        assert_eq!(checked(&ok, &rule_spec(json!({}))), Ok(()));
    }

    #[test]
    fn groups_outside_the_list_are_refused() {
        let e = entry(json!({"securityGroupIds": ["sg-2"]}));
        let v = checked(&e, &rule_spec(json!({}))).expect_err("refused");
        assert_eq!(v.field, "spec.securityGroupId");
        assert!(
            v.message
                .contains("spec.policies[team-a].securityGroupIds (sg-2)"),
            "{v}"
        );
        assert_eq!(
            checked(
                &entry(json!({"securityGroupIds": ["sg-1"]})),
                &rule_spec(json!({}))
            ),
            Ok(())
        );
    }

    #[test]
    fn world_open_peers_need_their_direction_allowed() {
        let v4 = rule_spec(json!({"peer": {"cidr": "0.0.0.0/0"}}));
        let v6 = rule_spec(json!({"peer": {"ipv6Cidr": "::/0"}}));
        let refused = checked(&entry(json!({})), &v4).expect_err("refused");
        assert_eq!(refused.field, "spec.rule.peer.cidr");
        assert!(
            refused
                .message
                .contains("allowWorldOpen does not list Ingress"),
            "{refused}"
        );
        assert_eq!(
            checked(&entry(json!({})), &v6).expect_err("refused").field,
            "spec.rule.peer.ipv6Cidr"
        );
        let egress_only = entry(json!({"allowWorldOpen": ["Egress"]}));
        assert!(checked(&egress_only, &v4).is_err());
        let egress = rule_spec(json!({"direction": "Egress", "peer": {"cidr": "0.0.0.0/0"}}));
        assert_eq!(checked(&egress_only, &egress), Ok(()));
        // Allowed world-open peers are not also held to the minimum prefix.
        let both = entry(json!({"allowWorldOpen": ["Ingress"], "minIpv4PrefixLength": 24}));
        assert_eq!(checked(&both, &v4), Ok(()));
    }

    #[test]
    fn peers_wider_than_the_minimum_prefix_are_refused() {
        let e = entry(json!({"minIpv4PrefixLength": 24, "minIpv6PrefixLength": 64}));
        let v = checked(&e, &rule_spec(json!({}))).expect_err("refused");
        assert_eq!(v.field, "spec.rule.peer.cidr");
        assert!(v.message.contains("10.1.0.0/16 is wider than /24"), "{v}");
        assert!(v.message.contains("minIpv4PrefixLength"), "{v}");
        let narrow = rule_spec(json!({"peer": {"cidr": "10.1.2.0/24"}}));
        assert_eq!(checked(&e, &narrow), Ok(()));
        let wide6 = rule_spec(json!({"peer": {"ipv6Cidr": "2001:db8::/32"}}));
        assert_eq!(
            checked(&e, &wide6).expect_err("refused").field,
            "spec.rule.peer.ipv6Cidr"
        );
        let narrow6 = rule_spec(json!({"peer": {"ipv6Cidr": "2001:db8::/64"}}));
        assert_eq!(checked(&e, &narrow6), Ok(()));
    }

    #[test]
    fn cross_account_peers_need_allowing() {
        for (key, field) in [
            ("ownerAccount", "spec.rule.peer.ownerAccount"),
            ("ownerId", "spec.rule.peer.ownerId"),
        ] {
            let r = rule_spec(json!({"peer": {"securityGroupId": "sg-9", key: "1234"}}));
            let v = checked(&entry(json!({})), &r).expect_err("refused");
            assert_eq!(v.field, field);
            assert!(v.message.contains("allowCrossAccountPeers"), "{v}");
            assert_eq!(
                checked(&entry(json!({"allowCrossAccountPeers": true})), &r),
                Ok(())
            );
        }
        let same_account = rule_spec(json!({"peer": {"securityGroupId": "sg-9"}}));
        assert_eq!(checked(&entry(json!({})), &same_account), Ok(()));
    }

    #[test]
    fn drop_needs_allowing() {
        let r = rule_spec(json!({"policy": "Drop"}));
        let v = checked(&entry(json!({})), &r).expect_err("refused");
        assert_eq!(v.field, "spec.rule.policy");
        assert!(v.message.contains("spec.policies[team-a].allowDrop"), "{v}");
        assert_eq!(checked(&entry(json!({"allowDrop": true})), &r), Ok(()));
        let accept = rule_spec(json!({"policy": "Accept"}));
        assert_eq!(checked(&entry(json!({})), &accept), Ok(()));
    }

    #[test]
    fn rules_beyond_the_limit_are_refused() {
        let e = entry(json!({"maxRules": 2}));
        let r = rule_spec(json!({}));
        let at = |rank| {
            check(
                "shared",
                &e,
                &Subject {
                    rule: &r,
                    security_group_id: "sg-1",
                    region: "cn-hangzhou",
                    rank,
                },
            )
        };
        assert_eq!(at(1), Ok(()));
        let v = at(2).expect_err("refused");
        assert!(v.message.contains("spec.policies[team-a].maxRules"), "{v}");
        let none = entry(json!({"maxRules": 0}));
        assert!(checked(&none, &r).is_err());
    }

    fn sgr(name: &str, ns: &str, created: &str, extra: Value) -> SecurityGroupRule {
        let mut v = json!({
            "apiVersion": "secgroup.dev/v1alpha1", "kind": "SecurityGroupRule",
            "metadata": {"name": name, "namespace": ns, "creationTimestamp": created},
            "spec": {"providerConfigRef": {"name": "shared"}, "securityGroupId": "sg-1",
                     "rule": {"direction": "Ingress", "protocol": "TCP", "peer": {"cidr": "10.0.0.0/8"}}},
        });
        v.as_object_mut()
            .expect("present")
            .extend(extra.as_object().expect("present").clone());
        serde_json::from_value(v).expect("valid rule")
    }

    #[test]
    fn rank_counts_older_present_rules_of_the_same_namespace_and_config() {
        let t = |s| format!("2026-01-01T00:00:0{s}Z");
        let me = sgr("m", "a", &t(5), json!({}));
        let mut all = vec![
            sgr("old", "a", &t(1), json!({})),
            sgr("a-same-time", "a", &t(5), json!({})),
            me.clone(),
            sgr("newer", "a", &t(7), json!({})),
            sgr("other-ns", "b", &t(1), json!({})),
            sgr(
                "absent",
                "a",
                &t(1),
                json!({"spec": {"providerConfigRef": {"name": "shared"},
                "securityGroupId": "sg-1", "ensure": "Absent",
                "rule": {"direction": "Ingress", "protocol": "TCP", "peer": {"cidr": "10.0.0.0/8"}}}}),
            ),
            sgr(
                "other-config",
                "a",
                &t(1),
                json!({"spec": {"providerConfigRef": {"name": "x"},
                "securityGroupId": "sg-1",
                "rule": {"direction": "Ingress", "protocol": "TCP", "peer": {"cidr": "10.0.0.0/8"}}}}),
            ),
        ];
        assert_eq!(rank(&me, &all), 2);
        let mut deleting = sgr("deleting", "a", &t(1), json!({}));
        deleting.metadata.deletion_timestamp = me.metadata.creation_timestamp.clone();
        all.push(deleting);
        assert_eq!(rank(&me, &all), 2);
    }
}
