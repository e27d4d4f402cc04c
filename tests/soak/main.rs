//! Soak: the operator binary against the test control plane and the fake
//! cloud over HTTP, under SIGKILLs, provider faults, an API server restart,
//! credential rotation, a killed leader of two replicas, leadership handed
//! over twice during a mass delete, and out-of-band changes. It prints its
//! figures at the end and fails if anything was lost, done twice or left
//! stuck.
//!
//! `make soak` runs it with 1,000 rules, `make test` with a shortened run
//! (`tests/soak.sh`); plain `cargo test` leaves it out. Settings (env):
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `SOAK_RULES` | 1000 | rules churned through their lifecycle |
//! | `SOAK_KILLS` | 20 | SIGKILLs of the operator at least, during the churn |
//! | `SOAK_KILL_EVERY_MS` | `1000-6000` | pause before each kill, drawn from this range |
//! | `SOAK_WINDOW` | 64 | lifecycles in flight at once |
//! | `SOAK_STEP_TIMEOUT_SECS` | 600 | how long one confirmation may take before the rule counts as stuck |
//! | `SOAK_CREDENTIAL_SECS` | 60 | how long rejected credentials are watched |
//! | `SOAK_SEED` | random | seeds the workload (printed) |
//! | `SOAK_LOGS` | a new directory, removed when the soak passes | operator and fake cloud logs, call journals |
//! | `SOAK_BIN_DIR` | `target/debug` | where `secgroup-operator` and `secgroup-fakecloud` are |

mod cloud;
mod cluster;
mod driver;
mod phases;
mod process;
mod report;
mod workload;

use std::{
    path::PathBuf,
    sync::{Mutex, MutexGuard, atomic::AtomicUsize},
    time::{Duration, Instant},
};

use rand::{Rng, SeedableRng, rngs::StdRng};
use secgroup_testkit::LogDir;

use crate::{
    cloud::Cloud,
    cluster::{Cluster, SECRET_NAMESPACE},
    driver::Track,
    process::Operator,
    report::Report,
    workload::{PROVIDERS, RULES_PER_GROUP, Slot, group_id},
};

/// Keys the fake cloud accepts: the first is installed at the start, the
/// second is what the credentials are rotated to.
pub const KEY_A: (&str, &str) = ("soak-key-a", "soak-secret-a-must-not-leak");
pub const KEY_B: (&str, &str) = ("soak-key-b", "soak-secret-b-must-not-leak");
/// Every ProviderConfig's `rateLimit` (qps, burst) outside the phases that slow it.
pub const RATE: (u32, u32) = (100, 100);

pub struct Config {
    pub rules: usize,
    pub kills: u32,
    pub kill_every: std::ops::Range<u64>,
    pub window: usize,
    pub step_timeout: Duration,
    pub credential_window: Duration,
    pub seed: u64,
    pub logs: PathBuf,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(text) => text
            .parse()
            .unwrap_or_else(|_| panic!("{name}={text:?} is not a valid value")),
        Err(_) => default,
    }
}

impl Config {
    fn from_env(logs: PathBuf) -> Self {
        let every: String = env_or("SOAK_KILL_EVERY_MS", "1000-6000".to_owned());
        let (low, high) = every
            .split_once('-')
            .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
            .filter(|(a, b)| a < b)
            .unwrap_or_else(|| {
                panic!("SOAK_KILL_EVERY_MS={every:?}: expected LOW-HIGH milliseconds")
            });
        Self {
            rules: env_or("SOAK_RULES", 1000),
            kills: env_or("SOAK_KILLS", 20),
            kill_every: low..high,
            window: env_or("SOAK_WINDOW", 64),
            step_timeout: Duration::from_secs(env_or("SOAK_STEP_TIMEOUT_SECS", 600)),
            credential_window: Duration::from_secs(env_or("SOAK_CREDENTIAL_SECS", 60)),
            seed: env_or("SOAK_SEED", rand::rng().random()),
            logs,
        }
    }
}

/// Everything the phases share.
pub struct Soak {
    pub config: Config,
    pub cluster: Cluster,
    pub cloud: Cloud,
    operator: Mutex<Operator>,
    /// Flags of the operator's next start.
    operator_flags: Mutex<Vec<String>>,
    rng: Mutex<StdRng>,
    next_slot: AtomicUsize,
    report: Mutex<Report>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Progress on stderr; the figures go to stdout at the end.
pub fn say(line: &str) {
    eprintln!("soak: {line}");
}

impl Soak {
    pub fn report(&self) -> MutexGuard<'_, Report> {
        lock(&self.report)
    }

    pub fn operator(&self) -> MutexGuard<'_, Operator> {
        lock(&self.operator)
    }

    pub fn random<T>(&self, draw: impl FnOnce(&mut StdRng) -> T) -> T {
        draw(&mut lock(&self.rng))
    }

    /// `n` slots no earlier phase used.
    pub fn slots(&self, n: usize) -> Vec<Slot> {
        let first = self
            .next_slot
            .fetch_add(n, std::sync::atomic::Ordering::SeqCst);
        (first..first + n).map(Slot::new).collect()
    }

    /// Starts the operator with `--resync-interval` (seconds); later
    /// restarts after a kill keep it.
    pub fn start_operator_with_resync(&self, secs: u64) {
        *lock(&self.operator_flags) = vec!["--resync-interval".into(), secs.to_string()];
        self.start_operator();
    }

    pub fn start_operator(&self) {
        let flags = self.operator_flags();
        self.operator().start(&flags);
    }

    /// The flags every operator start gets (replicas included).
    pub fn operator_flags(&self) -> Vec<String> {
        lock(&self.operator_flags).clone()
    }
}

async fn setup(config: Config) -> Soak {
    std::fs::create_dir_all(&config.logs).expect("log directory");
    assert!(
        std::env::var_os("KUBECONFIG").is_some() && std::env::var_os("TESTCLUSTER_DIR").is_some(),
        "the soak needs the test cluster: run `make soak` or tests/soak.sh"
    );
    process::check_operator_binary();
    let fake = process::fake_cloud(&format!("{}:{}", KEY_A.0, KEY_A.1), &config.logs);
    let cloud = Cloud::new(fake);
    let cluster = Cluster::connect().await;
    cluster.install_providers(cloud.url(), RATE).await;
    cluster.set_credentials(KEY_A.0, KEY_A.1).await;
    // Enough groups for every slot any phase may take.
    let slots = config.rules + 400 + phases::handover::rules(&config);
    let per_provider = slots.div_ceil(PROVIDERS.len());
    for provider in &PROVIDERS {
        for n in (0..per_provider).step_by(RULES_PER_GROUP) {
            cloud
                .admin()
                .create_group(provider.fake, provider.region, &group_id(provider, n))
                .await;
        }
    }
    let operator = Operator::new(SECRET_NAMESPACE, &config.logs);
    let rng = StdRng::seed_from_u64(config.seed);
    Soak {
        config,
        cluster,
        cloud,
        operator: Mutex::new(operator),
        operator_flags: Mutex::new(Vec::new()),
        rng: Mutex::new(rng),
        next_slot: AtomicUsize::new(0),
        report: Mutex::new(Report::default()),
    }
}

async fn run(config: Config) -> bool {
    let started = Instant::now();
    say(&format!(
        "seed {} (SOAK_SEED), {} rules, at least {} kills, logs in {}",
        config.seed,
        config.rules,
        config.kills,
        config.logs.display()
    ));
    let soak = std::sync::Arc::new(setup(config).await);
    soak.start_operator_with_resync(600);

    let mut live: Vec<Track> = Vec::new();
    live.extend(phases::churn::run(&soak).await);
    soak.check_leaks("churn", &live).await;
    live.extend(phases::outage::run(&soak).await);
    soak.check_leaks("apiserver restart", &live).await;
    phases::credentials::run(&soak, &mut live).await;
    soak.check_leaks("credentials", &live).await;
    live.extend(phases::leader_election::run(&soak).await);
    soak.check_leaks("leader election", &live).await;
    phases::handover::run(&soak).await;
    soak.check_leaks("handover during a mass delete", &live)
        .await;
    phases::out_of_band::run(&soak, &mut live).await;
    soak.check_leaks("out of band", &live).await;
    phases::cleanup::run(&soak, live).await;

    soak.operator().stop();
    let mut report = soak.report();
    report.figure("total", "run time", format!("{:.0?}", started.elapsed()));
    report.print();
    report.ok()
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut logs = LogDir::new("soak", "SOAK_LOGS");
    let ok = runtime.block_on(run(Config::from_env(logs.path().to_owned())));
    if ok {
        drop(logs);
    } else {
        say(&format!("logs kept in {}", logs.keep().display()));
    }
    // Processes die with their shells when the Soak is dropped at exit.
    std::process::exit(if ok { 0 } else { 1 });
}
