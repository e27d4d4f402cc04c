//! Two operator replicas sharing one Lease, as the leader-election phases
//! run them: each serves its own /metrics, which says whether it leads and
//! how many provider calls it made.

use std::time::{Duration, Instant};

use crate::{
    Soak,
    cluster::SECRET_NAMESPACE,
    process::{Operator, free_addr},
};

/// The operator's lease duration.
pub const LEASE: Duration = Duration::from_secs(15);
/// A candidate measures expiry from when it first saw the lease's current
/// version and looks every second, so a SIGKILLed holder is replaced at most
/// this long after it died (README, Leader election).
pub const HANDOVER_BOUND: Duration = Duration::from_secs(17);

pub struct Replica {
    pub identity: &'static str,
    metrics: String,
    pub operator: Operator,
}

impl Replica {
    pub fn start(soak: &Soak, identity: &'static str) -> Self {
        let metrics = free_addr();
        let mut operator = Operator::replica(
            identity,
            SECRET_NAMESPACE,
            SECRET_NAMESPACE,
            &metrics,
            &soak.config.logs,
        );
        operator.start(&soak.operator_flags());
        Self {
            identity,
            metrics,
            operator,
        }
    }

    /// `(leading, provider calls)` from its /metrics, if it answers.
    async fn scrape(&self) -> Option<(bool, f64)> {
        let text = reqwest::get(format!("http://{}/metrics", self.metrics))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        Some((
            sample_sum(&text, "secgroup_leader") == 1.0,
            sample_sum(&text, "secgroup_provider_calls_total"),
        ))
    }

    /// Its provider calls; `None` if its /metrics does not answer, which
    /// must fail the phase rather than read as "no calls".
    pub async fn calls(&self) -> Option<f64> {
        self.scrape().await.map(|(_, calls)| calls)
    }
}

/// Sum of every sample of metric `name`, whatever its labels.
fn sample_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(['{', ' ']))
        })
        .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
        .fold(0.0, |sum, v| sum + v)
}

pub fn shown(calls: Option<f64>) -> String {
    calls.map_or_else(|| "metrics unreachable".to_owned(), |c| c.to_string())
}

/// How long after `since` replica `next` came to lead alone, if it did
/// within `limit`.
pub async fn took_over(
    replicas: &[Replica],
    next: usize,
    since: Instant,
    limit: Duration,
) -> Option<Duration> {
    one_leader(replicas, limit)
        .await
        .filter(|&now| now == next)
        .map(|_| since.elapsed())
}

/// Waits until exactly one replica leads; returns its index.
pub async fn one_leader(replicas: &[Replica], limit: Duration) -> Option<usize> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let mut leading = Vec::new();
        for (i, r) in replicas.iter().enumerate() {
            if r.operator.pid().is_some() && r.scrape().await.is_some_and(|(lead, _)| lead) {
                leading.push(i);
            }
        }
        if let [one] = leading.as_slice() {
            return Some(*one);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}
