//! The client of the admin API (`/_fake/`), next to the API it speaks, for
//! the tests that run the fake cloud. Answers come back in this crate's own
//! types. A test helper: a call the fake cloud does not accept panics with
//! what was asked and what it answered.

use reqwest::Method;
use serde::{Serialize, de::DeserializeOwned};
use serde_json::{Value, json};

use crate::{RuleView, TokenView, faults::FaultPlan, journal::CallRecord};

/// The admin API of the fake cloud at one URL.
#[derive(Clone, Debug)]
pub struct Admin {
    base: String,
    http: reqwest::Client,
}

impl Admin {
    /// `url`: where the fake cloud listens, such as `http://127.0.0.1:PORT`.
    pub fn new(url: &str) -> Self {
        Self {
            base: format!("{}/_fake", url.trim_end_matches('/')),
            // Tests share one Admin while each runs its own runtime; an idle
            // connection kept for reuse dies with the runtime that opened it,
            // possibly while another test's request is on it.
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .expect("HTTP client"),
        }
    }

    /// Sends one request and returns the status and body of the answer.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> (u16, String) {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .query(query);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.unwrap_or_else(|e| {
            panic!("{method} /_fake{path}: the fake cloud does not answer: {e}")
        });
        let status = response.status().as_u16();
        (status, response.text().await.unwrap_or_default())
    }

    /// A request that must succeed; its answer's body.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> String {
        let (status, text) = self.send(method.clone(), path, query, body).await;
        assert!(
            (200..300).contains(&status),
            "{method} /_fake{path} {query:?}: {status} {text}"
        );
        text
    }

    async fn get<T: DeserializeOwned>(&self, path: &str, query: &[(&str, &str)]) -> T {
        let text = self.call(Method::GET, path, query, None).await;
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET /_fake{path}: {e}: {text}"))
    }

    pub async fn create_group(&self, provider: &str, region: &str, id: &str) {
        let body = json!({"provider": provider, "region": region, "id": id});
        self.call(Method::POST, "/groups", &[], Some(&body)).await;
    }

    /// Deletes a group and its rules out of band.
    pub async fn delete_group(&self, provider: &str, region: &str, id: &str) {
        let path = format!("/groups/{provider}/{region}/{id}");
        self.call(Method::DELETE, &path, &[], None).await;
    }

    /// The rules held, filtered by any of `provider`, `region` and `group`.
    pub async fn rules(&self, filter: &[(&str, &str)]) -> Vec<RuleView> {
        self.get("/rules", filter).await
    }

    /// Adds a rule out of band, as someone at the console would; `rule` is in
    /// the form of a `SecurityGroupRule`'s `spec.rule`. Returns its id, which
    /// the fake cloud picks unless `rule_id` is given.
    pub async fn add_rule(
        &self,
        provider: &str,
        region: &str,
        group: &str,
        rule: &impl Serialize,
        rule_id: Option<&str>,
    ) -> String {
        let mut body =
            json!({"provider": provider, "region": region, "group": group, "rule": rule});
        if let Some(id) = rule_id {
            body["ruleId"] = json!(id);
        }
        let text = self.call(Method::POST, "/rules", &[], Some(&body)).await;
        let answer: Value = serde_json::from_str(&text).unwrap_or_default();
        answer["ruleId"]
            .as_str()
            .unwrap_or_else(|| panic!("POST /_fake/rules answered no rule id: {text}"))
            .to_owned()
    }

    /// Deletes a rule out of band.
    pub async fn delete_rule(&self, provider: &str, region: &str, group: &str, rule_id: &str) {
        let path = format!("/rules/{provider}/{region}/{group}/{rule_id}");
        self.call(Method::DELETE, &path, &[], None).await;
    }

    /// The call journal, filtered by any of `provider`, `action` and `clientToken`.
    pub async fn calls(&self, filter: &[(&str, &str)]) -> Vec<CallRecord> {
        self.get("/calls", filter).await
    }

    pub async fn clear_calls(&self) {
        self.call(Method::DELETE, "/calls", &[], None).await;
    }

    pub async fn tokens(&self) -> Vec<TokenView> {
        self.get("/tokens", &[]).await
    }

    pub async fn faults(&self) -> FaultPlan {
        self.get("/faults", &[]).await
    }

    /// Replaces the whole fault plan.
    pub async fn set_faults(&self, plan: &impl Serialize) {
        let plan = serde_json::to_value(plan).expect("a fault plan is JSON");
        self.call(Method::PUT, "/faults", &[], Some(&plan)).await;
    }

    /// Accepts another access key from now on.
    pub async fn add_key(&self, id: &str, secret: &str) {
        let body = json!({"accessKeyId": id, "accessKeySecret": secret});
        self.call(Method::POST, "/keys", &[], Some(&body)).await;
    }
}
