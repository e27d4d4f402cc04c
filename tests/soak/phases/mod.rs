//! The soak's scenarios, run one after another against one cluster, one
//! fake cloud and one operator (two replicas in the leader-election phase).

pub mod churn;
pub mod cleanup;
pub mod credentials;
pub mod handover;
pub mod leader_election;
pub mod out_of_band;
pub mod outage;
pub mod replicas;

use std::collections::HashMap;

use secgroup_testkit::CallRecord;

use crate::{Soak, driver::Track, report::Report, workload::Change};

/// Clears the call journal, keeping the last phase's calls in the log directory.
pub async fn new_journal(soak: &Soak, previous: &str) {
    let file = format!("calls-{}.json", previous.replace(' ', "-"));
    soak.cloud.save_calls(&soak.config.logs.join(file)).await;
    soak.cloud.admin().clear_calls().await;
}

/// Provider calls against the minimum a perfect operator needs for the
/// states the soak saw it confirm, and where the rest went: answered with
/// an injected fault, replayed from a ClientToken (a retry after a kill or a
/// lost answer), or neither.
pub fn call_figures(
    report: &mut Report,
    phase: &'static str,
    calls: &[CallRecord],
    min_calls: u64,
) {
    let count = |f: &dyn Fn(&CallRecord) -> bool| calls.iter().filter(|c| f(c)).count();
    let total = calls.len();
    let faulted = count(&|c| c.fault.is_some());
    let replayed = count(&|c| c.replayed);
    let mutations = count(&|c| c.is_mutation());
    let mut per_token: HashMap<&str, usize> = HashMap::new();
    for token in calls.iter().filter_map(|c| c.client_token.as_deref()) {
        *per_token.entry(token).or_default() += 1;
    }
    let busiest = per_token.values().max().copied().unwrap_or(0);
    #[allow(clippy::cast_possible_wrap)] // call counts
    let other = total as i64 - (faulted + replayed) as i64 - min_calls as i64;
    report.figure(
        phase,
        "provider calls / minimum",
        format!("{total} / {min_calls} ({:.2}x)", ratio(total, min_calls)),
    );
    report.figure(
        phase,
        "  mutations / describes",
        format!("{mutations} / {}", total - mutations),
    );
    report.figure(phase, "  answered with a fault", faulted);
    report.figure(phase, "  replayed from a ClientToken", replayed);
    // Negative when faulted calls stood in for needed ones (a describe
    // after authorize that failed is not repeated).
    report.figure(phase, "  not explained by minimum, faults, replays", other);
    report.figure(phase, "  most calls with one ClientToken", busiest);
}

pub fn ratio(a: usize, b: u64) -> f64 {
    #[allow(clippy::cast_precision_loss)] // figures for people to read
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// Provider calls a perfect operator needs for these tracks' confirmed states.
pub fn min_calls(tracks: &[Track]) -> u64 {
    tracks.iter().map(|t| t.min_calls).sum()
}

/// Fresh tracks for a short phase: a tenth of the rules, at least 30.
pub fn fresh_tracks(soak: &Soak) -> Vec<Track> {
    soak.slots((soak.config.rules / 10).max(30))
        .into_iter()
        .map(Track::new)
        .collect()
}

/// Declares every track's initial rule Present.
pub async fn declare_initial(soak: &Soak, tracks: &mut [Track]) {
    for t in tracks {
        let rule = t.slot.initial();
        soak.declare(t, &rule, "Present").await;
    }
}

/// Every other track goes Absent; the rest move to another port.
pub async fn absent_or_moved(soak: &Soak, tracks: &mut [Track]) {
    for (i, t) in tracks.iter_mut().enumerate() {
        if i % 2 == 0 {
            let rule = t.slot.initial();
            soak.declare(t, &rule, "Absent").await;
        } else {
            let rule = t.slot.changed(Change::Port);
            soak.declare(t, &rule, "Present").await;
        }
    }
}
