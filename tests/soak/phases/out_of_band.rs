//! Changes made behind the operator's back, with a short `--resync-interval`:
//! a managed rule deleted at the provider is authorized again under a new
//! ClientToken; a rule that already exists when its object is created is
//! adopted, not duplicated; and a quiet cloud draws no mutations at all.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use futures::{StreamExt, stream};
use secgroup_operator::api::conditions;

use crate::{
    Soak,
    driver::Track,
    phases::{call_figures, min_calls, new_journal},
    say,
    workload::State,
};

const PHASE: &str = "out of band";
const RESYNC_SECS: u64 = 5;

pub async fn run(soak: &Arc<Soak>, live: &mut Vec<Track>) {
    soak.operator().stop();
    soak.start_operator_with_resync(RESYNC_SECS);
    new_journal(soak, "leader election").await;
    let min_before = min_calls(live);
    let n = (soak.config.rules / 20).max(12);
    say(&format!(
        "{PHASE}: {n} rules deleted at the provider, {n} adopted, resync every {RESYNC_SECS}s"
    ));

    let started = Instant::now();
    let victims: Vec<usize> = live
        .iter()
        .enumerate()
        .filter(|(_, t)| matches!(t.intent, State::Present(_)))
        .map(|(i, _)| i)
        .take(n)
        .collect();
    let outcomes: Vec<bool> = stream::iter(victims.iter().map(|&i| live[i].clone()))
        .map(|t| async move { deleted_and_restored(soak, &t).await })
        .buffer_unordered(32)
        .collect()
        .await;
    let restored = outcomes.iter().filter(|ok| **ok).count();
    for &i in &victims {
        live[i].min_calls += 2; // authorize + describe, once more
    }
    let drift_time = started.elapsed();

    let mut adopted_tracks: Vec<Track> = soak.slots(n).into_iter().map(Track::new).collect();
    let mut preexisting = Vec::new();
    for t in &adopted_tracks {
        let slot = &t.slot;
        let id = match slot.provider.fake {
            "baidu" => format!("r-adopt{}", slot.index),
            _ => format!("sgr-adopt{}", slot.index),
        };
        let rule = slot.initial();
        soak.cloud
            .add_rule(
                slot.provider.fake,
                slot.provider.region,
                &slot.group,
                &rule,
                &id,
            )
            .await;
        preexisting.push(id);
    }
    for t in &mut adopted_tracks {
        let rule = t.slot.initial();
        soak.declare(t, &rule, "Present").await;
    }
    soak.settle(&mut adopted_tracks, PHASE).await;
    let mut adopted = 0;
    for (t, id) in adopted_tracks.iter().zip(&preexisting) {
        let cloud = soak.cloud.rules(t.slot.provider.fake, &t.slot.group).await;
        let same_rule_kept = cloud
            .iter()
            .any(|c| c.rule_id == *id && t.slot.holds(c, &t.slot.initial()));
        let recorded = soak
            .cluster
            .get(&t.slot.name)
            .and_then(|o| o.status.clone())
            .and_then(|s| s.rule_id)
            .is_some_and(|r| r == *id);
        if same_rule_kept && recorded {
            adopted += 1;
        }
    }
    let calls = soak.cloud.calls().await;

    // Quiet: several resyncs describe every group and must change nothing.
    tokio::time::sleep(Duration::from_secs(3 * RESYNC_SECS + 2)).await;
    let quiet = soak.cloud.calls().await.split_off(calls.len());
    let quiet_mutations = quiet.iter().filter(|c| c.is_mutation()).count();

    let mut report = soak.report();
    report.figure(
        PHASE,
        "deleted at the provider / authorized again with a new token",
        format!("{} / {restored} in {drift_time:.1?}", victims.len()),
    );
    report.figure(
        PHASE,
        "present beforehand / adopted (same rule id, no copy)",
        format!("{} / {adopted}", adopted_tracks.len()),
    );
    report.figure(
        PHASE,
        &format!(
            "calls in {}s of quiet: mutations / describes",
            3 * RESYNC_SECS + 2
        ),
        format!("{quiet_mutations} / {}", quiet.len() - quiet_mutations),
    );
    if restored < victims.len() {
        report.fail(
            PHASE,
            format!(
                "{} rules deleted at the provider were not authorized again under a new token",
                victims.len() - restored
            ),
        );
    }
    if adopted < adopted_tracks.len() {
        report.fail(
            PHASE,
            format!(
                "{} existing rules were not adopted",
                adopted_tracks.len() - adopted
            ),
        );
    }
    if quiet_mutations > 0 {
        report.fail(
            PHASE,
            format!("{quiet_mutations} mutations while nothing changed"),
        );
    }
    let min_after = min_calls(live) + min_calls(&adopted_tracks);
    call_figures(&mut report, PHASE, &calls, min_after - min_before);
    drop(report);
    live.append(&mut adopted_tracks);
}

/// Deletes the track's cloud rule out of band and waits until the operator
/// authorizes it again with a ClientToken it never used for this rule.
async fn deleted_and_restored(soak: &Soak, t: &Track) -> bool {
    let State::Present(rule) = &t.intent else {
        return false;
    };
    let Some(object) = soak.cluster.get(&t.slot.name) else {
        return false;
    };
    let old_token = object
        .status
        .as_ref()
        .and_then(|s| s.last_operation.as_ref())
        .and_then(|op| op.client_token.clone());
    let cloud = soak.cloud.rules(t.slot.provider.fake, &t.slot.group).await;
    let Some(victim) = cloud.iter().find(|c| t.slot.holds(c, rule)) else {
        return false;
    };
    soak.cloud
        .delete_rule(
            t.slot.provider.fake,
            t.slot.provider.region,
            &t.slot.group,
            &victim.rule_id,
        )
        .await;
    let deadline = Instant::now() + soak.config.step_timeout;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let Some(object) = soak.cluster.get(&t.slot.name) else {
            return false;
        };
        let Some(status) = &object.status else {
            continue;
        };
        let ready = conditions::find(&status.conditions, conditions::types::READY)
            .is_some_and(|c| c.status == "True" && c.reason == "Authorized");
        let token = status
            .last_operation
            .as_ref()
            .and_then(|op| op.client_token.clone());
        if !ready || token.is_none() || token == old_token {
            continue;
        }
        let cloud = soak.cloud.rules(t.slot.provider.fake, &t.slot.group).await;
        if cloud.iter().any(|c| t.slot.holds(c, rule)) {
            return true;
        }
    }
    let seen = soak
        .cluster
        .get(&t.slot.name)
        .map(|o| crate::driver::describe_status(&o));
    soak.report().stuck.push(format!(
        "[{PHASE}] {} deleted at the provider, not restored: {seen:?}",
        t.slot.name
    ));
    false
}
