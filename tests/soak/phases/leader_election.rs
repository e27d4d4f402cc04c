//! Two replicas with leader election share one Lease: only the holder calls
//! the provider. The holder is SIGKILLed while it is busy; the standby must
//! take over within the lease's bound and finish the work with the same
//! ClientTokens. The killed replica comes back as a standby that calls
//! nothing.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use crate::{
    Soak,
    cluster::SECRET_NAMESPACE,
    driver::Track,
    phases::{
        absent_or_moved, call_figures, declare_initial, fresh_tracks, min_calls, new_journal,
    },
    process::{Operator, free_addr, ready},
    say,
};

const PHASE: &str = "leader election";
/// The operator's lease duration.
const LEASE: Duration = Duration::from_secs(15);
/// A candidate measures expiry from when it first saw the lease's current
/// version and looks every second, so a SIGKILLed holder is replaced at most
/// this long after it died (README, Leader election).
const HANDOVER_BOUND: Duration = Duration::from_secs(17);

struct Replica {
    identity: &'static str,
    metrics: String,
    operator: Operator,
}

impl Replica {
    fn start(soak: &Soak, identity: &'static str) -> Self {
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
    async fn calls(&self) -> Option<f64> {
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

fn shown(calls: Option<f64>) -> String {
    calls.map_or_else(|| "metrics unreachable".to_owned(), |c| c.to_string())
}

/// Waits until exactly one replica leads; returns its index.
async fn one_leader(replicas: &[Replica], limit: Duration) -> Option<usize> {
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

pub async fn run(soak: &Arc<Soak>) -> Vec<Track> {
    let mut tracks = fresh_tracks(soak);
    say(&format!(
        "{PHASE}: {} rules, two replicas, the leader killed mid-work",
        tracks.len()
    ));
    new_journal(soak, "credentials").await;
    soak.operator().stop();
    let mut replicas = vec![
        Replica::start(soak, "replica-a"),
        Replica::start(soak, "replica-b"),
    ];
    let Some(leader) = one_leader(&replicas, Duration::from_secs(60)).await else {
        soak.report()
            .fail(PHASE, "no single leader within 60 s".into());
        soak.start_operator();
        return tracks;
    };
    let standby = 1 - leader;

    let half = tracks.len() / 2;
    let (before, after) = tracks.split_at_mut(half);
    declare_initial(soak, before).await;
    soak.settle(before, PHASE).await;
    let leader_calls = replicas[leader].calls().await;
    let standby_calls = replicas[standby].calls().await;

    // The leader is busy with these when it dies.
    declare_initial(soak, after).await;
    replicas[leader].operator.kill();
    let killed = Instant::now();
    absent_or_moved(soak, before).await;
    let took_over = one_leader(&replicas, LEASE * 4)
        .await
        .filter(|&now| now == standby)
        .map(|_| killed.elapsed());
    soak.settle(&mut tracks, PHASE).await;
    let converged = killed.elapsed();

    // The killed replica returns as a standby, and stays idle.
    let identity = replicas[leader].identity;
    replicas[leader] = Replica::start(soak, identity);
    let back_as_standby = one_leader(&replicas, Duration::from_secs(30)).await == Some(standby);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let returned_calls = replicas[leader].calls().await;
    drop(replicas);
    soak.start_operator();
    let metrics = soak.operator().metrics.clone();
    let single_ready = ready(&metrics, Duration::from_secs(60)).await;

    let calls = soak.cloud.admin().calls(&[]).await;
    let mut report = soak.report();
    report.figure(PHASE, "rules", tracks.len());
    report.figure(
        PHASE,
        "provider calls before the kill: leader / standby",
        format!("{} / {}", shown(leader_calls), shown(standby_calls)),
    );
    if standby_calls != Some(0.0) || leader_calls.is_none_or(|c| c == 0.0) {
        report.fail(
            PHASE,
            format!(
                "the standby called the provider {} times, the leader {}",
                shown(standby_calls),
                shown(leader_calls)
            ),
        );
    }
    match took_over {
        Some(t) => {
            report.figure(
                PHASE,
                "standby leading after the SIGKILL",
                format!("{t:.1?} (lease {LEASE:?}, bound {HANDOVER_BOUND:?})"),
            );
            if t > HANDOVER_BOUND {
                report.fail(PHASE, format!("handover took {t:.1?}"));
            }
        }
        None => report.fail(PHASE, "the standby did not take over".into()),
    }
    report.figure(
        PHASE,
        "converged after the SIGKILL",
        format!("{converged:.1?}"),
    );
    report.figure(
        PHASE,
        "provider calls by the restarted replica (standby)",
        shown(returned_calls),
    );
    if !back_as_standby || returned_calls != Some(0.0) {
        report.fail(
            PHASE,
            format!(
                "the restarted replica: standby {back_as_standby}, {} provider calls",
                shown(returned_calls)
            ),
        );
    }
    if !single_ready {
        report.fail(
            PHASE,
            "the single operator was not ready 60 s after the replicas stopped".into(),
        );
    }
    call_figures(&mut report, PHASE, &calls, min_calls(&tracks));
    tracks
}
