//! The credentials Secret is rotated to a second key, then replaced with a
//! wrong one, then fixed. With the wrong key the operator must back off
//! (few calls per minute) and say why (Stalled with the provider's code);
//! once fixed, everything converges.

use std::{collections::HashMap, sync::Arc, time::Instant};

use secgroup_operator::api::conditions;

use crate::{
    KEY_B, Soak,
    driver::Track,
    phases::{call_figures, min_calls, new_journal},
    say,
};

const PHASE: &str = "credentials";
pub const WRONG_SECRET: &str = "soak-wrong-secret-must-not-leak";
/// What the providers answer a signature made with the wrong secret.
const REJECTED_CODE: &str = "SignatureDoesNotMatch";

pub async fn run(soak: &Arc<Soak>, live: &mut Vec<Track>) {
    let n = (soak.config.rules / 10).max(30);
    say(&format!(
        "{PHASE}: rotate to a second key, then a wrong one, then fix it ({n} rules)"
    ));
    new_journal(soak, "apiserver restart").await;
    let min_before = min_calls(live);

    // Rotation: the cloud learns key B, the Secret switches to it.
    soak.cloud.admin().add_key(KEY_B.0, KEY_B.1).await;
    soak.cluster.set_credentials(KEY_B.0, KEY_B.1).await;
    let mut fresh: Vec<Track> = soak.slots(n).into_iter().map(Track::new).collect();
    for t in &mut fresh {
        let rule = t.slot.initial();
        soak.declare(t, &rule, "Present").await;
    }
    soak.settle(&mut fresh, PHASE).await;
    let rotated = soak.cloud.admin().calls(&[]).await;
    let seen_before_wrong_key = rotated.len();
    let signed_by = |calls: &[secgroup_testkit::CallRecord], key: &str| {
        calls
            .iter()
            .filter(|c| c.access_key_id.as_deref() == Some(key))
            .count()
    };

    // The wrong key: edits pile up and must wait, quietly.
    soak.cluster.set_credentials(KEY_B.0, WRONG_SECRET).await;
    let wrong_at = Instant::now();
    let mut edited: Vec<Track> = soak.slots(n / 2).into_iter().map(Track::new).collect();
    for t in &mut edited {
        let rule = t.slot.initial();
        soak.declare(t, &rule, "Present").await;
    }
    for t in &mut fresh[..n / 2] {
        let rule = t.slot.initial();
        soak.declare(t, &rule, "Absent").await;
    }
    tokio::time::sleep(soak.config.credential_window).await;
    let window = wrong_at.elapsed();
    let rejected = soak
        .cloud
        .admin()
        .calls(&[])
        .await
        .split_off(seen_before_wrong_key);
    let waiting: Vec<&Track> = edited.iter().chain(&fresh[..n / 2]).collect();
    let waiting_count = waiting.len();
    let (stalled, with_code) = stalled_with_code(soak, &waiting);

    // The fix: key B again. Everything must converge.
    let fixed_at = Instant::now();
    soak.cluster.set_credentials(KEY_B.0, KEY_B.1).await;
    fresh.append(&mut edited);
    soak.settle(&mut fresh, PHASE).await;
    let converged = fixed_at.elapsed();
    soak.settle(live, PHASE).await;
    let all_calls = soak.cloud.admin().calls(&[]).await;

    let mut per_token: HashMap<&str, usize> = HashMap::new();
    for token in rejected.iter().filter_map(|c| c.client_token.as_deref()) {
        *per_token.entry(token).or_default() += 1;
    }
    let busiest = per_token.values().max().copied().unwrap_or(0);
    #[allow(clippy::cast_precision_loss)] // figures for people to read
    let per_minute = rejected.len() as f64 * 60.0 / window.as_secs_f64();
    let mut report = soak.report();
    report.figure(
        PHASE,
        "calls after rotation, key A / key B",
        format!(
            "{} / {}",
            signed_by(&rotated, crate::KEY_A.0),
            signed_by(&rotated, KEY_B.0)
        ),
    );
    report.figure(PHASE, "rules waiting on the wrong key", waiting_count);
    report.figure(
        PHASE,
        "  calls with the wrong key",
        format!("{} in {window:.0?} ({per_minute:.1}/min)", rejected.len()),
    );
    report.figure(PHASE, "  most calls for one intent", busiest);
    report.figure(PHASE, "  Stalled CredentialsRejected", stalled);
    report.figure(
        PHASE,
        &format!("  Stalled naming {REJECTED_CODE}"),
        with_code,
    );
    report.figure(PHASE, "converged after the fix", format!("{converged:.1?}"));
    // A rule retried a few times in the window is backing off; more is a loop.
    if busiest > 4 {
        report.fail(
            PHASE,
            format!("one intent was tried {busiest} times with rejected credentials"),
        );
    }
    if with_code < waiting_count {
        report.fail(
            PHASE,
            format!(
                "{} of {} waiting rules do not say the provider's code",
                waiting_count - with_code,
                waiting_count
            ),
        );
    }
    let min_after = min_calls(live) + min_calls(&fresh);
    call_figures(&mut report, PHASE, &all_calls, min_after - min_before);
    drop(report);
    live.append(&mut fresh);
}

/// How many of `tracks` are Stalled with CredentialsRejected at their
/// generation, and how many of those name the provider's code in the message.
fn stalled_with_code(soak: &Soak, tracks: &[&Track]) -> (usize, usize) {
    let (mut stalled, mut with_code) = (0, 0);
    for t in tracks {
        let Some(object) = soak.cluster.get(&t.slot.name) else {
            continue;
        };
        let Some(status) = &object.status else {
            continue;
        };
        let Some(c) = conditions::find(&status.conditions, conditions::types::STALLED) else {
            continue;
        };
        if c.status != "True"
            || c.reason != "CredentialsRejected"
            || c.observed_generation != Some(t.generation)
        {
            continue;
        }
        stalled += 1;
        if c.message.contains(REJECTED_CODE) {
            with_code += 1;
        }
    }
    (stalled, with_code)
}
