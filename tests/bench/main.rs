//! `make bench`: figures of the operator at scale, measured side by side in one
//! run against the test control plane and the fake cloud. Prints a Markdown
//! table; see BENCHMARKS.md for what each row means and the goals.
//!
//! Needs the test cluster's environment (tests/bench.sh sets it up).

mod apiserver;
mod census;
mod env;
mod fairness;
mod load;
mod procfs;
mod report;
mod settings;

use std::time::Duration;

use clap::Parser;
use futures::{StreamExt, TryStreamExt, stream};
use kube::{
    Api, Client,
    api::{DeleteParams, Patch, PatchParams, PostParams},
};
use secgroup_operator::api::SecurityGroupRule;
use secgroup_testkit::{Admin, CallRecord};
use serde_json::json;
use tokio::time::Instant;

use self::{
    apiserver::Writes,
    census::Census,
    env::{BULK_CONFIG, Env, IDLE_CONFIG, UNTHROTTLED, UNWATCHED_LABEL},
    report::{Report, percentile},
    settings::{Settings, Sizes},
};

/// The ProviderConfig named by rules the operator never sees.
const UNWATCHED: &str = "bench-unwatched";

/// Everything a phase needs.
struct Bench {
    env: Env,
    admin: Admin,
    api: Api<SecurityGroupRule>,
    namespace: String,
    census: Census,
    sizes: Sizes,
    report: Report,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::parse();
    let sizes = settings.sizes();
    eprintln!("bench: {sizes:?}");
    let load = report::Load::sample();
    let env = Env::start(sizes.resync, &settings.operator_args).await?;
    let admin = Admin::new(&env.fakecloud);
    let namespace = format!(
        "secgroup-bench-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..6]
    );
    env::apply(&env.client, &env::namespace(&namespace)).await?;
    let census = Census::start(&env.client, &namespace).await?;
    let mut bench = Bench {
        api: Api::namespaced(env.client.clone(), &namespace),
        env,
        admin,
        namespace,
        census,
        sizes,
        report: Report::default(),
    };
    // A failed phase still prints what was measured before it.
    let outcome = bench.run().await;
    if outcome.is_err() {
        eprintln!("bench: logs kept in {}", bench.env.logs.keep().display());
    }
    println!("\nmachine: {}; {}", report::machine(), load.summary());
    println!(
        "operator: {}; finalizer policy: {}; harness build: {}; sizes: {:?}\n",
        env::operator_binary().display(),
        if env::finalizer_policy() { "on" } else { "off" },
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        bench.sizes
    );
    print!("{}", bench.report.render());
    outcome
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

fn per_rule(count: u64, rules: usize) -> f64 {
    count as f64 / rules.max(1) as f64
}

/// "12.3 s (41 % of one core)": CPU the operator used over `elapsed`.
fn cpu_figure(cpu: f64, elapsed: Duration) -> String {
    format!(
        "{cpu:.1} s ({:.0} % of one core)",
        100.0 * cpu / elapsed.as_secs_f64().max(0.001)
    )
}

/// "3.00 per rule (POST 1.00, PATCH 1.00, APPLY status 1.00); events 1.00".
fn writes_figure(writes: &Writes, rules: usize) -> String {
    let parts: Vec<String> = writes
        .rules
        .iter()
        .map(|(k, v)| format!("{k} {:.2}", per_rule(*v, rules)))
        .collect();
    format!(
        "{:.2} ({}); Events {:.2}",
        per_rule(writes.rule_writes(), rules),
        parts.join(", "),
        per_rule(writes.events, rules)
    )
}

impl Bench {
    async fn run(&mut self) -> anyhow::Result<()> {
        self.fakecloud_throughput().await?;
        self.create_and_delete().await?;
        let idle = self.idle().await?;
        let rest = self.delete_latency(idle).await?;
        self.absent_then_delete(rest).await?;
        self.fairness().await
    }

    fn client(&self) -> &Client {
        &self.env.client
    }

    fn pid(&self) -> u32 {
        self.env.operator.pid()
    }

    fn rule(
        &self,
        name: &str,
        config: &str,
        group: &str,
        port: usize,
    ) -> anyhow::Result<SecurityGroupRule> {
        let unwatched = if config == UNWATCHED { "true" } else { "false" };
        Ok(serde_json::from_value(json!({
            "apiVersion": "secgroup.dev/v1alpha1",
            "kind": "SecurityGroupRule",
            "metadata": {"name": name, "namespace": self.namespace, "labels": {UNWATCHED_LABEL: unwatched}},
            "spec": {
                "providerConfigRef": {"name": config},
                "securityGroupId": group,
                "rule": {"direction": "Ingress", "protocol": "TCP",
                         "ports": {"from": port, "to": port}, "peer": {"cidr": "10.0.0.0/8"}},
            },
        }))?)
    }

    /// `count` rules named `{prefix}-{i}`, rule i in group i % groups.
    async fn create_rules(
        &self,
        prefix: &str,
        config: &str,
        count: usize,
        groups: usize,
    ) -> anyhow::Result<Vec<String>> {
        for g in 0..groups {
            self.admin
                .create_group("alibaba", env::REGION, &format!("sg-{prefix}{g:03}"))
                .await;
        }
        let rules = (0..count)
            .map(|i| {
                let name = format!("{prefix}-{i:05}");
                let group = format!("sg-{prefix}{:03}", i % groups);
                self.rule(&name, config, &group, 1 + i / groups)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let names = rules
            .iter()
            .map(|r| r.metadata.name.clone().unwrap_or_default())
            .collect();
        stream::iter(rules)
            .map(|rule| async move { self.api.create(&PostParams::default(), &rule).await })
            .buffer_unordered(self.sizes.client_concurrency)
            .try_for_each(|_| async { Ok(()) })
            .await?;
        Ok(names)
    }

    async fn delete_rules(&self, names: &[String]) -> anyhow::Result<()> {
        stream::iter(names)
            .map(|name| async move { self.api.delete(name, &DeleteParams::default()).await })
            .buffer_unordered(self.sizes.client_concurrency)
            .try_for_each(|_| async { Ok(()) })
            .await?;
        Ok(())
    }

    async fn set_bulk_rate(&self, rate: (u32, u32)) -> anyhow::Result<()> {
        let config = env::provider_config(BULK_CONFIG, &self.env.fakecloud, rate, Some(86_400));
        env::apply(self.client(), &config).await?;
        // A change of pace alone wakes none of the rules; should anything
        // else run, let it settle first.
        procfs::wait_idle(self.pid(), Duration::from_secs(120)).await;
        Ok(())
    }

    async fn fakecloud_throughput(&mut self) -> anyhow::Result<()> {
        let (length, concurrency) = (self.sizes.load, self.sizes.load_concurrency);
        eprintln!("bench: loading the fake cloud for {length:?}, {concurrency} in flight");
        self.admin
            .create_group("alibaba", env::REGION, "sg-load")
            .await;
        let mut t = load::run(&self.env.fakecloud, "sg-load", length, concurrency).await?;
        let rate = t.per_second();
        let (p50, p99) = (
            percentile(&mut t.latencies_ms, 50.0),
            percentile(&mut t.latencies_ms, 99.0),
        );
        self.report.goal(
            format!(
                "fake cloud: signed DescribeSecurityGroupAttribute, {concurrency} in flight, {}",
                secs(t.elapsed)
            ),
            format!(
                "{rate:.0} requests/s ({} requests, {} failed; p50 {p50:.1} ms, p99 {p99:.1} ms)",
                t.requests, t.failed
            ),
            "≥ 2000/s",
            rate >= 2000.0 && t.failed == 0,
        );
        self.admin.clear_calls().await;
        Ok(())
    }

    /// Creates rules the operator does not watch: the API server's own pace
    /// for this client, the floor under "every rule Ready".
    async fn api_server_alone(&mut self) -> anyhow::Result<f64> {
        let k = self.sizes.rules.min(2_500);
        eprintln!("bench: {k} rules the operator does not watch");
        let started = Instant::now();
        let names = self.create_rules("alone", UNWATCHED, k, 1).await?;
        let rate = k as f64 / started.elapsed().as_secs_f64();
        self.delete_rules(&names).await?;
        self.census
            .until(
                "the unwatched rules deleted",
                Duration::from_secs(300),
                |c| c.present == 0,
            )
            .await?;
        self.report.info(
            format!("API server alone: create {k} rules the operator does not watch"),
            format!("{rate:.0} creates/s"),
        );
        Ok(rate)
    }

    async fn create_and_delete(&mut self) -> anyhow::Result<()> {
        let alone = self.api_server_alone().await?;
        let (n, groups, qps) = (self.sizes.rules, self.sizes.groups, self.sizes.delete_qps);
        eprintln!("bench: creating {n} rules over {groups} groups");
        let before = Writes::scrape(self.client()).await?;
        let cpu = procfs::cpu_seconds(self.pid());
        let started = Instant::now();
        let names = self.create_rules("bulk", BULK_CONFIG, n, groups).await?;
        let accepted = started.elapsed();
        let limit = Duration::from_secs(120) + Duration::from_millis(30) * n as u32;
        let ready = self
            .census
            .until("every rule Ready", limit, |c| c.authorized >= n)
            .await?
            - started;
        let cpu = procfs::cpu_seconds(self.pid()) - cpu;
        let writes = Writes::scrape(self.client()).await?.since(&before);
        let calls = self.admin.calls(&[]).await;
        let ratio = ready.as_secs_f64() / accepted.as_secs_f64();
        self.report.info(
            format!("create {n} rules over {groups} groups: API server accepted all"),
            secs(accepted),
        );
        self.report.goal(
            "… every rule Ready (unthrottled provider), and Ready ÷ accepted",
            format!("{} ({ratio:.2})", secs(ready)),
            "ratio ≤ 1.5",
            ratio <= 1.5,
        );
        // Were the API server the only limit, at its pace alone: every write
        // of the phase (creates, the operator's writes, Events) in sequence.
        let floor = (writes.rule_writes() + writes.events) as f64 / alone;
        self.report.info(
            "… bound by the API server: all writes of the phase at its pace alone, ÷ accepted",
            format!(
                "{:.1} s ({:.2}); {:.0} writes/s during the phase",
                floor,
                floor / accepted.as_secs_f64(),
                (writes.rule_writes() + writes.events) as f64 / ready.as_secs_f64()
            ),
        );
        self.report.info("… operator CPU", cpu_figure(cpu, ready));
        self.report.info(
            "… provider calls per rule",
            format!(
                "{:.2} authorize, {:.2} describe",
                per_rule(count(&calls, "Authorize"), n),
                per_rule(count(&calls, "Describe"), n)
            ),
        );
        self.report.goal(
            "API-server writes per rule, create → Ready (SecurityGroupRule writes incl. the create)",
            writes_figure(&writes, n),
            "≤ 3",
            per_rule(writes.rule_writes(), n) <= 3.0,
        );
        let rss = procfs::peak_rss_mib(self.pid());
        self.report.goal(
            format!("operator peak RSS (VmHWM) with {n} rules watched"),
            format!("{rss:.1} MiB"),
            "≤ 64 MiB",
            rss <= 64.0,
        );

        let burst = (qps / 10).max(1);
        let ceiling = f64::from(qps) * 1.25;
        eprintln!(
            "bench: deleting {n} rules at rateLimit {qps}/s (burst {burst}), fake cloud ceiling {ceiling}/s"
        );
        self.set_bulk_rate((qps, burst)).await?;
        self.admin
            .set_faults(&json!({"rules": [{"qps": ceiling}]}))
            .await;
        self.admin.clear_calls().await;
        let before = Writes::scrape(self.client()).await?;
        // The API server takes deletes slower than Q when it is loaded: the
        // operator is paused while they go in, so what is timed is its pace.
        procfs::signal(self.pid(), "STOP")?;
        let started = Instant::now();
        let deleted = self.delete_rules(&names).await;
        let submitted = started.elapsed();
        let cpu = procfs::cpu_seconds(self.pid());
        procfs::signal(self.pid(), "CONT")?;
        deleted?;
        let resumed = Instant::now();
        let floor = Duration::from_secs_f64(n as f64 / f64::from(qps));
        let gone = self
            .census
            .until(
                "every rule deleted",
                floor * 4 + Duration::from_secs(300),
                |c| c.present == 0,
            )
            .await?
            - resumed;
        let cpu = procfs::cpu_seconds(self.pid()) - cpu;
        let writes = Writes::scrape(self.client()).await?.since(&before);
        let calls = self.admin.calls(&[]).await;
        let throttled = calls.iter().filter(|c| c.throttled()).count();
        let ratio = gone.as_secs_f64() / floor.as_secs_f64();
        self.admin.set_faults(&json!({"rules": []})).await;
        self.set_bulk_rate(UNTHROTTLED).await?;
        self.report.info(
            format!("delete {n} rules, operator paused: API server accepted all deletes"),
            secs(submitted),
        );
        self.report.goal(
            format!("… operator resumed: every rule gone at rateLimit {qps}/s (burst {burst}; fake cloud ceiling {ceiling:.0}/s), ÷ N/Q = {}", secs(floor)),
            format!("{} ({ratio:.3})", secs(gone)),
            "≤ 1.1",
            ratio <= 1.1,
        );
        self.report.info("… operator CPU", cpu_figure(cpu, gone));
        self.report.goal(
            "… provider calls; throttled responses",
            format!(
                "{} revoke, {} other; {throttled} throttled",
                count(&calls, "Revoke"),
                calls.len() - count(&calls, "Revoke") as usize
            ),
            "0 throttled",
            throttled == 0,
        );
        self.report.goal(
            "API-server writes per rule, delete → gone (incl. the delete)",
            writes_figure(&writes, n),
            "≤ 2",
            per_rule(writes.rule_writes(), n) <= 2.0,
        );
        let peak = procfs::peak_rss_mib(self.pid());
        self.report.goal(
            "operator peak RSS after the delete (the whole run so far)",
            format!("{peak:.1} MiB (now {:.1} MiB)", procfs::rss_mib(self.pid())),
            "≤ 64 MiB",
            peak <= 64.0,
        );
        Ok(())
    }

    /// Leaves `idle_rules` Ready rules alone and counts what happens.
    async fn idle(&mut self) -> anyhow::Result<Vec<String>> {
        let (m, groups, length, resync) = (
            self.sizes.idle_rules,
            self.sizes.idle_groups,
            self.sizes.idle,
            self.sizes.resync,
        );
        eprintln!("bench: {m} idle rules over {groups} groups for {length:?}, resync {resync:?}");
        let names = self.create_rules("idle", IDLE_CONFIG, m, groups).await?;
        self.census
            .until(
                "the idle rules Ready",
                Duration::from_secs(120) + Duration::from_millis(30) * m as u32,
                |c| c.authorized >= m,
            )
            .await?;
        procfs::wait_idle(self.pid(), Duration::from_secs(60)).await;
        self.admin.clear_calls().await;
        let before = Writes::scrape(self.client()).await?;
        tokio::time::sleep(length).await;
        let writes = Writes::scrape(self.client()).await?.since(&before);
        let calls = self.admin.calls(&[]).await;
        let describes = count(&calls, "Describe") as usize;
        let mut per_group = std::collections::BTreeMap::<&str, usize>::new();
        for c in calls.iter().filter(|c| c.action.starts_with("Describe")) {
            *per_group
                .entry(c.group.as_deref().unwrap_or_default())
                .or_default() += 1;
        }
        let (least, most) = (
            per_group.values().min().copied().unwrap_or(0),
            per_group.values().max().copied().unwrap_or(0),
        );
        let resyncs = length.as_secs_f64() / resync.as_secs_f64();
        self.report.goal(
            format!("{m} Ready rules idle {} (resync {}, ≈ {resyncs:.1} intervals): provider calls besides describes", secs(length), secs(resync)),
            (calls.len() - describes).to_string(),
            "0",
            calls.len() == describes,
        );
        let per_resync_ok = per_group.len() == groups && (most as f64) <= (resyncs / 0.9).ceil();
        self.report.goal(
            "… describes",
            format!(
                "{describes}: {} of {groups} groups, {least}–{most} each",
                per_group.len()
            ),
            "1 per group per resync",
            per_resync_ok,
        );
        self.report.goal(
            "… API-server writes",
            format!(
                "{} SecurityGroupRule, {} Event",
                writes.rule_writes(),
                writes.events
            ),
            "0",
            writes.rule_writes() == 0 && writes.events == 0,
        );
        Ok(names)
    }

    /// Deletes single rules on the idle operator, timing delete → revoke call.
    async fn delete_latency(&mut self, mut names: Vec<String>) -> anyhow::Result<Vec<String>> {
        let samples = self.sizes.latency_samples.min(names.len());
        eprintln!("bench: timing {samples} single deletes");
        let rest = names.split_off(samples);
        let mut latencies = Vec::new();
        for name in &names {
            let left = self.census.now().present - 1;
            self.admin.clear_calls().await;
            let sent = jiff::Timestamp::now();
            self.api.delete(name, &DeleteParams::default()).await?;
            let revoked = self.first_revoke(Duration::from_secs(30)).await?;
            latencies.push(revoked.duration_since(sent).as_secs_f64() * 1000.0);
            self.census
                .until("the rule deleted", Duration::from_secs(30), |c| {
                    c.present <= left
                })
                .await?;
        }
        let (p50, p99) = (
            percentile(&mut latencies, 50.0),
            percentile(&mut latencies, 99.0),
        );
        self.report.info(
            format!("delete → provider revoke call, {samples} single rules, idle operator"),
            format!("p50 {p50:.1} ms, p99 {p99:.1} ms"),
        );
        Ok(rest)
    }

    async fn first_revoke(&self, limit: Duration) -> anyhow::Result<jiff::Timestamp> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(time) = self
                .admin
                .calls(&[])
                .await
                .into_iter()
                .find(|c| c.action.starts_with("Revoke"))
                .and_then(|c| c.timestamp())
            {
                return Ok(time);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        anyhow::bail!("no revoke call within {limit:?}")
    }

    /// `ensure: Absent` on the rest, then deletes them: writes per rule of each.
    async fn absent_then_delete(&mut self, names: Vec<String>) -> anyhow::Result<()> {
        let m = names.len();
        eprintln!("bench: {m} rules to Absent, then deleted");
        let before = Writes::scrape(self.client()).await?;
        let api = &self.api;
        stream::iter(&names)
            .map(|name| async move {
                let patch = json!({"spec": {"ensure": "Absent"}});
                api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
            })
            .buffer_unordered(self.sizes.client_concurrency)
            .try_for_each(|_| async { Ok(()) })
            .await?;
        let limit = Duration::from_secs(120) + Duration::from_millis(30) * m as u32;
        self.census
            .until("the rules revoked", limit, |c| c.revoked >= m)
            .await?;
        let revoked = Writes::scrape(self.client()).await?;
        self.delete_rules(&names).await?;
        self.census
            .until("the rules deleted", limit, |c| c.present == 0)
            .await?;
        let gone = Writes::scrape(self.client()).await?;
        self.report.goal(
            "API-server writes per rule, Absent → revoked (incl. the patch)",
            writes_figure(&revoked.since(&before), m),
            "≤ 3",
            per_rule(revoked.since(&before).rule_writes(), m) <= 3.0,
        );
        self.report.goal(
            "API-server writes per rule, delete of a revoked rule → gone (incl. the delete)",
            writes_figure(&gone.since(&revoked), m),
            "≤ 2",
            per_rule(gone.since(&revoked).rule_writes(), m) <= 2.0,
        );
        Ok(())
    }
}

/// Calls whose action starts with `prefix` ("Revoke" covers both directions).
fn count(calls: &[CallRecord], prefix: &str) -> u64 {
    calls
        .iter()
        .filter(|c| c.action.starts_with(prefix))
        .count() as u64
}
