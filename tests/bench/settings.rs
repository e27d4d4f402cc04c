//! Sizes and rates of one benchmark run: flags, each also an environment variable.

use std::time::Duration;

use clap::Parser;

/// Benchmarks secgroup-operator against the test control plane and the fake cloud.
/// Run by `make bench` (tests/bench.sh), which starts the control plane first.
#[derive(Parser, Debug, Clone)]
#[command(name = "bench")]
pub struct Settings {
    /// Small sizes and short waits: checks that every phase runs, in well under a minute.
    #[arg(long, env = "BENCH_SMOKE")]
    pub smoke: bool,
    /// Rules created, then deleted under the rate limit.
    #[arg(long, env = "BENCH_RULES")]
    pub rules: Option<usize>,
    /// Security groups the rules are spread over.
    #[arg(long, env = "BENCH_GROUPS")]
    pub groups: Option<usize>,
    /// ProviderConfig rateLimit.qps while deleting.
    #[arg(long, env = "BENCH_DELETE_QPS")]
    pub delete_qps: Option<u32>,
    /// Rules left Ready and idle.
    #[arg(long, env = "BENCH_IDLE_RULES")]
    pub idle_rules: Option<usize>,
    /// Security groups of the idle rules.
    #[arg(long, env = "BENCH_IDLE_GROUPS")]
    pub idle_groups: Option<usize>,
    /// How long the idle rules are watched.
    #[arg(long, env = "BENCH_IDLE_SECONDS")]
    pub idle_seconds: Option<u64>,
    /// The operator's --resync-interval (the idle rules' drift check), seconds.
    #[arg(long, env = "BENCH_RESYNC_SECONDS")]
    pub resync_seconds: Option<u64>,
    /// Single deletes timed from the delete to the provider's revoke.
    #[arg(long, env = "BENCH_LATENCY_SAMPLES")]
    pub latency_samples: Option<usize>,
    /// How long the fake cloud is loaded with signed requests.
    #[arg(long, env = "BENCH_LOAD_SECONDS")]
    pub load_seconds: Option<u64>,
    /// Requests in flight during the fake cloud load.
    #[arg(long, env = "BENCH_LOAD_CONCURRENCY", default_value_t = 32)]
    pub load_concurrency: usize,
    /// Creates and deletes the harness keeps in flight against the API server.
    #[arg(long, env = "BENCH_CLIENT_CONCURRENCY", default_value_t = 32)]
    pub client_concurrency: usize,
    /// Rules tenant A creates at once in the fair-sharing phase.
    #[arg(long, env = "BENCH_FAIR_RULES")]
    pub fair_rules: Option<usize>,
    /// The shared ProviderConfig's rateLimit.qps in the fair-sharing phase.
    #[arg(long, env = "BENCH_FAIR_QPS")]
    pub fair_qps: Option<u32>,
    /// Single deletes tenant B times during tenant A's burst.
    #[arg(long, env = "BENCH_FAIR_SAMPLES")]
    pub fair_samples: Option<usize>,
    /// Extra arguments for `secgroup-operator run`, e.g. "--concurrency 32".
    #[arg(long, env = "BENCH_OPERATOR_ARGS", default_value = "")]
    pub operator_args: String,
}

/// The sizes in force: flags and variables over the full or the smoke defaults.
#[derive(Debug, Clone)]
pub struct Sizes {
    pub rules: usize,
    pub groups: usize,
    pub delete_qps: u32,
    pub idle_rules: usize,
    pub idle_groups: usize,
    pub idle: Duration,
    pub resync: Duration,
    pub latency_samples: usize,
    pub load: Duration,
    pub load_concurrency: usize,
    pub client_concurrency: usize,
    pub fair_rules: usize,
    pub fair_qps: u32,
    pub fair_samples: usize,
    /// Pause between tenant B's deletes.
    pub fair_spacing: Duration,
}

impl Settings {
    pub fn sizes(&self) -> Sizes {
        let full = !self.smoke;
        let pick = |given: Option<u64>, full_default: u64, smoke_default: u64| {
            given.unwrap_or(if full { full_default } else { smoke_default })
        };
        let count = |given: Option<usize>, f: usize, s: usize| {
            usize::try_from(pick(given.map(|g| g as u64), f as u64, s as u64)).unwrap_or(usize::MAX)
        };
        Sizes {
            rules: count(self.rules, 10_000, 300),
            groups: count(self.groups, 100, 10).max(1),
            delete_qps: self
                .delete_qps
                .unwrap_or(if full { 200 } else { 100 })
                .max(1),
            idle_rules: count(self.idle_rules, 1_000, 60),
            idle_groups: count(self.idle_groups, 10, 3).max(1),
            idle: Duration::from_secs(pick(self.idle_seconds, 300, 8)),
            resync: Duration::from_secs(pick(self.resync_seconds, 120, 3).max(1)),
            latency_samples: count(self.latency_samples, 100, 5),
            load: Duration::from_secs(pick(self.load_seconds, 10, 1)),
            load_concurrency: self.load_concurrency.max(1),
            client_concurrency: self.client_concurrency.max(1),
            fair_rules: count(self.fair_rules, 2_000, 40),
            fair_qps: self.fair_qps.unwrap_or(50).max(1),
            fair_samples: count(self.fair_samples, 20, 3).max(1),
            fair_spacing: Duration::from_millis(if full { 1_000 } else { 200 }),
        }
    }
}
