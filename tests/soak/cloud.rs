//! What the soak reads from the fake cloud beyond its admin client: the rules
//! in the operator's own `RuleSpec` form, and journals kept for later reading.

use std::collections::HashMap;

use secgroup_operator::api::rule::RuleSpec;
use secgroup_testkit::{Admin, FakeCloud, RuleView};

pub struct Cloud {
    fake: FakeCloud,
}

/// A rule as the fake cloud holds it, read as a `SecurityGroupRule`'s `spec.rule`.
#[derive(Clone, Debug)]
pub struct CloudRule {
    pub group: String,
    pub rule_id: String,
    pub rule: RuleSpec,
}

impl From<RuleView> for CloudRule {
    fn from(view: RuleView) -> Self {
        let rule = serde_json::to_value(&view.rule)
            .and_then(serde_json::from_value)
            .unwrap_or_else(|e| panic!("rule {} is no RuleSpec: {e}", view.rule_id));
        Self {
            group: view.group,
            rule_id: view.rule_id,
            rule,
        }
    }
}

impl Cloud {
    pub fn new(fake: FakeCloud) -> Self {
        Self { fake }
    }

    pub fn url(&self) -> &str {
        &self.fake.url
    }

    pub fn admin(&self) -> &Admin {
        &self.fake.admin
    }

    pub async fn rules(&self, provider: &str, group: &str) -> Vec<CloudRule> {
        let filter = [("provider", provider), ("group", group)];
        let rules = self.admin().rules(&filter).await;
        rules.into_iter().map(CloudRule::from).collect()
    }

    /// Every rule in every group, by group id.
    pub async fn all_rules(&self) -> HashMap<String, Vec<CloudRule>> {
        let mut by_group: HashMap<String, Vec<CloudRule>> = HashMap::new();
        for rule in self.admin().rules(&[]).await {
            by_group
                .entry(rule.group.clone())
                .or_default()
                .push(rule.into());
        }
        by_group
    }

    /// Writes the call journal to `path`, for reading after a failed run.
    pub async fn save_calls(&self, path: &std::path::Path) {
        let calls = self.admin().calls(&[]).await;
        let _ = std::fs::write(path, serde_json::to_vec(&calls).unwrap_or_default());
    }
}
