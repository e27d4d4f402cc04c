//! The fake cloud's admin API (`/_fake/`), as the soak uses it.

use std::collections::HashMap;

use secgroup_operator::api::rule::RuleSpec;
use serde::{Deserialize, de::DeserializeOwned};
use serde_json::{Value, json};

use crate::process::Tied;

pub struct Cloud {
    pub url: String,
    http: reqwest::Client,
    _process: Tied,
}

/// A rule as the fake cloud holds it; its admin API writes rules in the
/// form of a `SecurityGroupRule`'s `spec.rule`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CloudRule {
    pub group: String,
    pub rule_id: String,
    pub rule: RuleSpec,
}

/// One provider call the fake cloud answered.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Call {
    pub action: String,
    pub client_token: Option<String>,
    pub access_key_id: Option<String>,
    pub code: String,
    pub effect: bool,
    pub replayed: bool,
    pub fault: Option<String>,
}

impl Call {
    pub fn is_mutation(&self) -> bool {
        !self.action.starts_with("Describe") && self.action != "GetSecurityGroup"
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenRecord {
    pub client_token: String,
    pub effects: u64,
}

impl Cloud {
    pub fn new(url: String, process: Tied) -> Self {
        Self {
            url,
            http: reqwest::Client::new(),
            _process: process,
        }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, String) {
        let mut request = self
            .http
            .request(method, format!("{}/_fake{path}", self.url));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("the fake cloud answers");
        let status = response.status().as_u16();
        (status, response.text().await.unwrap_or_default())
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> T {
        let (status, text) = self.send(reqwest::Method::GET, path, None).await;
        assert_eq!(status, 200, "GET /_fake{path}: {text}");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET /_fake{path}: {e}"))
    }

    async fn expect(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> String {
        let (status, text) = self.send(method.clone(), path, body).await;
        assert!(
            (200..300).contains(&status),
            "{method} /_fake{path}: {status} {text}"
        );
        text
    }

    pub async fn create_group(&self, provider: &str, region: &str, id: &str) {
        let body = json!({"provider": provider, "region": region, "id": id});
        self.expect(reqwest::Method::POST, "/groups", Some(body))
            .await;
    }

    pub async fn rules(&self, provider: &str, group: &str) -> Vec<CloudRule> {
        self.get(&format!("/rules?provider={provider}&group={group}"))
            .await
    }

    /// Every rule in every group, by group id.
    pub async fn all_rules(&self) -> HashMap<String, Vec<CloudRule>> {
        let mut by_group: HashMap<String, Vec<CloudRule>> = HashMap::new();
        for rule in self.get::<Vec<CloudRule>>("/rules").await {
            by_group.entry(rule.group.clone()).or_default().push(rule);
        }
        by_group
    }

    /// Adds a rule out of band, as someone at the console would.
    pub async fn add_rule(
        &self,
        provider: &str,
        region: &str,
        group: &str,
        rule: &RuleSpec,
        rule_id: &str,
    ) {
        let body = json!({"provider": provider, "region": region, "group": group,
                          "ruleId": rule_id, "rule": rule});
        self.expect(reqwest::Method::POST, "/rules", Some(body))
            .await;
    }

    /// Deletes a rule out of band.
    pub async fn delete_rule(&self, provider: &str, region: &str, group: &str, rule_id: &str) {
        let path = format!("/rules/{provider}/{region}/{group}/{rule_id}");
        self.expect(reqwest::Method::DELETE, &path, None).await;
    }

    pub async fn calls(&self) -> Vec<Call> {
        self.get("/calls").await
    }

    /// Writes the raw call journal to `path`, for reading after a failed run.
    pub async fn save_calls(&self, path: &std::path::Path) {
        let (_, text) = self.send(reqwest::Method::GET, "/calls", None).await;
        let _ = std::fs::write(path, text);
    }

    pub async fn clear_calls(&self) {
        self.expect(reqwest::Method::DELETE, "/calls", None).await;
    }

    pub async fn tokens(&self) -> Vec<TokenRecord> {
        self.get("/tokens").await
    }

    pub async fn set_faults(&self, plan: Value) {
        self.expect(reqwest::Method::PUT, "/faults", Some(plan))
            .await;
    }

    pub async fn add_key(&self, id: &str, secret: &str) {
        let body = json!({"accessKeyId": id, "accessKeySecret": secret});
        self.expect(reqwest::Method::POST, "/keys", Some(body))
            .await;
    }
}
