//! Which rules declare each security group, kept from the rules watch next
//! to its cache. Duplicate claims are looked for among the rules of one
//! group, not among every rule the operator watches: a scan of all of them
//! on every pass made a mass create (and delete) cost quadratic CPU.
//!
//! Compact on purpose: one `namespace/name` string per rule, shared by both
//! maps, and one key per group, shared by its rules.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, PoisonError},
};

use kube::runtime::{reflector::ObjectRef, watcher::Event};

use crate::api::SecurityGroupRule;

#[derive(Default)]
pub struct GroupMembers(Mutex<Members>);

#[derive(Default)]
struct Members {
    /// Each rule's group.
    group_of: HashMap<Arc<str>, Arc<str>>,
    /// Each group's rules.
    rules_of: HashMap<Arc<str>, HashSet<Arc<str>>>,
    /// The list being read after a (re)start of the watch.
    relisting: Vec<(Arc<str>, String)>,
}

impl GroupMembers {
    /// Folds one event of the rules watch in, after the cache took it.
    pub fn fold(&self, event: &Event<SecurityGroupRule>) {
        let mut m = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match event {
            Event::Init => m.relisting.clear(),
            Event::InitApply(rule) => {
                let entry = (rule_key(rule), group_key(rule));
                m.relisting.push(entry);
            }
            Event::InitDone => {
                let listed = std::mem::take(&mut m.relisting);
                m.group_of.clear();
                m.rules_of.clear();
                for (rule, group) in listed {
                    m.insert(rule, &group);
                }
            }
            Event::Apply(rule) => {
                let key = rule_key(rule);
                m.remove(&key);
                m.insert(key, &group_key(rule));
            }
            Event::Delete(rule) => m.remove(&rule_key(rule)),
        }
    }

    /// The rules that name `group` of `config`.
    pub fn of_group(&self, config: &str, group: &str) -> Vec<ObjectRef<SecurityGroupRule>> {
        let m = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        m.rules_of
            .get(join(config, group).as_str())
            .into_iter()
            .flatten()
            .filter_map(|rule| {
                let (namespace, name) = rule.split_once('/')?;
                Some(ObjectRef::new(name).within(namespace))
            })
            .collect()
    }
}

impl Members {
    fn insert(&mut self, rule: Arc<str>, group: &str) {
        // The group's one shared key, if it has rules already.
        let group = match self.rules_of.get_key_value(group) {
            Some((shared, _)) => shared.clone(),
            None => Arc::from(group),
        };
        self.rules_of
            .entry(group.clone())
            .or_default()
            .insert(rule.clone());
        self.group_of.insert(rule, group);
    }

    fn remove(&mut self, rule: &str) {
        let Some(group) = self.group_of.remove(rule) else {
            return;
        };
        if let Some(rules) = self.rules_of.get_mut(&group) {
            rules.remove(rule);
            if rules.is_empty() {
                self.rules_of.remove(&group);
            }
        }
    }
}

fn rule_key(rule: &SecurityGroupRule) -> Arc<str> {
    let namespace = rule.metadata.namespace.as_deref().unwrap_or_default();
    let name = rule.metadata.name.as_deref().unwrap_or_default();
    Arc::from(format!("{namespace}/{name}"))
}

fn group_key(rule: &SecurityGroupRule) -> String {
    join(
        &rule.spec.provider_config_ref.name,
        &rule.spec.security_group_id,
    )
}

/// A ProviderConfig name and a group id, which hold no newline.
fn join(config: &str, group: &str) -> String {
    format!("{config}\n{group}")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn rule(namespace: &str, name: &str, config: &str, group: &str) -> SecurityGroupRule {
        serde_json::from_value(json!({
            "apiVersion": "secgroup.dev/v1alpha1", "kind": "SecurityGroupRule",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"providerConfigRef": {"name": config}, "securityGroupId": group,
                     "rule": {"direction": "Ingress", "protocol": "TCP",
                              "peer": {"cidr": "10.0.0.0/8"}}},
        }))
        .expect("valid rule")
    }

    fn names(members: &GroupMembers, config: &str, group: &str) -> Vec<String> {
        let mut names: Vec<String> = members
            .of_group(config, group)
            .into_iter()
            .map(|r| format!("{}/{}", r.namespace.unwrap_or_default(), r.name))
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_group_lists_the_rules_naming_it_in_that_config() {
        let members = GroupMembers::default();
        for event in [
            Event::Init,
            Event::InitApply(rule("a", "web", "cloud", "sg-1")),
            Event::InitApply(rule("b", "db", "cloud", "sg-1")),
            Event::InitApply(rule("a", "other", "cloud", "sg-2")),
            Event::InitApply(rule("a", "elsewhere", "other-cloud", "sg-1")),
            Event::InitDone,
        ] {
            members.fold(&event);
        }
        assert_eq!(names(&members, "cloud", "sg-1"), ["a/web", "b/db"]);
        assert_eq!(names(&members, "cloud", "sg-2"), ["a/other"]);
        assert!(names(&members, "cloud", "sg-3").is_empty());
    }

    #[test]
    fn a_rule_moves_with_its_spec_and_leaves_when_deleted() {
        let members = GroupMembers::default();
        members.fold(&Event::Init);
        members.fold(&Event::InitDone);
        members.fold(&Event::Apply(rule("a", "web", "cloud", "sg-1")));
        members.fold(&Event::Apply(rule("a", "web", "cloud", "sg-2")));
        assert!(names(&members, "cloud", "sg-1").is_empty());
        assert_eq!(names(&members, "cloud", "sg-2"), ["a/web"]);
        members.fold(&Event::Delete(rule("a", "web", "cloud", "sg-2")));
        assert!(names(&members, "cloud", "sg-2").is_empty());
    }

    /// A relist replaces everything: a rule deleted while the watch was
    /// down is not listed, and so leaves.
    #[test]
    fn a_relist_replaces_what_was_known() {
        let members = GroupMembers::default();
        members.fold(&Event::Apply(rule("a", "gone", "cloud", "sg-1")));
        members.fold(&Event::Init);
        members.fold(&Event::InitApply(rule("a", "kept", "cloud", "sg-1")));
        assert_eq!(
            names(&members, "cloud", "sg-1"),
            ["a/gone"],
            "until the list ends"
        );
        members.fold(&Event::InitDone);
        assert_eq!(names(&members, "cloud", "sg-1"), ["a/kept"]);
    }
}
