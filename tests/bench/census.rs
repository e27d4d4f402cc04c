//! Follows the benchmark's SecurityGroupRules with one watch and counts them
//! by standing, so phases can wait for "all Ready" or "all gone".

use std::{collections::HashMap, time::Duration};

use anyhow::bail;
use futures::{StreamExt, TryStreamExt};
use kube::{
    Api, Client, ResourceExt,
    runtime::{WatchStreamExt, watcher},
};
use secgroup_operator::api::{SecurityGroupRule, conditions};
use tokio::{sync::watch, time::Instant};

/// Where one rule stands, as far as the benchmark cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Standing {
    Authorized,
    Revoked,
    Other,
}

fn standing(rule: &SecurityGroupRule) -> Standing {
    let Some(status) = &rule.status else {
        return Standing::Other;
    };
    match conditions::find(&status.conditions, "Ready") {
        Some(c) if c.status == "True" && c.observed_generation == rule.metadata.generation => {
            match c.reason.as_str() {
                "Authorized" => Standing::Authorized,
                "Revoked" => Standing::Revoked,
                _ => Standing::Other,
            }
        }
        _ => Standing::Other,
    }
}

/// Counts of the rules in the namespace.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub present: usize,
    pub authorized: usize,
    pub revoked: usize,
}

impl Counts {
    fn add(&mut self, s: Standing, sign: isize) {
        let slot = match s {
            Standing::Authorized => &mut self.authorized,
            Standing::Revoked => &mut self.revoked,
            Standing::Other => return,
        };
        *slot = slot.saturating_add_signed(sign);
    }
}

pub struct Census {
    counts: watch::Receiver<Counts>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Census {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Census {
    /// Starts watching `namespace`; returns once the initial list is in.
    pub async fn start(client: &Client, namespace: &str) -> anyhow::Result<Self> {
        let api: Api<SecurityGroupRule> = Api::namespaced(client.clone(), namespace);
        let (tx, mut rx) = watch::channel(Counts::default());
        let (synced_tx, synced) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut seen: HashMap<String, Standing> = HashMap::new();
            let mut synced_tx = Some(synced_tx);
            let mut events = watcher(api, watcher::Config::default())
                .default_backoff()
                .boxed();
            while let Ok(Some(event)) = events.try_next().await {
                tx.send_modify(|counts| match event {
                    watcher::Event::Apply(rule) | watcher::Event::InitApply(rule) => {
                        let now = standing(&rule);
                        match seen.insert(rule.name_any(), now) {
                            Some(before) => counts.add(before, -1),
                            None => counts.present += 1,
                        }
                        counts.add(now, 1);
                    }
                    watcher::Event::Delete(rule) => {
                        if let Some(before) = seen.remove(&rule.name_any()) {
                            counts.present -= 1;
                            counts.add(before, -1);
                        }
                    }
                    watcher::Event::Init => {}
                    watcher::Event::InitDone => {
                        if let Some(tx) = synced_tx.take() {
                            let _ = tx.send(());
                        }
                    }
                });
            }
        });
        let _ = synced.await;
        rx.mark_unchanged();
        Ok(Self { counts: rx, task })
    }

    pub fn now(&self) -> Counts {
        *self.counts.borrow()
    }

    /// Waits until `done` holds; the instant it was seen.
    pub async fn until(
        &mut self,
        what: &str,
        limit: Duration,
        done: impl Fn(&Counts) -> bool,
    ) -> anyhow::Result<Instant> {
        let outcome = tokio::time::timeout(limit, self.counts.wait_for(|c| done(c)))
            .await
            .map(|r| r.map(|_| ()));
        match outcome {
            Ok(Ok(())) => Ok(Instant::now()),
            Ok(Err(_)) => bail!("the rule watch ended while waiting for {what}"),
            Err(_) => bail!(
                "timed out after {limit:?} waiting for {what}; counts {:?}",
                self.now()
            ),
        }
    }
}
