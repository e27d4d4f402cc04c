//! The fake cloud's admin API, as far as the benchmark needs it.

use anyhow::{Context as _, bail};
use jiff::Timestamp;
use serde::Deserialize;
use serde_json::{Value, json};

/// One provider call the fake cloud answered.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Call {
    pub time: Timestamp,
    pub action: String,
    pub group: Option<String>,
    pub code: String,
    pub fault: Option<String>,
}

impl Call {
    pub fn throttled(&self) -> bool {
        self.fault.as_deref() == Some("throttle") || self.code.contains("Throttling")
    }
}

pub struct Admin {
    base: String,
    http: reqwest::Client,
}

impl Admin {
    pub fn new(fakecloud: &str) -> Self {
        Self {
            base: format!("{fakecloud}/_fake"),
            http: reqwest::Client::new(),
        }
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        what: &str,
    ) -> anyhow::Result<reqwest::Response> {
        let response = request.send().await.with_context(|| what.to_owned())?;
        if !response.status().is_success() {
            bail!(
                "{what}: {} {}",
                response.status(),
                response.text().await.unwrap_or_default()
            );
        }
        Ok(response)
    }

    pub async fn create_group(&self, id: &str) -> anyhow::Result<()> {
        let body = json!({"provider": "alibaba", "region": super::env::REGION, "id": id});
        self.send(
            self.http.post(format!("{}/groups", self.base)).json(&body),
            "creating a group",
        )
        .await
        .map(drop)
    }

    pub async fn set_faults(&self, plan: Value) -> anyhow::Result<()> {
        self.send(
            self.http.put(format!("{}/faults", self.base)).json(&plan),
            "setting faults",
        )
        .await
        .map(drop)
    }

    pub async fn clear_calls(&self) -> anyhow::Result<()> {
        self.send(
            self.http.delete(format!("{}/calls", self.base)),
            "clearing calls",
        )
        .await
        .map(drop)
    }

    /// Calls since the last clear, optionally of one action only.
    pub async fn calls(&self, action: Option<&str>) -> anyhow::Result<Vec<Call>> {
        let mut request = self.http.get(format!("{}/calls", self.base));
        if let Some(action) = action {
            request = request.query(&[("action", action)]);
        }
        Ok(self.send(request, "listing calls").await?.json().await?)
    }
}
