//! Running the operator as users do: metrics after real reconciles, and two
//! replicas with leader election, one of them killed.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};
use secgroup_operator::api::SecurityGroupRule;
use serde_json::{Value, json};

use crate::support::*;

fn suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..8].to_owned()
}

fn ssh_rule() -> Value {
    json!({"direction": "Ingress", "protocol": "TCP", "ports": {"from": 22, "to": 22}, "peer": {"cidr": "10.0.0.0/8"}})
}

/// After a rule is authorized through throttling, the shared operator's
/// /metrics carries every family, and no label names the rule, its
/// namespace or its group.
#[tokio::test]
async fn metrics_expose_reconciles_provider_calls_and_rule_states() {
    let shared = env();
    let client = Client::try_default().await.expect("kubeconfig");
    let ns = namespace(&client, "e2e-metrics", json!({})).await;
    let api: Api<SecurityGroupRule> = Api::namespaced(client, &ns);
    // A fake cloud of its own: its faults touch no other test.
    let fake = start_fakecloud("fakecloud-metrics.log");
    let fakecloud = fake.url.clone();
    let config = format!("e2e-metrics-{}", suffix());
    kubectl_apply(
        &config_manifest(&fakecloud, &config, "alibaba", "cloud-credentials").to_string(),
    );
    let group = group_id("sg");
    create_group_at(&fakecloud, "alibaba", "cn-hangzhou", &group).await;
    set_faults_at(
        &fakecloud,
        json!({"rules": [{"provider": "alibaba", "action": "AuthorizeSecurityGroup",
        "throttle": 1.0, "retryAfterMs": 100, "times": 2}]}),
    )
    .await;

    let name = format!("probe-{}", suffix());
    apply(
        &api,
        &name,
        &rule_manifest(&name, &config, &group, ssh_rule()),
    )
    .await;
    condition(&api, &name, "Ready", "True").await;

    let text = eventually("every metric family", Duration::from_secs(30), || async {
        let (_, text) = scrape(&shared.operator_metrics, "/metrics").await?;
        let missing: Vec<&str> = [
            "secgroup_reconciles_total{result=\"success\"}",
            "secgroup_reconcile_duration_seconds_count",
            "secgroup_reconciles_in_flight",
            "secgroup_requeues_pending",
            "secgroup_provider_calls_total{provider=\"alibaba\",action=\"authorize\",outcome=\"Success\"}",
            "secgroup_provider_calls_total{provider=\"alibaba\",action=\"authorize\",outcome=\"Throttled\"}",
            "secgroup_provider_call_duration_seconds_count{provider=\"alibaba\",action=\"authorize\"}",
            "secgroup_provider_throttled_total{provider=\"alibaba\"}",
            "secgroup_rules{state=\"Ready\"}",
            "secgroup_rules{state=\"Stalled\"}",
            "secgroup_rules{state=\"Reconciling\"}",
            "secgroup_leader",
        ]
        .into_iter()
        .filter(|family| !text.lines().any(|l| l.starts_with(family)))
        .collect();
        if missing.is_empty() { Ok(text) } else { Err(format!("missing {missing:?}")) }
    })
    .await;
    assert!(sample_sum(&text, "secgroup_reconciles_total{result=\"success\"}") >= 1.0);
    assert!(
        sample_sum(
            &text,
            "secgroup_provider_throttled_total{provider=\"alibaba\"}"
        ) >= 2.0,
        "{text}"
    );
    assert!(
        sample_sum(&text, "secgroup_rules{state=\"Ready\"}") >= 1.0,
        "{text}"
    );
    assert_eq!(
        sample_sum(&text, "secgroup_leader "),
        1.0,
        "no leader election: always leading"
    );
    for private in [&name, &ns, &group, &config] {
        assert!(
            !text.contains(private.as_str()),
            "{private} appears in /metrics"
        );
    }

    delete(&api, &name).await;
    gone(&api, &name).await;
}

/// One replica of the pair at `metrics`, started as `identity`.
struct Replica {
    identity: &'static str,
    metrics: String,
    process: Tied,
}

impl Replica {
    async fn scrape(&self) -> Result<String, String> {
        scrape(&self.metrics, "/metrics")
            .await
            .map(|(_, text)| text)
    }

    async fn leading(&self) -> bool {
        self.scrape()
            .await
            .is_ok_and(|t| sample_sum(&t, "secgroup_leader ") == 1.0)
    }

    async fn until_leading(&self) {
        let what = format!("{} leading", self.identity);
        eventually(&what, Duration::from_secs(60), || async {
            if self.leading().await {
                Ok(())
            } else {
                Err("not leading".into())
            }
        })
        .await;
    }

    async fn provider_calls(&self) -> f64 {
        let text = self.scrape().await.expect("replica serves /metrics");
        sample_sum(&text, "secgroup_provider_calls_total")
    }
}

async fn lease_holder(leases: &Api<Lease>, name: &str) -> Option<String> {
    leases
        .get_opt(name)
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec?.holder_identity)
        .filter(|h| !h.is_empty())
}

/// Two replicas share one lease: only the holder calls the provider. The
/// holder is SIGKILLed; the standby takes the lease over and authorizes a
/// rule created after the kill. SIGTERM releases the lease for a new replica
/// to take at once, and that one stops when its lease is taken from it.
#[tokio::test]
async fn a_standby_takes_over_when_the_leader_is_killed() {
    env();
    let client = Client::try_default().await.expect("kubeconfig");
    let ns = namespace(&client, "e2e-leader", json!({})).await;
    let api: Api<SecurityGroupRule> = Api::namespaced(client.clone(), &ns);
    let leases: Api<Lease> = Api::namespaced(client, &ns);
    let lease = "secgroup-operator-e2e";
    let shard = format!("{OWN_OPERATOR_LABEL}=leader-election");
    // One replica turns leader election on by flag, the other by environment.
    let start = |identity: &'static str, by_flag: bool| {
        let metrics = free_addr();
        let mut args = vec!["--namespace", &ns, "--label-selector", &shard];
        args.extend([
            "--metrics-addr",
            &metrics,
            "--leader-election-lease-name",
            lease,
        ]);
        let mut envs = vec![("POD_NAME", identity), ("POD_NAMESPACE", ns.as_str())];
        if by_flag {
            args.push("--leader-election");
        } else {
            envs.push(("SECGROUP_LEADER_ELECTION", "true"));
        }
        let process = start_operator(&args, &envs, &format!("operator-{identity}.log"));
        Replica {
            identity,
            metrics,
            process,
        }
    };
    let replicas = [start("replica-a", true), start("replica-b", false)];

    let leader = eventually(
        "one leader and one ready standby",
        Duration::from_secs(60),
        || async {
            let mut leading = Vec::new();
            for r in &replicas {
                let (ready, body) = scrape(&r.metrics, "/readyz").await?;
                if ready != 200 {
                    return Err(format!("{} not ready: {body}", r.identity));
                }
                if r.leading().await {
                    leading.push(r.identity);
                }
            }
            match leading.as_slice() {
                [one] => Ok(*one),
                other => Err(format!("leading: {other:?}")),
            }
        },
    )
    .await;
    assert_eq!(lease_holder(&leases, lease).await.as_deref(), Some(leader));
    let (leader, standby) = if replicas[0].identity == leader {
        (&replicas[0], &replicas[1])
    } else {
        (&replicas[1], &replicas[0])
    };
    let (_, standby_ready) = scrape(&standby.metrics, "/readyz")
        .await
        .expect("standby answers");
    assert!(standby_ready.starts_with("standby"), "{standby_ready}");

    let group = group_id("sg");
    create_group("alibaba", "cn-hangzhou", &group).await;
    let labelled = |name: &str, rule: Value| {
        let mut manifest = rule_manifest(name, "e2e-alibaba", &group, rule);
        manifest["metadata"]["labels"] = json!({OWN_OPERATOR_LABEL: "leader-election"});
        manifest
    };
    apply(&api, "before", &labelled("before", ssh_rule())).await;
    condition(&api, "before", "Ready", "True").await;
    assert!(
        leader.provider_calls().await >= 2.0,
        "authorize and describe by the leader"
    );
    assert_eq!(
        standby.provider_calls().await,
        0.0,
        "the standby called the provider"
    );

    leader.process.signal("KILL");
    let killed = Instant::now();
    apply(
        &api,
        "after",
        &labelled("after", json!({"direction": "Ingress", "protocol": "TCP", "ports": {"from": 443, "to": 443}, "peer": {"cidr": "10.0.0.0/8"}})),
    )
    .await;
    standby.until_leading().await;
    let took_over = killed.elapsed();
    condition(&api, "after", "Ready", "True").await;
    let reconciled = killed.elapsed();
    println!(
        "leader election: SIGKILL of {} -> {} leading after {:.1} s (lease duration 15 s), new rule Ready after {:.1} s",
        leader.identity,
        standby.identity,
        took_over.as_secs_f64(),
        reconciled.as_secs_f64()
    );
    assert_eq!(
        lease_holder(&leases, lease).await.as_deref(),
        Some(standby.identity)
    );
    assert!(standby.provider_calls().await >= 1.0);
    assert_eq!(cloud_rules("alibaba", "cn-hangzhou", &group).await.len(), 2);

    for name in ["before", "after"] {
        delete(&api, name).await;
        gone(&api, name).await;
    }
    assert!(
        cloud_rules("alibaba", "cn-hangzhou", &group)
            .await
            .is_empty()
    );

    // A leader stopped with SIGTERM gives the lease up instead of letting it expire...
    standby.process.signal("TERM");
    eventually("the lease released", Duration::from_secs(30), || async {
        match lease_holder(&leases, lease).await {
            None => Ok(()),
            Some(holder) => Err(format!("held by {holder}")),
        }
    })
    .await;
    // ...so a new replica leads at once.
    let started = Instant::now();
    let third = start("replica-c", true);
    third.until_leading().await;
    let took_released = started.elapsed();

    // A leader whose lease another holder took stops at its next renewal.
    let mut taken = leases.get(lease).await.expect("lease");
    let spec = taken.spec.as_mut().expect("lease spec");
    spec.holder_identity = Some("intruder".into());
    spec.renew_time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
        jiff::Timestamp::now(),
    ));
    leases
        .replace(lease, &Default::default(), &taken)
        .await
        .expect("lease taken");
    let taken_at = Instant::now();
    eventually("replica-c stopped", Duration::from_secs(30), || async {
        match scrape(&third.metrics, "/healthz").await {
            Err(_) => Ok(()),
            Ok(_) => Err("still serving".into()),
        }
    })
    .await;
    println!(
        "leader election: a released lease was taken by a new replica in {:.1} s; a leader whose lease was taken stopped after {:.1} s (renewal every 5 s)",
        took_released.as_secs_f64(),
        taken_at.elapsed().as_secs_f64()
    );
    assert_eq!(
        lease_holder(&leases, lease).await.as_deref(),
        Some("intruder")
    );
}
