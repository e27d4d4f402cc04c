//! Write counts from the API server's own `/metrics` (`apiserver_request_total`).

use std::collections::BTreeMap;

use anyhow::Context as _;
use kube::Client;

/// Verbs that only read.
const READS: [&str; 4] = ["GET", "LIST", "WATCH", "CONNECT"];

/// Completed write requests, cumulative since the API server started.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Writes {
    /// SecurityGroupRule writes by "VERB" or "VERB status".
    pub rules: BTreeMap<String, u64>,
    /// Event creates and patches (both event APIs).
    pub events: u64,
}

impl Writes {
    pub async fn scrape(client: &Client) -> anyhow::Result<Self> {
        let request = http::Request::get("/metrics").body(Vec::new())?;
        let text = client
            .request_text(request)
            .await
            .context("reading the API server's /metrics")?;
        Ok(Self::parse(&text))
    }

    pub fn parse(text: &str) -> Self {
        let mut writes = Self::default();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
                continue;
            };
            let Some((labels, value)) = rest.rsplit_once("} ") else {
                continue;
            };
            let labels = labels_of(labels);
            let label = |k: &str| labels.get(k).map(String::as_str).unwrap_or_default();
            let verb = label("verb");
            if READS.contains(&verb) {
                continue;
            }
            let count = value.trim().parse::<f64>().unwrap_or(0.0) as u64;
            match label("resource") {
                "securitygrouprules" => {
                    let key = match label("subresource") {
                        "" => verb.to_owned(),
                        sub => format!("{verb} {sub}"),
                    };
                    *writes.rules.entry(key).or_default() += count;
                }
                "events" => writes.events += count,
                _ => {}
            }
        }
        writes
    }

    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &Self) -> Self {
        let rules = self
            .rules
            .iter()
            .map(|(k, v)| (k.clone(), v - earlier.rules.get(k).copied().unwrap_or(0)))
            .filter(|(_, v)| *v > 0)
            .collect();
        Self {
            rules,
            events: self.events - earlier.events,
        }
    }

    pub fn rule_writes(&self) -> u64 {
        self.rules.values().sum()
    }
}

/// `a="x",b="y"` into a map; values here never hold quotes or commas.
fn labels_of(text: &str) -> BTreeMap<String, String> {
    text.split("\",")
        .filter_map(|pair| pair.split_once("=\""))
        .map(|(k, v)| (k.to_owned(), v.trim_end_matches('"').to_owned()))
        .collect()
}
