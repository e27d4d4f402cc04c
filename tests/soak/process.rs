//! The fake cloud and operator processes, tied to the soak (testkit's
//! [`Tied`]): nothing outlives it however it ends. The operator can be
//! SIGKILLed and restarted, and every start and kill is counted.

use std::{
    fs::OpenOptions,
    io::Write,
    path::{Path, PathBuf},
    process::Command,
};

pub use secgroup_testkit::net::{free_addr, ready};
use secgroup_testkit::{FakeCloud, Output, Tied};

/// Where the operator and fake cloud binaries are: `SOAK_BIN_DIR`, else
/// this workspace's build.
pub fn binary(name: &str) -> PathBuf {
    std::env::var_os("SOAK_BIN_DIR").map_or_else(
        || secgroup_testkit::binary(name),
        |dir| PathBuf::from(dir).join(name),
    )
}

/// Refuses an operator binary built from other sources than this checkout
/// (a shared target directory may hold another branch's build): the CRDs it
/// prints must be the ones in `crds/`.
pub fn check_operator_binary() {
    let out = std::env::temp_dir().join(format!("soak-crds-{}", std::process::id()));
    let status = Command::new(binary("secgroup-operator"))
        .args(["crds", "--out-dir"])
        .arg(&out)
        .status()
        .expect("the operator binary runs");
    assert!(status.success(), "secgroup-operator crds failed");
    let ours = Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
    for entry in std::fs::read_dir(&ours).expect("crds/") {
        let path = entry.expect("crds entry").path();
        let built = std::fs::read_to_string(out.join(path.file_name().expect("file name")));
        assert!(
            built.ok() == std::fs::read_to_string(&path).ok(),
            "{} was built from other sources than this checkout (its CRDs differ from crds/)",
            binary("secgroup-operator").display()
        );
    }
    let _ = std::fs::remove_dir_all(out);
}

/// Starts the fake cloud with `access_key` (`ID:SECRET`), logging to `logs`.
pub fn fake_cloud(access_key: &str, logs: &Path) -> FakeCloud {
    let fake = FakeCloud::start(
        access_key,
        &[],
        &[("RUST_LOG", "warn")],
        &logs.join("fakecloud.log"),
    );
    assert!(
        fake.url.starts_with("http://127.0.0.1:"),
        "unexpected fake cloud banner {:?}",
        fake.url
    );
    fake
}

/// The operator binary, restartable, with every start and kill counted.
pub struct Operator {
    args: Vec<String>,
    envs: Vec<(&'static str, String)>,
    /// `--metrics-addr` of every start; a free port per start if unset.
    fixed_metrics: Option<String>,
    /// Where the running process serves /metrics and /readyz.
    pub metrics: String,
    log: PathBuf,
    process: Option<Tied>,
    pub starts: u32,
    pub kills: u32,
}

impl Operator {
    pub fn new(secret_namespace: &str, logs: &Path) -> Self {
        Self::with("operator", secret_namespace, None, Vec::new(), logs)
    }

    /// One of several replicas sharing a Lease in `lease_namespace`, known
    /// by `identity`, serving metrics on `metrics_addr`.
    pub fn replica(
        identity: &'static str,
        secret_namespace: &str,
        lease_namespace: &str,
        metrics_addr: &str,
        logs: &Path,
    ) -> Self {
        let mut replica = Self::with(
            identity,
            secret_namespace,
            Some(metrics_addr.to_owned()),
            vec![("POD_NAME", identity.to_owned())],
            logs,
        );
        replica.args.extend(
            [
                "--leader-election",
                "--leader-election-namespace",
                lease_namespace,
            ]
            .map(String::from),
        );
        replica
    }

    fn with(
        name: &str,
        secret_namespace: &str,
        fixed_metrics: Option<String>,
        envs: Vec<(&'static str, String)>,
        logs: &Path,
    ) -> Self {
        let args = ["run", "--secret-namespace", secret_namespace];
        Self {
            args: args.map(String::from).to_vec(),
            envs,
            fixed_metrics,
            metrics: String::new(),
            log: logs.join(format!("{name}.log")),
            process: None,
            starts: 0,
            kills: 0,
        }
    }

    /// Starts the operator with these extra flags (say `--resync-interval`).
    pub fn start(&mut self, flags: &[String]) {
        assert!(self.process.is_none(), "the operator is already running");
        self.starts += 1;
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("operator log");
        let _ = writeln!(
            log,
            "=== soak: operator start {} at {} {flags:?}",
            self.starts,
            jiff::Timestamp::now()
        );
        self.metrics = self.fixed_metrics.clone().unwrap_or_else(free_addr);
        let metrics = ["--metrics-addr".to_owned(), self.metrics.clone()];
        let args: Vec<String> = self
            .args
            .iter()
            .chain(&metrics)
            .chain(flags)
            .cloned()
            .collect();
        let envs: Vec<(&str, &str)> = [
            ("RUST_LOG", "info,secgroup_operator=debug"),
            ("NO_COLOR", "1"),
        ]
        .into_iter()
        .chain(self.envs.iter().map(|(k, v)| (*k, v.as_str())))
        .collect();
        let tied = Tied::spawn(
            &binary("secgroup-operator"),
            &args,
            &envs,
            Output::Log(self.log.clone()),
            Output::Log(self.log.clone()),
        );
        self.process = Some(tied);
    }

    /// SIGKILL: no shutdown, no final status write.
    pub fn kill(&mut self) {
        if let Some(process) = self.process.take() {
            process.kill();
            self.kills += 1;
            if let Ok(mut log) = OpenOptions::new().append(true).open(&self.log) {
                let _ = writeln!(log, "=== soak: SIGKILL at {}", jiff::Timestamp::now());
            }
        }
    }

    /// Stops it without counting a kill (a deliberate restart).
    pub fn stop(&mut self) {
        drop(self.process.take());
    }

    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().filter(|p| p.alive()).map(Tied::pid)
    }
}
