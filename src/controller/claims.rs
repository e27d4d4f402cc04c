//! Duplicate claims: two objects declaring one cloud rule (the same
//! provider identity in the same ProviderConfig, region and group). The
//! younger one (creationTimestamp, then UID) waits, without calling the
//! provider, until the older one goes. Pure: reads objects from the cache.
//!
//! On Baidu the ownership mark is part of the rule's identity, so two
//! objects never claim one rule there; on Alibaba and Apsara Stack, whose
//! identity leaves the description out, they can.

use std::sync::Arc;

use kube::{Resource, ResourceExt};

use super::{convert, ownership::Mark};
use crate::{
    api::{SecurityGroupRule, rule::Ensure},
    provider::{ProviderKind, Rule},
};

/// Where a rule lives, as the spec says: ProviderConfig, region, group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Place<'a> {
    pub config: &'a str,
    pub region: &'a str,
    pub group: &'a str,
}

impl<'a> Place<'a> {
    pub fn of(object: &'a SecurityGroupRule, default_region: &'a str) -> Self {
        Self {
            config: &object.spec.provider_config_ref.name,
            region: object.spec.region.as_deref().unwrap_or(default_region),
            group: &object.spec.security_group_id,
        }
    }
}

/// Whether `a` came before `b`: created earlier, or at the same second with
/// the smaller UID, so exactly one of two objects is the elder.
pub fn older(a: &SecurityGroupRule, b: &SecurityGroupRule) -> bool {
    let key = |o: &SecurityGroupRule| {
        (
            o.meta().creation_timestamp.as_ref().map(|t| t.0),
            o.meta().uid.clone().unwrap_or_default(),
        )
    };
    key(a) < key(b)
}

/// The oldest other object that declares the same cloud rule as `me`
/// (`mine`, marked) in the same place, if it is older than `me`. Objects
/// being deleted or declaring `Absent` claim nothing.
pub fn elder<'a>(
    kind: ProviderKind,
    me: &SecurityGroupRule,
    mine: &Rule,
    default_region: &str,
    others: &'a [Arc<SecurityGroupRule>],
) -> Option<&'a SecurityGroupRule> {
    let place = Place::of(me, default_region);
    others
        .iter()
        .map(AsRef::as_ref)
        .filter(|o| o.meta().uid != me.meta().uid && older(o, me))
        .filter(|o| o.spec.ensure == Ensure::Present && o.meta().deletion_timestamp.is_none())
        .filter(|o| Place::of(o, default_region) == place)
        .filter(|o| {
            convert::rule(&o.spec.rule, kind).is_ok_and(|theirs| {
                let mark = Mark::of_uid(o.meta().uid.as_deref().unwrap_or_default());
                kind.same_rule(mine, &mark.on(&theirs))
            })
        })
        .reduce(|a, b| if older(b, a) { b } else { a })
}

/// What the younger object says: the elder's name only when it is in the
/// same namespace, as other namespaces' objects are not the reader's to see.
pub fn message(me: &SecurityGroupRule, elder: &SecurityGroupRule) -> String {
    let holder = if elder.namespace() == me.namespace() {
        format!("SecurityGroupRule {}", elder.name_any())
    } else {
        "a SecurityGroupRule in another namespace".to_owned()
    };
    format!(
        "{holder} already declares this rule in security group {}; this object waits, calling nothing, \
         until that one is deleted or changed",
        me.spec.security_group_id
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn object(ns: &str, name: &str, uid: &str, created: &str, port: u16) -> Arc<SecurityGroupRule> {
        Arc::new(
            serde_json::from_value(json!({
                "apiVersion": "secgroup.dev/v1alpha1", "kind": "SecurityGroupRule",
                "metadata": {"name": name, "namespace": ns, "uid": uid,
                             "creationTimestamp": created},
                "spec": {"providerConfigRef": {"name": "cloud"}, "securityGroupId": "sg-1",
                         "rule": {"direction": "Ingress", "protocol": "TCP",
                                  "ports": {"from": port, "to": port},
                                  "peer": {"cidr": "10.0.0.0/8"}, "description": name}},
            }))
            .expect("valid rule"),
        )
    }

    fn marked(o: &SecurityGroupRule, kind: ProviderKind) -> Rule {
        let rule = convert::rule(&o.spec.rule, kind).expect("supported");
        Mark::of_uid(o.meta().uid.as_deref().unwrap_or_default()).on(&rule)
    }

    fn elder_of(
        me: &Arc<SecurityGroupRule>,
        all: &[Arc<SecurityGroupRule>],
        kind: ProviderKind,
    ) -> Option<String> {
        elder(kind, me, &marked(me, kind), "cn-hangzhou", all).map(ResourceExt::name_any)
    }

    #[test]
    fn the_younger_of_two_claimants_waits_for_the_elder() {
        let a = object("team-a", "a", "uid-a", "2026-01-01T00:00:00Z", 443);
        let b = object("team-b", "b", "uid-b", "2026-01-02T00:00:00Z", 443);
        let all = [a.clone(), b.clone()];
        assert_eq!(
            elder_of(&b, &all, ProviderKind::Alibaba).as_deref(),
            Some("a")
        );
        assert_eq!(elder_of(&a, &all, ProviderKind::Alibaba), None);
    }

    /// Created in the same second: the UID decides, the same way for both.
    #[test]
    fn the_uid_breaks_a_tie() {
        let a = object("team", "a", "uid-2", "2026-01-01T00:00:00Z", 443);
        let b = object("team", "b", "uid-1", "2026-01-01T00:00:00Z", 443);
        let all = [a.clone(), b.clone()];
        assert_eq!(
            elder_of(&a, &all, ProviderKind::Alibaba).as_deref(),
            Some("b")
        );
        assert_eq!(elder_of(&b, &all, ProviderKind::Alibaba), None);
    }

    #[test]
    fn other_rules_places_and_leaving_objects_claim_nothing() {
        let me = object("team", "me", "uid-z", "2026-01-02T00:00:00Z", 443);
        let other_port = object("team", "p", "uid-1", "2026-01-01T00:00:00Z", 80);
        let mut other_group = (*object("team", "g", "uid-2", "2026-01-01T00:00:00Z", 443)).clone();
        other_group.spec.security_group_id = "sg-2".into();
        let mut absent = (*object("team", "x", "uid-3", "2026-01-01T00:00:00Z", 443)).clone();
        absent.spec.ensure = Ensure::Absent;
        let all = [
            me.clone(),
            other_port,
            Arc::new(other_group),
            Arc::new(absent),
        ];
        assert_eq!(elder_of(&me, &all, ProviderKind::Alibaba), None);
    }

    /// On Baidu the mark (in the remark) makes each object's rule distinct.
    #[test]
    fn on_baidu_objects_never_claim_one_rule() {
        let a = object("team", "a", "uid-a", "2026-01-01T00:00:00Z", 443);
        let b = object("team", "b", "uid-b", "2026-01-02T00:00:00Z", 443);
        let all = [a, b.clone()];
        assert_eq!(elder_of(&b, &all, ProviderKind::Baidu), None);
    }

    #[test]
    fn the_elder_is_named_only_within_the_namespace() {
        let a = object("team-a", "holder", "uid-a", "2026-01-01T00:00:00Z", 443);
        let b = object("team-b", "b", "uid-b", "2026-01-02T00:00:00Z", 443);
        let c = object("team-a", "c", "uid-c", "2026-01-02T00:00:00Z", 443);
        let across = message(&b, &a);
        assert!(
            !across.contains("holder") && !across.contains("team-a"),
            "{across}"
        );
        assert!(across.contains("another namespace"), "{across}");
        assert!(message(&c, &a).contains("SecurityGroupRule holder"));
    }
}
