//! The API server goes away mid-run and comes back on the same port: the
//! operator must pick up where it was without being restarted itself. Half
//! the rules are being authorized when it stops; the other half change
//! once it is back.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use crate::{
    Soak,
    cluster::Cluster,
    driver::Track,
    phases::{
        absent_or_moved, call_figures, declare_initial, fresh_tracks, min_calls, new_journal,
    },
    say,
};

const PHASE: &str = "apiserver restart";
const DOWN: Duration = Duration::from_secs(5);

pub async fn run(soak: &Arc<Soak>) -> Vec<Track> {
    let mut tracks = fresh_tracks(soak);
    say(&format!(
        "{PHASE}: {} rules, API server down for {DOWN:?}",
        tracks.len()
    ));
    new_journal(soak, "churn").await;
    let pid = soak.operator().pid();
    let half = tracks.len() / 2;
    let (before, after) = tracks.split_at_mut(half);
    declare_initial(soak, before).await;
    soak.settle(before, PHASE).await;
    // The operator is busy with these when the API server stops.
    declare_initial(soak, after).await;
    let stopped = Instant::now();
    tokio::task::spawn_blocking(|| Cluster::restart_apiserver(DOWN))
        .await
        .expect("restart");
    let outage = stopped.elapsed();
    let back = Instant::now();
    absent_or_moved(soak, before).await;
    soak.settle(&mut tracks, PHASE).await;
    let converged = back.elapsed();

    let calls = soak.cloud.admin().calls(&[]).await;
    let mut report = soak.report();
    report.figure(PHASE, "rules", tracks.len());
    report.figure(PHASE, "API server unavailable", format!("{outage:.1?}"));
    report.figure(
        PHASE,
        "converged after it came back",
        format!("{converged:.1?}"),
    );
    let same = pid.is_some() && soak.operator().pid() == pid;
    report.figure(PHASE, "operator restarts", if same { 0 } else { 1 });
    if !same {
        report.fail(
            PHASE,
            format!(
                "the operator process changed ({pid:?} → {:?})",
                soak.operator().pid()
            ),
        );
    }
    call_figures(&mut report, PHASE, &calls, min_calls(&tracks));
    tracks
}
