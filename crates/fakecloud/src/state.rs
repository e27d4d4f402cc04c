//! Security groups and their rules, per provider and region.
//!
//! Rule identity is the provider's own ([`ProviderKind::same_rule`]), so the
//! fake and the operator agree on what "the same rule" means by construction.

use std::{cmp::Ordering, collections::BTreeMap, fmt, path::Path};

use rand::{Rng, RngCore};
use serde::{Deserialize, Serialize};

use super::rule_json::RuleJson;
use secgroup_operator::provider::{Direction, ProviderKind, Rule};

/// Names the admin API and the state file use for each provider.
pub mod provider_name {
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    use secgroup_operator::provider::ProviderKind;

    pub fn as_str(kind: ProviderKind) -> &'static str {
        match kind {
            ProviderKind::Alibaba => "alibaba",
            ProviderKind::Apsara => "apsara",
            ProviderKind::Baidu => "baidu",
        }
    }

    pub fn parse(name: &str) -> Option<ProviderKind> {
        match name.to_ascii_lowercase().as_str() {
            "alibaba" => Some(ProviderKind::Alibaba),
            "apsara" | "apsarastack" => Some(ProviderKind::Apsara),
            "baidu" => Some(ProviderKind::Baidu),
            _ => None,
        }
    }

    pub fn serialize<S: Serializer>(kind: &ProviderKind, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(as_str(*kind))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ProviderKind, D::Error> {
        let name = String::deserialize(d)?;
        parse(&name).ok_or_else(|| D::Error::custom(format!("unknown provider {name:?}")))
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct GroupKey {
    pub provider: ProviderKind,
    pub region: String,
    pub id: String,
}

impl GroupKey {
    fn sort_key(&self) -> (&'static str, &str, &str) {
        (provider_name::as_str(self.provider), &self.region, &self.id)
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
        let provider = provider_name::as_str(self.provider);
        write!(f, "{provider}/{}/{}", self.region, self.id)
    }
}

#[derive(Clone, Debug)]
pub struct Group {
    pub name: String,
    pub created_time: String,
    /// Baidu's `sgVersion`: raised on every change of the rule set.
    pub version: u64,
    pub rules: Vec<StoredRule>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRule {
    pub id: String,
    pub rule: Rule,
    pub created_time: String,
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
            rules: Vec::new(),
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
    pub fn find_by_id(&self, provider: ProviderKind, id: &str) -> Option<GroupKey> {
        self.groups
            .keys()
            .find(|k| k.provider == provider && k.id == id)
            .cloned()
    }

    /// The group holding the rule with this id.
    pub fn find_rule(&self, provider: ProviderKind, rule_id: &str) -> Option<GroupKey> {
        self.groups
            .iter()
            .find(|(k, g)| k.provider == provider && g.rules.iter().any(|r| r.id == rule_id))
            .map(|(k, _)| k.clone())
    }

    fn rule_id_taken(&self, provider: ProviderKind, id: &str) -> bool {
        self.find_rule(provider, id).is_some()
    }

    /// A fresh rule id in the provider's format: Alibaba and Apsara `sgr-` and
    /// 20 characters, Baidu `r-` and 12.
    pub fn new_rule_id(&self, provider: ProviderKind, rng: &mut impl RngCore) -> String {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        let (prefix, len) = match provider {
            ProviderKind::Baidu => ("r-", 12),
            ProviderKind::Alibaba | ProviderKind::Apsara => ("sgr-", 20),
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
                rules: group
                    .rules
                    .iter()
                    .map(|r| RuleFile {
                        rule_id: r.id.clone(),
                        created_time: r.created_time.clone(),
                        rule: RuleJson::from(&r.rule),
                    })
                    .collect(),
            })
            .collect()
    }

    pub fn from_file(groups: Vec<GroupFile>) -> Result<Self, String> {
        let mut store = Self::default();
        for g in groups {
            let rules = g
                .rules
                .into_iter()
                .map(|r| {
                    let rule = Rule::try_from(&r.rule)
                        .map_err(|e| format!("rule {} of group {}: {e}", r.rule_id, g.id))?;
                    Ok(StoredRule {
                        id: r.rule_id,
                        rule,
                        created_time: r.created_time,
                    })
                })
                .collect::<Result<Vec<_>, String>>()?;
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
            };
            store.groups.insert(key, group);
        }
        Ok(store)
    }
}

impl Group {
    pub fn rules_in(&self, direction: Direction) -> impl Iterator<Item = &StoredRule> {
        self.rules
            .iter()
            .filter(move |r| r.rule.direction == direction)
    }

    /// The stored rule that is, by the provider's identity, `rule`.
    pub fn find_same(&self, provider: ProviderKind, rule: &Rule) -> Option<usize> {
        self.rules
            .iter()
            .position(|r| provider.same_rule(rule, &r.rule))
    }

    pub fn add(&mut self, id: String, rule: Rule) {
        self.rules.push(StoredRule {
            id,
            rule,
            created_time: now_rfc3339(),
        });
        self.version += 1;
    }

    pub fn remove_at(&mut self, index: usize) -> StoredRule {
        self.version += 1;
        self.rules.remove(index)
    }
}

/// A group as the state file and the admin API write it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupFile {
    #[serde(with = "provider_name")]
    pub provider: ProviderKind,
    pub region: String,
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub created_time: String,
    #[serde(default = "first_version")]
    pub version: u64,
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
    pub rule: RuleJson,
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
    use secgroup_operator::provider::{NicType, Peer, Policy, PortRange, Protocol};

    fn ssh(description: &str) -> Rule {
        Rule {
            direction: Direction::Ingress,
            protocol: Protocol::Tcp,
            ports: Some(PortRange { from: 22, to: 22 }),
            source_ports: None,
            peer: Peer::parse_ip("10.0.0.0/8").expect("valid"),
            policy: Policy::Accept,
            priority: 1,
            nic_type: NicType::Intranet,
            description: description.into(),
        }
    }

    fn key(provider: ProviderKind) -> GroupKey {
        GroupKey {
            provider,
            region: "cn-hangzhou".into(),
            id: "sg-1".into(),
        }
    }

    #[test]
    fn identity_follows_the_provider() {
        let mut store = Store::default();
        for provider in [ProviderKind::Alibaba, ProviderKind::Baidu] {
            store.create(key(provider), "web".into());
            store
                .get_mut(&key(provider))
                .expect("created")
                .add("r1".into(), ssh("old"));
        }
        let alibaba = store.get(&key(ProviderKind::Alibaba)).expect("exists");
        assert_eq!(
            alibaba.find_same(ProviderKind::Alibaba, &ssh("new")),
            Some(0)
        );
        let baidu = store.get(&key(ProviderKind::Baidu)).expect("exists");
        assert_eq!(baidu.find_same(ProviderKind::Baidu, &ssh("new")), None);
        assert_eq!(baidu.find_same(ProviderKind::Baidu, &ssh("old")), Some(0));
    }

    #[test]
    fn rule_ids_have_the_provider_format_and_are_reproducible() {
        let store = Store::default();
        let id = |provider, seed| store.new_rule_id(provider, &mut StdRng::seed_from_u64(seed));
        assert!(id(ProviderKind::Alibaba, 1).starts_with("sgr-"));
        assert_eq!(id(ProviderKind::Alibaba, 1).len(), 24);
        assert!(id(ProviderKind::Baidu, 1).starts_with("r-"));
        assert_eq!(id(ProviderKind::Baidu, 7), id(ProviderKind::Baidu, 7));
    }

    #[test]
    fn the_state_file_round_trips() {
        let mut store = Store::default();
        store.create(key(ProviderKind::Apsara), "db".into());
        store
            .get_mut(&key(ProviderKind::Apsara))
            .expect("created")
            .add("sgr-1".into(), ssh("x"));
        let text = serde_json::to_string(&store.to_file()).expect("serialises");
        let back: Vec<GroupFile> = serde_json::from_str(&text).expect("parses");
        let again = Store::from_file(back).expect("valid");
        let group = again.get(&key(ProviderKind::Apsara)).expect("kept");
        assert_eq!(group.rules[0].rule, ssh("x"));
        assert_eq!(group.version, 2);
    }
}
