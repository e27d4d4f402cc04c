//! Security groups and their rules, per provider and region. Each rule is
//! kept in its provider's own wire form ([`WireRule`]) and compared by that
//! provider's documented identity.

use std::{
    cmp::Ordering,
    collections::BTreeMap,
    fmt,
    path::Path,
    time::{Duration, Instant},
};

use rand::{Rng, RngCore};
use serde::{Deserialize, Serialize};

use super::{
    bcc_rule::BccRule,
    cloud::Cloud,
    ecs_rule::{EcsRule, Network},
    rule_json::{Direction, RuleJson},
};

/// How long a removed rule is remembered for describe lag.
const REMOVED_KEPT: Duration = Duration::from_secs(600);

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct GroupKey {
    pub provider: Cloud,
    pub region: String,
    pub id: String,
}

impl GroupKey {
    fn sort_key(&self) -> (&'static str, &str, &str) {
        (self.provider.name(), &self.region, &self.id)
    }
}

impl Ord for GroupKey {
    fn cmp(&self, other: &Self) -> Ordering {
        self.sort_key().cmp(&other.sort_key())
    }
}

impl PartialOrd for GroupKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for GroupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.provider, self.region, self.id)
    }
}

#[derive(Clone, Debug, Default)]
pub struct Group {
    pub name: String,
    pub created_time: String,
    /// Baidu's `sgVersion`: raised on every change of the rule set.
    pub version: u64,
    pub rules: Vec<StoredRule>,
    pub kind: GroupKind,
    /// At most this many rules (ECS `AuthorizationLimitExceed` beyond); none: no limit.
    pub rule_quota: Option<usize>,
    /// Rules removed lately and when, for describe lag.
    removed: Vec<(StoredRule, Instant)>,
}

/// What an ECS group is: its network type and whether it is an enterprise group.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupKind {
    #[serde(default)]
    pub network: Network,
    #[serde(default)]
    pub enterprise: bool,
}

/// A rule in its provider's wire form.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WireRule {
    Ecs(EcsRule),
    Bcc(BccRule),
}

impl WireRule {
    /// The provider's identity; rules of different providers never match.
    pub fn same(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Ecs(a), Self::Ecs(b)) => a.same(b),
            (Self::Bcc(a), Self::Bcc(b)) => a.same(b),
            _ => false,
        }
    }

    pub fn direction(&self) -> Option<Direction> {
        match self {
            Self::Ecs(rule) => Some(rule.direction),
            Self::Bcc(rule) => match rule.direction.as_str() {
                "ingress" => Some(Direction::Ingress),
                "egress" => Some(Direction::Egress),
                _ => None,
            },
        }
    }

    /// A rule of the admin API in `provider`'s form.
    pub fn from_json(provider: Cloud, json: &RuleJson) -> Result<Self, String> {
        let declared = json.declared()?;
        Ok(match provider {
            Cloud::Baidu => Self::Bcc(BccRule::from_declared(&declared)),
            Cloud::Alibaba | Cloud::Apsara => Self::Ecs(EcsRule::from_declared(&declared)),
        })
    }

    pub fn to_json(&self) -> RuleJson {
        match self {
            Self::Ecs(rule) => rule.to_json(),
            Self::Bcc(rule) => rule.to_json(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRule {
    pub id: String,
    pub rule: WireRule,
    pub created_time: String,
    /// When it was added in this process (none: loaded, long visible).
    added: Option<Instant>,
}

impl StoredRule {
    fn visible_after(&self, lag: Duration) -> bool {
        self.added.is_none_or(|t| t.elapsed() >= lag)
    }
}

/// All groups of all providers.
#[derive(Debug, Default)]
pub struct Store {
    groups: BTreeMap<GroupKey, Group>,
}

impl Store {
    pub fn groups(&self) -> impl Iterator<Item = (&GroupKey, &Group)> {
        self.groups.iter()
    }

    pub fn get(&self, key: &GroupKey) -> Option<&Group> {
        self.groups.get(key)
    }

    pub fn get_mut(&mut self, key: &GroupKey) -> Option<&mut Group> {
        self.groups.get_mut(key)
    }

    /// Creates an empty group; `false` if it exists already.
    pub fn create(&mut self, key: GroupKey, name: String) -> bool {
        if self.groups.contains_key(&key) {
            return false;
        }
        let group = Group {
            name,
            created_time: now_rfc3339(),
            version: 1,
            ..Group::default()
        };
        self.groups.insert(key, group);
        true
    }

    pub fn remove(&mut self, key: &GroupKey) -> bool {
        self.groups.remove(key).is_some()
    }

    /// A group a provider call names, created empty first if `auto_create`
    /// says groups spring into being on first use.
    pub fn group_for_call(&mut self, key: &GroupKey, auto_create: bool) -> Option<&mut Group> {
        if auto_create && !self.groups.contains_key(key) {
            self.create(key.clone(), key.id.clone());
        }
        self.groups.get_mut(key)
    }

    /// Finds a group by id alone, in any region (Baidu requests do not name one).
    pub fn find_by_id(&self, provider: Cloud, id: &str) -> Option<GroupKey> {
        self.groups
            .keys()
            .find(|k| k.provider == provider && k.id == id)
            .cloned()
    }

    /// The group holding the rule with this id.
    pub fn find_rule(&self, provider: Cloud, rule_id: &str) -> Option<GroupKey> {
        self.groups
            .iter()
            .find(|(k, g)| k.provider == provider && g.rules.iter().any(|r| r.id == rule_id))
            .map(|(k, _)| k.clone())
    }

    fn rule_id_taken(&self, provider: Cloud, id: &str) -> bool {
        self.find_rule(provider, id).is_some()
    }

    /// A fresh rule id in the provider's format: Alibaba and Apsara `sgr-` and
    /// 20 characters, Baidu `r-` and 12.
    pub fn new_rule_id(&self, provider: Cloud, rng: &mut impl RngCore) -> String {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        let (prefix, len) = match provider {
            Cloud::Baidu => ("r-", 12),
            Cloud::Alibaba | Cloud::Apsara => ("sgr-", 20),
        };
        loop {
            let tail: String = (0..len)
                .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
                .collect();
            let id = format!("{prefix}{tail}");
            if !self.rule_id_taken(provider, &id) {
                return id;
            }
        }
    }

    pub fn to_file(&self) -> Vec<GroupFile> {
        self.groups
            .iter()
            .map(|(key, group)| GroupFile {
                provider: key.provider,
                region: key.region.clone(),
                id: key.id.clone(),
                name: group.name.clone(),
                created_time: group.created_time.clone(),
                version: group.version,
                kind: group.kind,
                rule_quota: group.rule_quota,
                rules: group
                    .rules
                    .iter()
                    .map(|r| RuleFile {
                        rule_id: r.id.clone(),
                        created_time: r.created_time.clone(),
                        wire: r.rule.clone(),
                    })
                    .collect(),
            })
            .collect()
    }

    pub fn from_file(groups: Vec<GroupFile>) -> Self {
        let mut store = Self::default();
        for g in groups {
            let rules = g
                .rules
                .into_iter()
                .map(|r| StoredRule {
                    id: r.rule_id,
                    rule: r.wire,
                    created_time: r.created_time,
                    added: None,
                })
                .collect();
            let key = GroupKey {
                provider: g.provider,
                region: g.region,
                id: g.id,
            };
            let group = Group {
                name: g.name,
                created_time: g.created_time,
                version: g.version,
                rules,
                kind: g.kind,
                rule_quota: g.rule_quota,
                removed: Vec::new(),
            };
            store.groups.insert(key, group);
        }
        store
    }
}

impl Group {
    /// The stored rule that is, by the provider's identity, `rule`.
    pub fn find_same(&self, rule: &WireRule) -> Option<usize> {
        self.rules.iter().position(|r| r.rule.same(rule))
    }

    pub fn add(&mut self, id: String, rule: WireRule) {
        self.rules.push(StoredRule {
            id,
            rule,
            created_time: now_rfc3339(),
            added: Some(Instant::now()),
        });
        self.version += 1;
    }

    /// Changes the rule at `index` in place: same id, same creation time.
    pub fn replace_at(&mut self, index: usize, rule: WireRule) {
        self.rules[index].rule = rule;
        self.version += 1;
    }

    pub fn remove_at(&mut self, index: usize) -> StoredRule {
        self.version += 1;
        let removed = self.rules.remove(index);
        self.removed.retain(|(_, at)| at.elapsed() < REMOVED_KEPT);
        self.removed.push((removed.clone(), Instant::now()));
        removed
    }

    /// The rules a describe sees when changes take `lag` to show: rules
    /// added within it are not there yet, rules removed within it still are.
    pub fn described(&self, lag: Duration) -> Vec<&StoredRule> {
        if lag.is_zero() {
            return self.rules.iter().collect();
        }
        let mut seen: Vec<&StoredRule> =
            self.rules.iter().filter(|r| r.visible_after(lag)).collect();
        seen.extend(
            self.removed
                .iter()
                .filter(|(_, at)| at.elapsed() < lag)
                .map(|(rule, _)| rule),
        );
        seen
    }
}

/// A group as the state file and the admin API write it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupFile {
    pub provider: Cloud,
    pub region: String,
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub created_time: String,
    #[serde(default = "first_version")]
    pub version: u64,
    #[serde(default, flatten)]
    pub kind: GroupKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_quota: Option<usize>,
    #[serde(default)]
    pub rules: Vec<RuleFile>,
}

fn first_version() -> u64 {
    1
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleFile {
    pub rule_id: String,
    #[serde(default)]
    pub created_time: String,
    pub wire: WireRule,
}

/// UTC now as the providers print it: `2025-01-02T03:04:05Z`.
pub fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Writes `contents` to `path` through a temporary file and a rename, so a
/// crash never leaves a half-written state file behind.
pub fn write_atomically(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, contents)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use rand::{SeedableRng, rngs::StdRng};

    use super::*;

    fn ssh(provider: Cloud, description: &str) -> WireRule {
        let json: RuleJson = serde_json::from_value(serde_json::json!({
            "direction": "Ingress", "protocol": "TCP", "ports": {"from": 22, "to": 22},
            "peer": {"cidr": "10.0.0.0/8"}, "description": description,
        }))
        .expect("valid");
        WireRule::from_json(provider, &json).expect("valid")
    }

    fn key(provider: Cloud) -> GroupKey {
        GroupKey {
            provider,
            region: "cn-hangzhou".into(),
            id: "sg-1".into(),
        }
    }

    #[test]
    fn identity_follows_the_provider() {
        let mut store = Store::default();
        for provider in [Cloud::Alibaba, Cloud::Baidu] {
            store.create(key(provider), "web".into());
            store
                .get_mut(&key(provider))
                .expect("created")
                .add("r1".into(), ssh(provider, "old"));
        }
        let alibaba = store.get(&key(Cloud::Alibaba)).expect("exists");
        assert_eq!(alibaba.find_same(&ssh(Cloud::Alibaba, "new")), Some(0));
        let baidu = store.get(&key(Cloud::Baidu)).expect("exists");
        assert_eq!(baidu.find_same(&ssh(Cloud::Baidu, "new")), None);
        assert_eq!(baidu.find_same(&ssh(Cloud::Baidu, "old")), Some(0));
        assert_eq!(baidu.find_same(&ssh(Cloud::Alibaba, "old")), None);
    }

    #[test]
    fn rule_ids_have_the_provider_format_and_are_reproducible() {
        let store = Store::default();
        let id = |provider, seed| store.new_rule_id(provider, &mut StdRng::seed_from_u64(seed));
        assert!(id(Cloud::Alibaba, 1).starts_with("sgr-"));
        assert_eq!(id(Cloud::Alibaba, 1).len(), 24);
        assert!(id(Cloud::Baidu, 1).starts_with("r-"));
        assert_eq!(id(Cloud::Baidu, 7), id(Cloud::Baidu, 7));
    }

    #[test]
    fn the_state_file_round_trips() {
        let mut store = Store::default();
        store.create(key(Cloud::Apsara), "db".into());
        let group = store.get_mut(&key(Cloud::Apsara)).expect("created");
        group.add("sgr-1".into(), ssh(Cloud::Apsara, "x"));
        group.kind.network = Network::Classic;
        group.rule_quota = Some(3);
        let text = serde_json::to_string(&store.to_file()).expect("serialises");
        let back: Vec<GroupFile> = serde_json::from_str(&text).expect("parses");
        let again = Store::from_file(back);
        let group = again.get(&key(Cloud::Apsara)).expect("kept");
        assert_eq!(group.rules[0].rule, ssh(Cloud::Apsara, "x"));
        assert_eq!(group.version, 2);
        assert_eq!(
            (group.kind.network, group.rule_quota),
            (Network::Classic, Some(3))
        );
    }

    #[test]
    fn with_lag_describe_sees_the_rules_of_a_moment_ago() {
        let mut group = Group::default();
        group.add("sgr-old".into(), ssh(Cloud::Alibaba, "old"));
        group.rules[0].added = None;
        group.add("sgr-new".into(), ssh(Cloud::Alibaba, "new"));
        group.remove_at(0);
        let ids =
            |lag| -> Vec<String> { group.described(lag).iter().map(|r| r.id.clone()).collect() };
        assert_eq!(ids(Duration::ZERO), ["sgr-new"]);
        assert_eq!(ids(Duration::from_secs(60)), ["sgr-old"]);
    }
}
