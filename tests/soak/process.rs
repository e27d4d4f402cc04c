//! The fake cloud and operator processes. Each runs under a small shell that
//! stops it when its stdin, a pipe from this process, closes, so nothing
//! outlives the soak however it ends. The operator can be SIGKILLed by pid.

use std::{
    fs::OpenOptions,
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

/// A process held by its shell; dropping this stops both.
pub struct Tied {
    shell: Child,
    /// The process itself (the shell's child).
    pub pid: u32,
}

impl Tied {
    /// Starts `program args` with stderr appended to `log`, and stdout too
    /// unless `keep_stdout`, in which case the caller reads it after the pid line.
    fn spawn(
        program: &Path,
        args: &[String],
        envs: &[(&str, &str)],
        log: &Path,
        keep_stdout: bool,
    ) -> (Self, BufReader<std::process::ChildStdout>) {
        let script = if keep_stdout {
            r#"log=$1; shift; "$@" </dev/null 2>>"$log" & child=$!; echo "$child"; read -r _; kill "$child" 2>/dev/null; wait"#
        } else {
            r#"log=$1; shift; "$@" </dev/null >>"$log" 2>&1 & child=$!; echo "$child"; read -r _; kill "$child" 2>/dev/null; wait"#
        };
        let mut shell = Command::new("bash")
            .args(["-c", script, "tied"])
            .arg(log)
            .arg(program)
            .args(args)
            .envs(envs.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            // The process's own output goes to `log`; the shell would only
            // announce each SIGKILL.
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", program.display()));
        let mut stdout = BufReader::new(shell.stdout.take().expect("stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("pid line");
        let pid = line.trim().parse().expect("the shell prints the pid");
        (Self { shell, pid }, stdout)
    }

    /// SIGKILL, then let the shell reap it.
    pub fn kill(mut self) {
        // `kill` from procps: the harness needs no libc binding for one signal.
        let _ = Command::new("kill")
            .args(["-KILL", &self.pid.to_string()])
            .status();
        self.stop_shell();
    }

    fn stop_shell(&mut self) {
        drop(self.shell.stdin.take());
        let _ = self.shell.wait();
    }

    /// Whether the process is running (not gone, not a zombie).
    pub fn alive(&self) -> bool {
        std::fs::read_to_string(format!("/proc/{}/stat", self.pid))
            .ok()
            .and_then(|stat| {
                stat.rsplit_once(") ")
                    .map(|(_, rest)| !rest.starts_with('Z'))
            })
            .unwrap_or(false)
    }
}

impl Drop for Tied {
    fn drop(&mut self) {
        self.stop_shell();
    }
}

/// Where the operator and fake cloud binaries are: `SOAK_BIN_DIR`, else
/// the debug build of this checkout.
pub fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SOAK_BIN_DIR") {
        return PathBuf::from(dir);
    }
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).join("target"),
            PathBuf::from,
        )
        .join("debug")
}

/// Refuses an operator binary built from other sources than this checkout
/// (a shared target directory may hold another branch's build): the CRDs it
/// prints must be the ones in `crds/`.
pub fn check_operator_binary() {
    let out = std::env::temp_dir().join(format!("soak-crds-{}", std::process::id()));
    let status = Command::new(target_dir().join("secgroup-operator"))
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
            target_dir().join("secgroup-operator").display()
        );
    }
    let _ = std::fs::remove_dir_all(out);
}

/// Starts the fake cloud with `access_key` (`ID:SECRET`); returns it and its URL.
pub fn fake_cloud(access_key: &str, logs: &Path) -> (Tied, String) {
    let args = ["--listen", "127.0.0.1:0", "--access-key", access_key].map(String::from);
    let (tied, mut stdout) = Tied::spawn(
        &target_dir().join("secgroup-fakecloud"),
        &args,
        &[("RUST_LOG", "warn")],
        &logs.join("fakecloud.log"),
        true,
    );
    let mut banner = String::new();
    stdout.read_line(&mut banner).expect("listening line");
    let url = banner.trim().trim_start_matches("listening on ").to_owned();
    assert!(
        url.starts_with("http://127.0.0.1:"),
        "unexpected fake cloud banner {banner:?}"
    );
    (tied, url)
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
        let (tied, _stdout) = Tied::spawn(
            &target_dir().join("secgroup-operator"),
            &args,
            &[
                ("RUST_LOG", "info,secgroup_operator=debug"),
                ("NO_COLOR", "1"),
            ]
            .into_iter()
            .chain(self.envs.iter().map(|(k, v)| (*k, v.as_str())))
            .collect::<Vec<_>>(),
            &self.log,
            false,
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
        self.process.as_ref().filter(|p| p.alive()).map(|p| p.pid)
    }
}

/// A loopback address with a port nobody listens on now.
pub fn free_addr() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("bound address").to_string()
}

/// Waits until the operator serving on `metrics` answers /readyz with 200.
pub async fn ready(metrics: &str, limit: std::time::Duration) -> bool {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if let Ok(r) = reqwest::get(format!("http://{metrics}/readyz")).await
            && r.status().is_success()
        {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    false
}
