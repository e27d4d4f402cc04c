//! The rules the soak declares: where each lives, how it changes, and what
//! the fake cloud must hold once the operator reports it Ready.

use secgroup_operator::{
    api::rule::RuleSpec,
    controller::{convert, ownership},
    provider::{ProviderKind, Rule},
};
use serde_json::{Value, json};

use crate::cloud::CloudRule;

/// A provider as the soak sets it up.
#[derive(Debug)]
pub struct ProviderSetup {
    /// ProviderConfig name.
    pub config: &'static str,
    /// The fake cloud's name for it.
    pub fake: &'static str,
    pub region: &'static str,
    pub kind: ProviderKind,
    pub group_prefix: &'static str,
}

/// Rules labelled `true` get the operator's finalizer at admission.
pub const ADMITTED_LABEL: &str = "secgroup-soak/admitted";

pub const PROVIDERS: [ProviderSetup; 3] = [
    ProviderSetup {
        config: "soak-alibaba",
        fake: "alibaba",
        region: "cn-hangzhou",
        kind: ProviderKind::Alibaba,
        group_prefix: "sg-soak",
    },
    ProviderSetup {
        config: "soak-apsara",
        fake: "apsara",
        region: "cn-qingdao-env17-d01",
        kind: ProviderKind::Apsara,
        group_prefix: "sg-apsoak",
    },
    ProviderSetup {
        config: "soak-baidu",
        fake: "baidu",
        region: "bj",
        kind: ProviderKind::Baidu,
        group_prefix: "g-soak",
    },
];

/// Rules per security group: groups stay small enough to describe in one page.
pub const RULES_PER_GROUP: usize = 40;

/// The group of the n-th slot of a provider.
pub fn group_id(provider: &ProviderSetup, n: usize) -> String {
    format!("{}{:04}", provider.group_prefix, n / RULES_PER_GROUP)
}

/// How the "change a field" step changes a rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// Another port: a new rule at every provider (make before break).
    Port,
    /// Another description: a new rule on Baidu (its remark is identity),
    /// the same rule on Alibaba and Apsara Stack (revoke first).
    Description,
    /// Another priority (Alibaba and Apsara Stack): the same rule, revoke first.
    Priority,
}

/// One SecurityGroupRule object of the soak. Slots never share a port or a
/// peer, so no two objects ever declare the same cloud rule.
#[derive(Clone, Debug)]
pub struct Slot {
    pub index: usize,
    pub provider: &'static ProviderSetup,
    pub group: String,
    pub name: String,
}

impl Slot {
    pub fn new(index: usize) -> Self {
        let provider = &PROVIDERS[index % PROVIDERS.len()];
        Self {
            index,
            provider,
            group: group_id(provider, index / PROVIDERS.len()),
            name: format!("r{index:05}"),
        }
    }

    /// The rule as first declared.
    pub fn initial(&self) -> RuleSpec {
        self.rule(None)
    }

    pub fn changed(&self, change: Change) -> RuleSpec {
        self.rule(Some(change))
    }

    fn rule(&self, change: Option<Change>) -> RuleSpec {
        let i = self.index;
        let port = match change {
            Some(Change::Port) => 33_000 + i,
            _ => 1_024 + i,
        };
        let mut rule = json!({
            "direction": if i % 4 == 3 { "Egress" } else { "Ingress" },
            "protocol": if i.is_multiple_of(2) { "TCP" } else { "UDP" },
            "ports": {"from": port, "to": port},
            "peer": {"cidr": format!("10.{}.{}.0/24", (i / 256) % 256, i % 256)},
            "description": format!("soak {i}"),
        });
        match change {
            Some(Change::Description) => rule["description"] = json!(format!("soak {i} changed")),
            Some(Change::Priority) => rule["priority"] = json!(7),
            _ => {}
        }
        serde_json::from_value(rule).expect("a valid rule")
    }

    /// The whole object, declaring `rule` with `ensure`. Every other rule
    /// gets its finalizer from the chart's admission policy as it is
    /// created (`ADMITTED_LABEL`), the rest from the operator: crashes hit
    /// both.
    pub fn manifest(&self, rule: &RuleSpec, ensure: &str) -> Value {
        let admitted = self.index.is_multiple_of(2).to_string();
        json!({
            "apiVersion": "secgroup.dev/v1alpha1",
            "kind": "SecurityGroupRule",
            "metadata": {"name": self.name, "labels": {ADMITTED_LABEL: admitted}},
            "spec": {"providerConfigRef": {"name": self.provider.config},
                     "securityGroupId": self.group, "ensure": ensure, "rule": rule},
        })
    }

    pub fn model(&self, rule: &RuleSpec) -> Rule {
        convert::rule(rule, self.provider.kind).expect("soak rules suit every provider")
    }

    /// Whether a cloud rule is `rule` exactly: the provider's identity, and
    /// the fields it keeps besides.
    pub fn holds(&self, cloud: &CloudRule, rule: &RuleSpec) -> bool {
        let want = self.model(rule);
        self.unmarked(cloud).is_some_and(|have| {
            self.provider.kind.same_rule(&want, &have)
                && want.priority == have.priority
                && want.description == have.description
        })
    }

    /// Whether a cloud rule is any rule this slot ever declared.
    pub fn owns(&self, cloud: &CloudRule, declared: &[RuleSpec]) -> bool {
        self.unmarked(cloud).is_some_and(|have| {
            declared
                .iter()
                .any(|r| self.provider.kind.same_rule(&self.model(r), &have))
        })
    }

    /// A cloud rule the operator created (it carries an ownership mark),
    /// with the mark taken off its description to compare it with what an
    /// object declares; `None` for a rule that anyone else created.
    fn unmarked(&self, cloud: &CloudRule) -> Option<Rule> {
        let mut rule = self.model(&cloud.rule);
        let (text, mark) = ownership::split(&rule.description);
        mark?;
        rule.description = text.to_owned();
        Some(rule)
    }
}

/// What an object declares, as far as the cloud is concerned.
#[derive(Clone, Debug, PartialEq)]
pub enum State {
    /// No object, or never acted on.
    Gone,
    Absent,
    Present(RuleSpec),
}

/// Provider calls a crash-free, fault-free operator needs to get from one
/// confirmed state to the next: authorize + describe (to learn the rule id),
/// one revoke, or both for a changed rule.
pub fn cost(from: &State, to: &State) -> u64 {
    match (from, to) {
        (State::Gone | State::Absent, State::Present(_)) => 2,
        (State::Present(_), State::Gone | State::Absent) => 1,
        (State::Present(a), State::Present(b)) if a != b => 3,
        _ => 0,
    }
}

/// Problems between what a confirmed slot declares and what its group holds.
pub fn compare(
    slot: &Slot,
    state: &State,
    declared: &[RuleSpec],
    group: &[CloudRule],
) -> Vec<String> {
    let mut problems = Vec::new();
    let mine: Vec<&CloudRule> = group.iter().filter(|c| slot.owns(c, declared)).collect();
    match state {
        State::Present(rule) => {
            let exact = mine.iter().filter(|c| slot.holds(c, rule)).count();
            if exact == 0 {
                problems.push(format!(
                    "{} is Ready as Present but its rule is missing (cloud has {} of its rules)",
                    slot.name,
                    mine.len()
                ));
            }
            if mine.len() > exact || exact > 1 {
                problems.push(format!(
                    "{} is Ready as Present, the cloud holds {} of its rules ({exact} current)",
                    slot.name,
                    mine.len()
                ));
            }
        }
        State::Absent | State::Gone => {
            if !mine.is_empty() {
                problems.push(format!(
                    "{} is {state:?}, the cloud still holds {} of its rules",
                    slot.name,
                    mine.len()
                ));
            }
        }
    }
    problems
}
