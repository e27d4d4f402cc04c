//! Changes made behind the operator's back, with a short `--resync-interval`:
//! a managed rule deleted at the provider is authorized again under a new
//! ClientToken; an identical rule planted before its object is created is
//! not taken over (and survives the object's deletion); and a quiet cloud
//! draws no mutations at all.

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

pub async fn run(soak: &Arc<Soak>, live: &mut [Track]) {
    soak.operator().stop();
    soak.start_operator_with_resync(RESYNC_SECS);
    new_journal(soak, "leader election").await;
    let min_before = min_calls(live);
    let n = (soak.config.rules / 20).max(12);
    say(&format!(
        "{PHASE}: {n} rules deleted at the provider, {n} planted, resync every {RESYNC_SECS}s"
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

    let mut planted_tracks: Vec<Track> = soak.slots(n).into_iter().map(Track::new).collect();
    let mut planted = Vec::new();
    for t in &planted_tracks {
        let slot = &t.slot;
        let id = match slot.provider.fake {
            "baidu" => format!("r-planted{}", slot.index),
            _ => format!("sgr-planted{}", slot.index),
        };
        let rule = slot.initial();
        soak.cloud
            .admin()
            .add_rule(
                slot.provider.fake,
                slot.provider.region,
                &slot.group,
                &rule,
                Some(&id),
            )
            .await;
        planted.push(id);
    }
    for t in &mut planted_tracks {
        let rule = t.slot.initial();
        soak.declare(t, &rule, "Present").await;
        t.min_calls += 2; // authorize + describe
    }
    let left_alone = stream::iter(planted_tracks.iter().zip(&planted))
        .map(|(t, id)| async move { left_alone(soak, t, id).await })
        .buffer_unordered(32)
        .filter(|ok| std::future::ready(*ok))
        .count()
        .await;
    // Deleting the objects revokes nothing that was planted.
    stream::iter(planted_tracks.iter_mut())
        .for_each_concurrent(32, |t| async move {
            soak.delete(t).await;
            soak.confirm(t, PHASE).await;
        })
        .await;
    let mut survived = 0;
    for (t, id) in planted_tracks.iter().zip(&planted) {
        let slot = &t.slot;
        let cloud = soak.cloud.rules(slot.provider.fake, &slot.group).await;
        if cloud.iter().any(|c| c.rule_id == *id) {
            survived += 1;
            soak.cloud
                .admin()
                .delete_rule(slot.provider.fake, slot.provider.region, &slot.group, id)
                .await;
        }
    }
    let calls = soak.cloud.admin().calls(&[]).await;

    // Quiet: several resyncs describe every group and must change nothing.
    tokio::time::sleep(Duration::from_secs(3 * RESYNC_SECS + 2)).await;
    let quiet = soak.cloud.admin().calls(&[]).await.split_off(calls.len());
    let quiet_mutations = quiet.iter().filter(|c| c.is_mutation()).count();

    let mut report = soak.report();
    report.figure(
        PHASE,
        "deleted at the provider / authorized again with a new token",
        format!("{} / {restored} in {drift_time:.1?}", victims.len()),
    );
    report.figure(
        PHASE,
        "planted beforehand / left alone / survived their objects' deletion",
        format!("{} / {left_alone} / {survived}", planted_tracks.len()),
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
    if left_alone < planted_tracks.len() || survived < planted_tracks.len() {
        report.fail(
            PHASE,
            format!(
                "of {} planted rules, {left_alone} were left alone and {survived} survived",
                planted_tracks.len()
            ),
        );
    }
    if quiet_mutations > 0 {
        report.fail(
            PHASE,
            format!("{quiet_mutations} mutations while nothing changed"),
        );
    }
    let min_after = min_calls(live) + min_calls(&planted_tracks);
    call_figures(&mut report, PHASE, &calls, min_after - min_before);
}

/// Whether the object declaring a planted rule left it alone: on Alibaba and
/// Apsara Stack (one rule per identity) it is Stalled with
/// `RuleAlreadyExists` and records nothing; on Baidu (the remark, and so
/// the ownership mark, is part of the identity) it is Ready with a rule of
/// its own beside the planted one.
async fn left_alone(soak: &Soak, t: &Track, planted: &str) -> bool {
    let slot = &t.slot;
    let deadline = Instant::now() + soak.config.step_timeout;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let Some(status) = soak.cluster.get(&slot.name).and_then(|o| o.status.clone()) else {
            continue;
        };
        let condition = |type_| {
            conditions::find(&status.conditions, type_)
                .filter(|c| c.status == "True" && c.observed_generation == Some(t.generation))
                .map(|c| c.reason.clone())
        };
        let settled = match slot.provider.fake {
            "baidu" => {
                condition(conditions::types::READY).as_deref() == Some("Authorized")
                    && status.rule_id.as_deref().is_some_and(|id| id != planted)
            }
            _ => {
                condition(conditions::types::STALLED).as_deref() == Some("RuleAlreadyExists")
                    && status.rule_id.is_none()
                    && status.applied_rule.is_none()
            }
        };
        if settled {
            let cloud = soak.cloud.rules(slot.provider.fake, &slot.group).await;
            return cloud.iter().any(|c| c.rule_id == planted);
        }
    }
    let seen = soak
        .cluster
        .get(&slot.name)
        .map(|o| crate::driver::describe_status(&o))
        .unwrap_or_default();
    soak.report().stuck.push(format!(
        "[{PHASE}] {} did not leave the planted rule {planted} alone: {seen}",
        slot.name
    ));
    false
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
        .admin()
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
