//! Churn: every rule goes create → Absent → Present → a field changed →
//! deleted (some stop earlier and stay), across the three providers, while
//! the provider misbehaves and the operator is SIGKILLed at random moments.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use rand::{Rng, rngs::StdRng};
use secgroup_operator::provider::ProviderKind;
use serde_json::json;
use tokio::sync::Semaphore;

use crate::{
    Soak,
    driver::Track,
    phases::{call_figures, new_journal},
    say,
    workload::{Change, Slot, State},
};

const PHASE: &str = "churn";

/// Where a lifecycle stops; the rest of it happens at cleanup.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Keep {
    Nothing,
    AfterAbsent,
    AfterChange,
}

struct Plan {
    change: Change,
    keep: Keep,
    /// Per step: wait for the operator to confirm it, or go on at once so
    /// the next edit overtakes work in flight.
    confirm: [bool; 4],
}

impl Plan {
    fn draw(rng: &mut StdRng, slot: &Slot) -> Self {
        let change = match (slot.provider.kind, rng.random_range(0..10)) {
            (_, 0..4) => Change::Port,
            (ProviderKind::Baidu, _) | (_, 4..7) => Change::Description,
            _ => Change::Priority,
        };
        let keep = match rng.random_range(0..20) {
            0 => Keep::AfterAbsent,
            1..4 => Keep::AfterChange,
            _ => Keep::Nothing,
        };
        Self {
            change,
            keep,
            confirm: std::array::from_fn(|_| rng.random_bool(0.8)),
        }
    }
}

/// The provider faults of the whole churn.
fn faults(seed: u64) -> serde_json::Value {
    json!({"seed": seed, "rules": [{
        "error500": 0.15, "error503": 0.15, "throttle": 0.10, "retryAfterMs": 500,
        "drop": 0.05, "latencyMs": 200,
    }]})
}

async fn pace(soak: &Soak, track: &mut Track, confirm: bool) {
    if confirm {
        soak.confirm(track, PHASE).await;
    } else {
        let pause = soak.random(|r| r.random_range(0..400));
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}

async fn lifecycle(soak: &Soak, slot: Slot, plan: Plan) -> Track {
    let mut track = Track::new(slot);
    let initial = track.slot.initial();
    soak.declare(&mut track, &initial, "Present").await;
    pace(soak, &mut track, plan.confirm[0]).await;
    soak.declare(&mut track, &initial, "Absent").await;
    if plan.keep == Keep::AfterAbsent {
        return track;
    }
    pace(soak, &mut track, plan.confirm[1]).await;
    soak.declare(&mut track, &initial, "Present").await;
    pace(soak, &mut track, plan.confirm[2]).await;
    let changed = track.slot.changed(plan.change);
    soak.declare(&mut track, &changed, "Present").await;
    if plan.keep == Keep::AfterChange {
        return track;
    }
    pace(soak, &mut track, plan.confirm[3]).await;
    soak.delete(&mut track).await;
    soak.confirm(&mut track, PHASE).await;
    track
}

/// SIGKILLs the operator at random moments and restarts it, until the churn
/// is over and enough kills happened.
async fn kill_loop(soak: Arc<Soak>, churning: Arc<AtomicBool>) {
    loop {
        if !churning.load(Ordering::SeqCst) && soak.operator().kills >= soak.config.kills {
            return;
        }
        let range = soak.config.kill_every.clone();
        let (alive, dead) = soak.random(|r| (r.random_range(range), r.random_range(0..1500)));
        tokio::time::sleep(Duration::from_millis(alive)).await;
        soak.operator().kill();
        tokio::time::sleep(Duration::from_millis(dead)).await;
        soak.start_operator();
    }
}

pub async fn run(soak: &Arc<Soak>) -> Vec<Track> {
    let slots = soak.slots(soak.config.rules);
    say(&format!(
        "{PHASE}: {} rules, faults on, kills on",
        slots.len()
    ));
    new_journal(soak, "setup").await;
    soak.cloud
        .admin()
        .set_faults(&faults(soak.config.seed))
        .await;
    let kills_before = soak.operator().kills;
    let churning = Arc::new(AtomicBool::new(true));
    let killer = tokio::spawn(kill_loop(soak.clone(), churning.clone()));
    let window = Arc::new(Semaphore::new(soak.config.window));
    let started = Instant::now();
    let tasks: Vec<_> = slots
        .into_iter()
        .map(|slot| {
            let (soak, window) = (soak.clone(), window.clone());
            let plan = soak.random(|r| Plan::draw(r, &slot));
            tokio::spawn(async move {
                let _permit = window.acquire_owned().await.expect("open semaphore");
                lifecycle(&soak, slot, plan).await
            })
        })
        .collect();
    let mut tracks = Vec::with_capacity(tasks.len());
    for task in tasks {
        tracks.push(task.await.expect("lifecycle task"));
    }
    churning.store(false, Ordering::SeqCst);
    killer.await.expect("kill loop");
    let churned = started.elapsed();
    soak.settle(&mut tracks, PHASE).await;
    soak.cloud.admin().set_faults(&json!({"rules": []})).await;
    let settled = started.elapsed();

    let calls = soak.cloud.admin().calls(&[]).await;
    let min_calls: u64 = tracks.iter().map(|t| t.min_calls).sum();
    let mut report = soak.report();
    report.figure(PHASE, "rules", tracks.len());
    report.figure(
        PHASE,
        "operator SIGKILLs",
        soak.operator().kills - kills_before,
    );
    report.figure(
        PHASE,
        "edits done / all settled",
        format!("{churned:.0?} / {settled:.0?}"),
    );
    report.figure(
        PHASE,
        "faults",
        "30% 500/503, 10% throttle (retry after 500 ms), 5% dropped, 200 ms latency",
    );
    call_figures(&mut report, PHASE, &calls, min_calls);
    drop(report);
    tracks.retain(|t| t.intent != State::Gone);
    tracks
}
