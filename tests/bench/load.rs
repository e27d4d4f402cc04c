//! Loads the fake cloud with signed DescribeSecurityGroupAttribute requests,
//! made by the operator's own Alibaba client (ACS3-HMAC-SHA256), so every
//! request goes through the fake cloud's signature check.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use futures::future::join_all;
use secgroup_operator::provider::{
    Credentials, GroupRef, ProviderKind, ProviderSettings, RateLimit, connect,
};

use super::env::{ACCESS_KEY, REGION, SECRET_KEY};

pub struct Throughput {
    pub requests: usize,
    pub failed: usize,
    pub elapsed: Duration,
    pub latencies_ms: Vec<f64>,
}

impl Throughput {
    pub fn per_second(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }
}

/// `concurrency` loops send requests for `length`; at most 50,000 per loop.
pub async fn run(
    fakecloud: &str,
    group: &str,
    length: Duration,
    concurrency: usize,
) -> anyhow::Result<Throughput> {
    let mut settings = ProviderSettings::new(ProviderKind::Alibaba, REGION);
    settings.endpoint = Some(fakecloud.parse()?);
    settings.rate_limit = RateLimit {
        qps: 1_000_000,
        burst: 1_000_000,
    };
    let provider = connect(&settings, Credentials::new(ACCESS_KEY, SECRET_KEY, None))?;
    let group = Arc::new(GroupRef {
        region: REGION.into(),
        security_group_id: group.into(),
    });
    let started = Instant::now();
    let deadline = started + length;
    let loops = (0..concurrency).map(|_| {
        let (provider, group) = (provider.clone(), group.clone());
        tokio::spawn(async move {
            let (mut latencies, mut failed) = (Vec::new(), 0);
            while Instant::now() < deadline && latencies.len() < 50_000 {
                let sent = Instant::now();
                if provider.describe(&group).await.is_err() {
                    failed += 1;
                }
                latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
            }
            (latencies, failed)
        })
    });
    let results: Vec<(Vec<f64>, usize)> = join_all(loops)
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    let elapsed = started.elapsed();
    let failed = results.iter().map(|(_, f)| f).sum();
    let latencies_ms: Vec<f64> = results.into_iter().flat_map(|(l, _)| l).collect();
    Ok(Throughput {
        requests: latencies_ms.len(),
        failed,
        elapsed,
        latencies_ms,
    })
}
