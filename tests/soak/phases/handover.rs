//! Leadership changes hands twice while a mass delete is in flight. Two
//! replicas share the Lease; many Ready rules are deleted at once while the
//! provider is slowed (a low `rateLimit`, latency, some 503s), so revokes
//! are queued and running when the leader goes. A quarter of the way through,
//! the leader is stopped (SIGTERM): it finishes its running passes and
//! releases the Lease, and the standby takes over at once. Half way through
//! what is left then, the new leader is SIGKILLed and the first replica, back
//! as a standby, takes over once the Lease expires. Every rule must still be revoked exactly once
//! (its ClientToken replayed, never acted on twice) and every object go.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use futures::{StreamExt, stream};
use secgroup_testkit::CallRecord;
use serde_json::json;

use crate::{
    Config, RATE, Soak,
    driver::Track,
    phases::{
        call_figures, declare_initial, min_calls, new_journal,
        replicas::{HANDOVER_BOUND, Replica, one_leader, took_over},
    },
    process::ready,
    report::Report,
    say,
};

const PHASE: &str = "handover during a mass delete";
/// Each ProviderConfig's `rateLimit` while the rules are deleted: slow
/// enough that the deletion spans both handovers.
const SLOW: (u32, u32) = (2, 2);
/// How soon the standby leads once a stopped leader released the Lease: it
/// looks every second.
const RELEASED_BOUND: Duration = Duration::from_secs(5);

/// Rules this phase deletes at once: a fifth of the soak's, at least 90.
pub fn rules(config: &Config) -> usize {
    (config.rules / 5).max(90)
}

/// Whether a call revoked a rule: Alibaba's and Apsara Stack's
/// `RevokeSecurityGroup[Egress]`, Baidu's `RevokeSecurityGroupRule` or
/// `DeleteSecurityGroupRule` (by id), answered with an effect.
fn revoked_one(call: &CallRecord) -> bool {
    call.effect && (call.action.starts_with("Revoke") || call.action == "DeleteSecurityGroupRule")
}

/// Cloud rules revoked in this phase so far.
async fn revoked(soak: &Soak) -> usize {
    soak.cloud
        .admin()
        .calls(&[])
        .await
        .iter()
        .filter(|c| revoked_one(c))
        .count()
}

/// Waits until at least `n` rules are revoked; false after `limit`.
async fn until_revoked(soak: &Soak, n: usize, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if revoked(soak).await >= n {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

pub async fn run(soak: &Arc<Soak>) {
    let mut tracks: Vec<Track> = soak
        .slots(rules(&soak.config))
        .into_iter()
        .map(Track::new)
        .collect();
    let n = tracks.len();
    say(&format!(
        "{PHASE}: {n} rules deleted at once, the leader stopped, then the next one killed"
    ));
    new_journal(soak, "leader election").await;
    soak.operator().stop();
    let mut replicas = [
        Replica::start(soak, "replica-a"),
        Replica::start(soak, "replica-b"),
    ];
    let Some(first) = one_leader(&replicas, Duration::from_secs(60)).await else {
        soak.report()
            .fail(PHASE, "no single leader within 60 s".into());
        drop(replicas);
        soak.start_operator();
        return;
    };
    let second = 1 - first;
    declare_initial(soak, &mut tracks).await;
    soak.settle(&mut tracks, PHASE).await;

    soak.cluster.install_providers(soak.cloud.url(), SLOW).await;
    let seed = soak.random(rand::Rng::random::<u64>);
    soak.cloud
        .admin()
        .set_faults(&json!({"seed": seed, "rules": [{"error503": 0.05, "latencyMs": 100}]}))
        .await;
    let deleting = Instant::now();
    stream::iter(tracks.iter_mut())
        .for_each_concurrent(64, |t| soak.delete(t))
        .await;
    let limit = soak.config.step_timeout;

    // Handover 1: the leader stops and releases the Lease.
    let mut on_time = until_revoked(soak, n / 4, limit).await;
    let stopping = Instant::now();
    let revoked_at_stop = revoked(soak).await;
    replicas[first].operator.stop();
    let stopped = stopping.elapsed();
    let exited = Instant::now();
    let released = took_over(&replicas, second, exited, HANDOVER_BOUND).await;
    let identity = replicas[first].identity;
    replicas[first] = Replica::start(soak, identity);

    // Handover 2: the new leader dies half way through what the stopped
    // one left (its running passes finish before it lets go); the Lease
    // expires.
    let left_over = revoked(soak).await;
    on_time &= until_revoked(soak, left_over + (n - left_over) / 2, limit).await;
    let revoked_at_kill = revoked(soak).await;
    replicas[second].operator.kill();
    let killed = Instant::now();
    let expired = took_over(&replicas, first, killed, HANDOVER_BOUND * 2).await;
    soak.settle(&mut tracks, PHASE).await;
    let converged = deleting.elapsed();

    let calls = soak.cloud.admin().calls(&[]).await;
    soak.cloud.admin().set_faults(&json!({"rules": []})).await;
    soak.cluster.install_providers(soak.cloud.url(), RATE).await;
    drop(replicas);
    soak.start_operator();
    let metrics = soak.operator().metrics.clone();
    let single_ready = ready(&metrics, Duration::from_secs(60)).await;

    let mut report = soak.report();
    report.figure(PHASE, "rules deleted at once", n);
    report.figure(
        PHASE,
        "rules revoked when the leader was stopped / killed",
        format!("{revoked_at_stop} / {revoked_at_kill}"),
    );
    if !on_time {
        report.fail(
            PHASE,
            format!(
                "the deletion stalled: {revoked_at_stop} then {revoked_at_kill} of {n} revoked"
            ),
        );
    }
    report.figure(
        PHASE,
        "the stopped leader exited after",
        format!("{stopped:.1?}"),
    );
    takeover(
        &mut report,
        "after the release",
        released,
        RELEASED_BOUND,
        "the standby did not take the released lease",
    );
    takeover(
        &mut report,
        "after the SIGKILL",
        expired,
        HANDOVER_BOUND,
        "the restarted replica did not take over",
    );
    report.figure(
        PHASE,
        "every object gone after the mass delete began",
        format!("{converged:.1?}"),
    );
    let revokes = calls.iter().filter(|c| revoked_one(c)).count();
    report.figure(PHASE, "rules revoked (effective calls)", revokes);
    if revokes != n {
        report.fail(PHASE, format!("{revokes} effective revokes for {n} rules"));
    }
    if !single_ready {
        report.fail(
            PHASE,
            "the single operator was not ready 60 s after the replicas stopped".into(),
        );
    }
    call_figures(&mut report, PHASE, &calls, min_calls(&tracks));
}

/// Reports how long the standby took to lead `after` an event, against its bound.
fn takeover(
    report: &mut Report,
    after: &str,
    took: Option<Duration>,
    bound: Duration,
    missing: &str,
) {
    match took {
        Some(t) => {
            report.figure(
                PHASE,
                &format!("standby leading {after}"),
                format!("{t:.1?} (bound {bound:?})"),
            );
            if t > bound {
                report.fail(PHASE, format!("takeover {after} took {t:.1?}"));
            }
        }
        None => report.fail(PHASE, missing.into()),
    }
}
