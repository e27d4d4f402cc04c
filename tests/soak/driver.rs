//! Declaring rules, waiting for the operator to confirm them, and checking
//! the fake cloud against every confirmation.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use futures::{StreamExt, stream};
use kube::{
    ResourceExt,
    api::{DeleteParams, Patch, PatchParams},
};
use secgroup_operator::api::{SecurityGroupRule, conditions, rule::RuleSpec};

use crate::{
    Soak,
    cluster::retry,
    workload::{PROVIDERS, Slot, State, compare, cost},
};

/// One object as the soak drives it.
#[derive(Clone, Debug)]
pub struct Track {
    pub slot: Slot,
    /// Every rule it ever declared: any of them left in the cloud is a leak.
    pub declared: Vec<RuleSpec>,
    /// What it declares now; `Gone` once deleted.
    pub intent: State,
    /// `metadata.generation` after the last edit.
    pub generation: i64,
    /// The last state the operator confirmed.
    pub confirmed: State,
    /// Provider calls a perfect operator would have needed for the confirmed states.
    pub min_calls: u64,
}

impl Track {
    pub fn new(slot: Slot) -> Self {
        Self {
            slot,
            declared: Vec::new(),
            intent: State::Gone,
            generation: 0,
            confirmed: State::Gone,
            min_calls: 0,
        }
    }

    pub fn rule(&self) -> Option<&RuleSpec> {
        self.declared.last()
    }
}

/// Ready at exactly this generation, with the reason the declared state gives.
fn ready_at(rule: &SecurityGroupRule, generation: i64, reason: &str) -> bool {
    let Some(status) = &rule.status else {
        return false;
    };
    rule.metadata.generation == Some(generation)
        && status.observed_generation == Some(generation)
        && conditions::find(&status.conditions, conditions::types::READY).is_some_and(|c| {
            c.status == "True" && c.reason == reason && c.observed_generation == Some(generation)
        })
}

impl Soak {
    /// Declares `rule` with `ensure` (`Present` or `Absent`), creating the object if needed.
    pub async fn declare(&self, track: &mut Track, rule: &RuleSpec, ensure: &str) {
        let manifest = track.slot.manifest(rule, ensure);
        let name = track.slot.name.clone();
        let (params, patch) = (PatchParams::apply("soak").force(), Patch::Apply(&manifest));
        let applied = retry(&format!("applying {name}"), || {
            self.cluster.rules.patch(&name, &params, &patch)
        })
        .await;
        if track.rule() != Some(rule) {
            track.declared.push(rule.clone());
        }
        track.generation = applied.metadata.generation.unwrap_or_default();
        track.intent = if ensure == "Present" {
            State::Present(rule.clone())
        } else {
            State::Absent
        };
    }

    pub async fn delete(&self, track: &mut Track) {
        let name = track.slot.name.clone();
        retry(&format!("deleting {name}"), || async {
            match self
                .cluster
                .rules
                .delete(&name, &DeleteParams::default())
                .await
            {
                Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
                other => other.map(drop),
            }
        })
        .await;
        track.intent = State::Gone;
    }

    /// Waits until the operator confirms the declared state (Ready at the
    /// last edit's generation, or the object gone), then checks the cloud.
    /// Returns false, and counts the object stuck, if that takes too long.
    pub async fn confirm(&self, track: &mut Track, phase: &str) -> bool {
        let deadline = Instant::now() + self.config.step_timeout;
        let reason = match track.intent {
            State::Present(_) => "Authorized",
            _ => "Revoked",
        };
        loop {
            let object = self.cluster.get(&track.slot.name);
            let done = match (&track.intent, &object) {
                (State::Gone, None) => true,
                (State::Gone, Some(_)) => false,
                (_, Some(rule)) => ready_at(rule, track.generation, reason),
                (_, None) => false,
            };
            if done {
                break;
            }
            if Instant::now() > deadline {
                let seen = object
                    .map(|o| describe_status(&o))
                    .unwrap_or_else(|| "no object".into());
                self.report().stuck.push(format!(
                    "[{phase}] {} not {:?} after {:?}: {seen}",
                    track.slot.name, track.intent, self.config.step_timeout
                ));
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let group = self
            .cloud
            .rules(track.slot.provider.fake, &track.slot.group)
            .await;
        let problems = compare(&track.slot, &track.intent, &track.declared, &group);
        self.report()
            .lost
            .extend(problems.into_iter().map(|p| format!("[{phase}] {p}")));
        track.min_calls += cost(&track.confirmed, &track.intent);
        track.confirmed = track.intent.clone();
        true
    }

    /// Confirms every track's declared state, many at once.
    pub async fn settle(&self, tracks: &mut [Track], phase: &str) {
        stream::iter(tracks.iter_mut())
            .for_each_concurrent(64, |t| async move {
                self.confirm(t, phase).await;
            })
            .await;
    }

    /// Every rule in the soak's groups must belong to a live object that
    /// declares it Present; anything else was not revoked.
    pub async fn check_leaks(&self, phase: &str, live: &[Track]) -> usize {
        let by_group = self.cloud.all_rules().await;
        let mut owners: HashMap<&str, Vec<&Track>> = HashMap::new();
        for t in live {
            owners.entry(t.slot.group.as_str()).or_default().push(t);
        }
        let mut leaked = Vec::new();
        for (group, rules) in &by_group {
            if !PROVIDERS.iter().any(|p| group.starts_with(p.group_prefix)) {
                continue;
            }
            for rule in rules {
                let owned = owners.get(group.as_str()).is_some_and(|ts| {
                    ts.iter().any(|t| match &t.intent {
                        State::Present(r) => t.slot.holds(rule, r),
                        _ => false,
                    })
                });
                if !owned {
                    leaked.push(format!(
                        "[{phase}] cloud rule {} in {group} belongs to no Present object: {:?}",
                        rule.rule_id, rule.rule
                    ));
                }
            }
        }
        let count = leaked.len();
        self.report().lost.extend(leaked);
        count
    }

    /// Tokens that had more than one effect, summed over access keys (a
    /// token retried under a rotated key is looked up afresh by the cloud).
    pub async fn check_tokens(&self, phase: &str) -> usize {
        let mut effects: HashMap<String, u64> = HashMap::new();
        for record in self.cloud.admin().tokens().await {
            *effects.entry(record.client_token).or_default() += record.effects;
        }
        let twice: Vec<String> = effects
            .into_iter()
            .filter(|(_, n)| *n > 1)
            .map(|(token, n)| format!("[{phase}] ClientToken {token} had {n} effects"))
            .collect();
        let count = twice.len();
        self.report().duplicated.extend(twice);
        count
    }
}

/// The conditions and last operation, for a stuck object's report line.
pub fn describe_status(rule: &SecurityGroupRule) -> String {
    let Some(status) = &rule.status else {
        return format!(
            "generation {:?}, no status, finalizers {:?}",
            rule.metadata.generation,
            rule.finalizers()
        );
    };
    let conditions: Vec<String> = status
        .conditions
        .iter()
        .map(|c| {
            format!(
                "{}={} {} (gen {:?}) {}",
                c.type_, c.status, c.reason, c.observed_generation, c.message
            )
        })
        .collect();
    format!(
        "generation {:?}, deleting {}, {}; last operation {:?}",
        rule.metadata.generation,
        rule.metadata.deletion_timestamp.is_some(),
        conditions.join("; "),
        status
            .last_operation
            .as_ref()
            .map(|o| (o.action, o.result, o.code.clone()))
    )
}
