//! Deletes every object that is left, then checks the whole run: nothing
//! left in the cloud, no finalizer left, no ClientToken with two effects,
//! and no credential in any status, Event or operator log line.

use std::sync::Arc;

use futures::{StreamExt, stream};

use crate::{
    KEY_A, KEY_B, Soak,
    driver::Track,
    phases::{credentials::WRONG_SECRET, new_journal},
    say,
};

const PHASE: &str = "cleanup";

pub async fn run(soak: &Arc<Soak>, mut live: Vec<Track>) {
    say(&format!("{PHASE}: deleting {} objects", live.len()));
    let count = live.len();
    let surfaced = surfaced_secrets(soak).await;
    stream::iter(live.iter_mut())
        .for_each_concurrent(64, |t| async move {
            soak.delete(t).await;
            soak.confirm(t, PHASE).await;
        })
        .await;
    new_journal(soak, "out of band and cleanup").await;
    let leaked = soak.check_leaks(PHASE, &[]).await;
    let twice = soak.check_tokens("whole run").await;
    let left = soak.cluster.all();

    let mut report = soak.report();
    report.figure(PHASE, "objects deleted", count);
    report.figure(PHASE, "objects left (finalizer not removed)", left.len());
    report.figure(PHASE, "cloud rules left", leaked);
    report.figure(PHASE, "ClientTokens with more than one effect", twice);
    report.figure(
        PHASE,
        "secrets in status, events or operator log",
        surfaced.len(),
    );
    for object in left {
        report.stuck.push(format!(
            "[{PHASE}] {} still exists: {}",
            kube::ResourceExt::name_any(object.as_ref()),
            crate::driver::describe_status(&object)
        ));
    }
    for place in surfaced {
        report.fail(PHASE, format!("a secret surfaced in {place}"));
    }
}

/// Where any of the soak's secrets appear: statuses (still cached),
/// Events of the rules' namespace, and the operator's log.
async fn surfaced_secrets(soak: &Soak) -> Vec<String> {
    let secrets = [KEY_A.1, KEY_B.1, WRONG_SECRET];
    let mut places = Vec::new();
    let mut check = |place: String, text: &str| {
        if secrets.iter().any(|s| text.contains(s)) {
            places.push(place);
        }
    };
    for object in soak.cluster.all() {
        let status = serde_json::to_string(&object.status).unwrap_or_default();
        check(
            format!("status of {}", kube::ResourceExt::name_any(object.as_ref())),
            &status,
        );
    }
    for (i, text) in soak.cluster.event_texts().await.iter().enumerate() {
        check(format!("event {i}"), text);
    }
    let log = std::fs::read_to_string(soak.config.logs.join("operator.log")).unwrap_or_default();
    check("the operator log".into(), &log);
    places
}
