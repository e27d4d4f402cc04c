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
    driver::Track,
    phases::{
        absent_or_moved, call_figures, declare_initial, fresh_tracks, min_calls, new_journal,
        replicas::{HANDOVER_BOUND, LEASE, Replica, one_leader, shown, took_over},
    },
    process::ready,
    say,
};

const PHASE: &str = "leader election";

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
    let leading_after = took_over(&replicas, standby, killed, LEASE * 4).await;
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
    match leading_after {
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
