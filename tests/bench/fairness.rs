//! Fair sharing of one ProviderConfig between namespaces: tenant A
//! bulk-creates rules at a throttled rate while tenant B deletes single
//! rules; what is timed is B's delete → revoke call.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt, stream};
use kube::{
    Api,
    api::{DeleteParams, ListParams, PostParams},
};
use secgroup_operator::api::{SecurityGroupRule, conditions};
use serde_json::json;
use tokio::time::Instant;

use super::{Bench, env, report::percentile, secs};

const FAIR_CONFIG: &str = "bench-fair";
const B_GROUP: &str = "sg-fairb";
const A_GROUPS: usize = 10;

fn fair_rule(
    namespace: &str,
    name: &str,
    group: &str,
    port: usize,
) -> anyhow::Result<SecurityGroupRule> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "secgroup.dev/v1alpha1",
        "kind": "SecurityGroupRule",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "providerConfigRef": {"name": FAIR_CONFIG},
            "securityGroupId": group,
            "rule": {"direction": "Ingress", "protocol": "TCP",
                     "ports": {"from": port, "to": port}, "peer": {"cidr": "10.0.0.0/8"}},
        },
    }))?)
}

async fn ready_count(api: &Api<SecurityGroupRule>) -> anyhow::Result<usize> {
    Ok(api
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .filter(|r| {
            r.status.as_ref().is_some_and(|s| {
                conditions::find(&s.conditions, "Ready").is_some_and(|c| c.status == "True")
            })
        })
        .count())
}

impl Bench {
    pub(super) async fn fairness(&mut self) -> anyhow::Result<()> {
        let (n, q, samples) = (
            self.sizes.fair_rules,
            self.sizes.fair_qps,
            self.sizes.fair_samples,
        );
        let burst = (q / 5).max(1);
        eprintln!(
            "bench: fairness: tenant A creates {n} rules at {q}/s while tenant B deletes {samples} single rules"
        );
        let config =
            env::provider_config(FAIR_CONFIG, &self.env.fakecloud, (q, burst), Some(86_400));
        env::apply(self.client(), &config).await?;
        let (ns_a, ns_b) = (
            format!("{}-a", self.namespace),
            format!("{}-b", self.namespace),
        );
        env::apply(self.client(), &env::namespace(&ns_a)).await?;
        env::apply(self.client(), &env::namespace(&ns_b)).await?;
        let api_a: Api<SecurityGroupRule> = Api::namespaced(self.client().clone(), &ns_a);
        let api_b: Api<SecurityGroupRule> = Api::namespaced(self.client().clone(), &ns_b);
        self.admin
            .create_group("alibaba", env::REGION, B_GROUP)
            .await;
        for g in 0..A_GROUPS {
            self.admin
                .create_group("alibaba", env::REGION, &format!("sg-faira{g:03}"))
                .await;
        }

        // B's rules first, Ready before A's burst.
        let b_names: Vec<String> = (0..samples).map(|i| format!("b-{i:03}")).collect();
        for (i, name) in b_names.iter().enumerate() {
            api_b
                .create(
                    &PostParams::default(),
                    &fair_rule(&ns_b, name, B_GROUP, 1 + i)?,
                )
                .await?;
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        while ready_count(&api_b).await? < samples {
            anyhow::ensure!(
                Instant::now() < deadline,
                "tenant B's rules not Ready in time"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        self.admin.clear_calls().await;

        let a_rules = (0..n)
            .map(|i| {
                fair_rule(
                    &ns_a,
                    &format!("a-{i:05}"),
                    &format!("sg-faira{:03}", i % A_GROUPS),
                    1 + i / A_GROUPS,
                )
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let concurrency = self.sizes.client_concurrency;
        let creator = api_a.clone();
        let started = Instant::now();
        let creates = tokio::spawn(async move {
            stream::iter(a_rules)
                .map(|rule| {
                    let api = creator.clone();
                    async move { api.create(&PostParams::default(), &rule).await }
                })
                .buffer_unordered(concurrency)
                .try_for_each(|_| async { Ok(()) })
                .await
        });
        // Let A's backlog build up before the first of B's deletes.
        tokio::time::sleep(self.sizes.fair_spacing * 2).await;
        let limit =
            Duration::from_secs_f64(2.0 * n as f64 / f64::from(q)) + Duration::from_secs(60);
        let mut latencies = Vec::new();
        let mut during = 0;
        let mut accepted = Vec::new();
        for name in &b_names {
            let sent = jiff::Timestamp::now();
            let clock = Instant::now();
            api_b.delete(name, &DeleteParams::default()).await?;
            accepted.push(clock.elapsed().as_millis());
            let revoked = self.revoke_after(B_GROUP, sent, limit).await?;
            latencies.push(revoked.duration_since(sent).as_secs_f64() * 1000.0);
            if self.authorized_in_a().await? < n {
                during += 1;
            }
            tokio::time::sleep(self.sizes.fair_spacing).await;
        }
        let creating = creates.is_finished();
        creates.await??;
        eprintln!(
            "bench: fairness: A's creates still going after B's samples: {creating}; {:.1} s in",
            started.elapsed().as_secs_f64()
        );
        let deadline = Instant::now() + limit;
        while self.authorized_in_a().await? < n {
            anyhow::ensure!(
                Instant::now() < deadline,
                "tenant A's rules not authorized in time"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let a_done = started.elapsed();
        eprintln!(
            "bench: fairness: tenant B's delete → revoke, in order (ms): {latencies:.0?}; the DELETE itself: {accepted:?}"
        );
        let (p50, p99) = (
            percentile(&mut latencies, 50.0),
            percentile(&mut latencies, 99.0),
        );
        self.report.info(
            format!("fair sharing: tenant A creates {n} rules at rateLimit {q}/s (burst {burst}): every authorize made"),
            format!("{} (authorize and describe per rule: floor {})", secs(a_done), secs(Duration::from_secs_f64(2.0 * n as f64 / f64::from(q)))),
        );
        self.report.goal(
            format!("… meanwhile tenant B deletes single rules: delete → revoke call, {samples} samples ({during} while A still had rules to authorize)"),
            format!("p50 {p50:.0} ms, p99 {p99:.0} ms"),
            "p99 ≤ 2 s",
            p99 <= 2000.0,
        );

        // Clean up at full speed.
        let config = env::provider_config(
            FAIR_CONFIG,
            &self.env.fakecloud,
            env::UNTHROTTLED,
            Some(86_400),
        );
        env::apply(self.client(), &config).await?;
        api_a
            .delete_collection(&DeleteParams::default(), &ListParams::default())
            .await?;
        let deadline =
            Instant::now() + Duration::from_secs(120) + Duration::from_millis(30) * n as u32;
        while !api_a
            .list(&ListParams::default().limit(1))
            .await?
            .items
            .is_empty()
        {
            anyhow::ensure!(
                Instant::now() < deadline,
                "tenant A's rules not deleted in time"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Ok(())
    }

    /// The journal time of the first revoke in `group` at or after `sent`
    /// (one delete at a time), waiting up to `limit`.
    async fn revoke_after(
        &self,
        group: &str,
        sent: jiff::Timestamp,
        limit: Duration,
    ) -> anyhow::Result<jiff::Timestamp> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            let first = self
                .admin
                .calls(&[("action", "RevokeSecurityGroup")])
                .await
                .into_iter()
                .filter(|c| c.group.as_deref() == Some(group))
                .filter_map(|c| c.timestamp())
                .filter(|time| *time >= sent)
                .min();
            if let Some(time) = first {
                return Ok(time);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        anyhow::bail!("no revoke in {group} within {limit:?}")
    }

    async fn authorized_in_a(&self) -> anyhow::Result<usize> {
        Ok(self
            .admin
            .calls(&[("action", "AuthorizeSecurityGroup")])
            .await
            .iter()
            .filter(|c| {
                c.group
                    .as_deref()
                    .is_some_and(|g| g.starts_with("sg-faira"))
            })
            .count())
    }
}
