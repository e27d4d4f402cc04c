//! The operator image booted with runc as the kubelet would run the chart's
//! pod: the installed Deployment's args, environment and security context
//! (user, read-only root, capabilities, no privilege escalation, the
//! runtime's default seccomp profile, memory limit), the ServiceAccount
//! token where the kubelet mounts it, the API server as the in-cluster
//! config finds it. The container shares the host's network namespace and
//! reaches the test control plane and the fake cloud on loopback only.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use crate::{
    install::{
        deployment, deployment_command, free_port, install_release, log_path, ok, run, until_ready,
    },
    oci::Image,
    support::*,
};

/// Where the runtime's default seccomp profile comes from: containers-common,
/// the profile CRI-O applies for RuntimeDefault (Docker's, in its format).
const SECCOMP_PROFILE: &str = "/usr/share/containers/seccomp.json";
/// Where the kubelet mounts the ServiceAccount token.
const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// containerd's default capabilities, before the security context's drop/add.
const DEFAULT_CAPABILITIES: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// None, with the reason, when runc cannot run containers here. CI installs
/// runc and runs as root, so there the test never skips.
fn runc_unavailable() -> Option<String> {
    let why = match Command::new("runc").arg("--version").output() {
        Err(e) => format!("runc is not on PATH ({e}); apt-get install runc"),
        Ok(_) if run("id", &["-u"]).stdout.trim_ascii() != b"0" => {
            "runc needs root here (no rootless setup)".to_owned()
        }
        Ok(_) => return None,
    };
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must boot the image: {why}"
    );
    Some(why)
}

/// A container run by `runc run` in the foreground; deleted when dropped.
struct Container {
    id: String,
    runc: Child,
    bundle: PathBuf,
    started: Instant,
}

impl Container {
    fn start(id: &str, bundle: &Path, log: &Path) -> Container {
        let log = std::fs::File::create(log).expect("log");
        let started = Instant::now();
        let runc = Command::new("runc")
            .args(["run", "--bundle"])
            .arg(bundle)
            .arg(id)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("runc run");
        Container {
            id: id.to_owned(),
            runc,
            bundle: bundle.to_owned(),
            started,
        }
    }

    /// The container's first process, as the host sees it.
    fn pid(&self) -> u32 {
        let state: Value =
            serde_json::from_str(&ok("runc", &["state", &self.id])).expect("runc state");
        u32::try_from(state["pid"].as_u64().expect("pid")).expect("pid")
    }

    /// SIGTERM, as the kubelet sends it through the runtime; how long the
    /// container took to exit, and how it exited, within `grace`.
    async fn terminate(&mut self, grace: Duration) -> (Duration, ExitStatus) {
        let sent = Instant::now();
        ok("runc", &["kill", &self.id, "TERM"]);
        loop {
            if let Some(status) = self.runc.try_wait().expect("wait") {
                return (sent.elapsed(), status);
            }
            assert!(
                sent.elapsed() < grace,
                "still running {grace:?} after SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("runc")
            .args(["delete", "--force", &self.id])
            .output();
        let _ = self.runc.kill();
        let _ = self.runc.wait();
        let _ = std::fs::remove_dir_all(&self.bundle);
    }
}

/// The runtime's default seccomp profile for a container with `capabilities`,
/// in the OCI runtime spec's form: the rules for this architecture whose
/// capability conditions hold.
fn runtime_default_seccomp(capabilities: &[String]) -> Value {
    let profile: Value = serde_json::from_str(
        &std::fs::read_to_string(SECCOMP_PROFILE).unwrap_or_else(|e| {
            panic!("{SECCOMP_PROFILE}: {e}; apt-get install golang-github-containers-common")
        }),
    )
    .expect("JSON");
    let (scmp_arch, arch) = match std::env::consts::ARCH {
        "x86_64" => ("SCMP_ARCH_X86_64", "amd64"),
        "aarch64" => ("SCMP_ARCH_AARCH64", "arm64"),
        other => panic!("no seccomp architecture for {other}"),
    };
    let architectures: Vec<Value> = profile["archMap"]
        .as_array()
        .expect("archMap")
        .iter()
        .filter(|m| m["architecture"] == scmp_arch)
        .flat_map(|m| {
            std::iter::once(m["architecture"].clone()).chain(
                m["subArchitectures"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default(),
            )
        })
        .collect();
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let syscalls: Vec<Value> = profile["syscalls"]
        .as_array()
        .expect("syscalls")
        .iter()
        .filter(|rule| {
            let (includes, excludes) = (&rule["includes"], &rule["excludes"]);
            let arches = strings(&includes["arches"]);
            (arches.is_empty() || arches.iter().any(|a| a == arch))
                && !strings(&excludes["arches"]).iter().any(|a| a == arch)
                && strings(&includes["caps"])
                    .iter()
                    .all(|c| capabilities.contains(c))
                && !strings(&excludes["caps"])
                    .iter()
                    .any(|c| capabilities.contains(c))
        })
        .map(|rule| {
            let mut syscall = json!({"names": rule["names"], "action": rule["action"]});
            if let Some(args) = rule["args"].as_array().filter(|a| !a.is_empty()) {
                syscall["args"] = json!(args);
            }
            if let Some(errno) = rule["errnoRet"].as_u64() {
                syscall["errnoRet"] = json!(errno);
            }
            syscall
        })
        .collect();
    let mut seccomp = json!({
        "defaultAction": profile["defaultAction"],
        "architectures": architectures,
        "syscalls": syscalls,
    });
    if let Some(errno) = profile["defaultErrnoRet"].as_u64() {
        seccomp["defaultErrnoRet"] = json!(errno);
    }
    seccomp
}

/// Bytes of a Kubernetes memory quantity such as 256Mi.
fn memory_bytes(quantity: &str) -> u64 {
    let units = [("Ki", 1u64 << 10), ("Mi", 1 << 20), ("Gi", 1 << 30)];
    let (digits, unit) = units
        .iter()
        .find_map(|(suffix, unit)| quantity.strip_suffix(suffix).map(|d| (d, *unit)))
        .unwrap_or((quantity, 1));
    digits.parse::<u64>().expect("memory quantity") * unit
}

/// What the pod spec and the image config make of the container, as the
/// kubelet and the runtime would: the OCI runtime spec runc runs.
struct Pod<'a> {
    name: &'a str,
    spec: &'a Value,
    image: &'a Image,
    args: Vec<String>,
    env: Vec<(String, String)>,
    service_account: Option<&'a Path>,
    hosts: &'a Path,
}

impl Pod<'_> {
    /// Unpacks the image into a bundle next to the logs and starts it.
    fn boot(&self, id: &str) -> Container {
        let bundle = log_path(&format!("{id}-bundle"));
        ok(
            "umoci",
            &[
                "unpack",
                "--image",
                &self.image.reference,
                bundle.to_str().expect("utf-8"),
            ],
        );
        std::fs::write(
            bundle.join("config.json"),
            serde_json::to_vec_pretty(&self.runtime_spec()).expect("JSON"),
        )
        .expect("config.json");
        Container::start(id, &bundle, &log_path(&format!("{id}.log")))
    }

    fn runtime_spec(&self) -> Value {
        let image = &self.image.config["config"];
        let container = &self.spec["containers"][0];
        let (pod_context, context) = (&self.spec["securityContext"], &container["securityContext"]);
        let setting = |key: &str| -> &Value {
            Some(&context[key])
                .filter(|v| !v.is_null())
                .unwrap_or(&pod_context[key])
        };
        let image_user = image["User"].as_str().unwrap_or("0");
        let (image_uid, image_gid) = image_user.split_once(':').unwrap_or((image_user, "0"));
        let uid = setting("runAsUser")
            .as_u64()
            .unwrap_or_else(|| image_uid.parse().expect("numeric image user"));
        let gid = setting("runAsGroup")
            .as_u64()
            .unwrap_or_else(|| image_gid.parse().expect("numeric image group"));
        if setting("runAsNonRoot") == true {
            assert_ne!(uid, 0, "runAsNonRoot and the container would run as root");
        }
        let drop = strings_of(&context["capabilities"]["drop"]);
        let add = strings_of(&context["capabilities"]["add"]);
        let capabilities: Vec<String> = DEFAULT_CAPABILITIES
            .iter()
            .map(|c| (*c).to_owned())
            .filter(|c| !drop.iter().any(|d| d == "ALL" || c == &format!("CAP_{d}")))
            .chain(add.iter().map(|a| format!("CAP_{a}")))
            .collect();
        let seccomp = match setting("seccompProfile")["type"].as_str() {
            Some("RuntimeDefault") => runtime_default_seccomp(&capabilities),
            other => panic!("seccompProfile {other:?}: the chart asks for RuntimeDefault"),
        };
        let args: Vec<String> = strings_of(&image["Entrypoint"])
            .into_iter()
            .chain(self.args.iter().cloned())
            .collect();
        let env: Vec<String> = strings_of(&image["Env"])
            .into_iter()
            .chain(self.env.iter().map(|(k, v)| format!("{k}={v}")))
            .collect();
        let memory = container["resources"]["limits"]["memory"]
            .as_str()
            .map(memory_bytes);
        let bind = |source: &Path, destination: &str| {
            json!({"destination": destination, "type": "bind", "source": source,
                   "options": ["rbind", "ro", "nosuid", "nodev", "noexec"]})
        };
        let mut spec = json!({
            "ociVersion": "1.0.2",
            "hostname": self.name,
            "root": {"path": "rootfs", "readonly": context["readOnlyRootFilesystem"] == true},
            "process": {
                "terminal": false,
                "user": {"uid": uid, "gid": gid},
                "args": args,
                "env": env,
                "cwd": image["WorkingDir"].as_str().filter(|w| !w.is_empty()).unwrap_or("/"),
                "capabilities": {
                    "bounding": capabilities, "effective": capabilities,
                    "permitted": capabilities, "inheritable": [], "ambient": [],
                },
                "noNewPrivileges": context["allowPrivilegeEscalation"] == false,
            },
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
                 "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
                {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
                 "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
                {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
                 "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
                {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
                 "options": ["nosuid", "noexec", "nodev"]},
                {"destination": "/sys", "type": "sysfs", "source": "sysfs",
                 "options": ["nosuid", "noexec", "nodev", "ro"]},
                bind(self.hosts, "/etc/hosts"),
            ],
            "linux": {
                // No network namespace: loopback of this machine only.
                "namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}],
                "resources": memory.map_or(json!({}), |limit| json!({"memory": {"limit": limit}})),
                "seccomp": seccomp,
                "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                    "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                    "/proc/sched_debug", "/proc/scsi", "/sys/firmware"],
                "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                    "/proc/sysrq-trigger"],
            },
        });
        if let Some(volume) = self.service_account {
            let mounts = spec["mounts"].as_array_mut().expect("mounts");
            mounts.push(bind(volume, SERVICE_ACCOUNT_DIR));
        }
        spec
    }
}

fn strings_of(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| s.as_str().expect("string").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The ServiceAccount volume as the kubelet projects it: token, ca.crt and
/// namespace; the token readable by the container's user only.
fn service_account_volume(dir: &Path, token: &str, namespace: &str, uid: u64) {
    let admin: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(std::env::var("KUBECONFIG").expect("KUBECONFIG"))
            .expect("kubeconfig"),
    )
    .expect("YAML");
    let ca_data = admin["clusters"][0]["cluster"]["certificate-authority-data"]
        .as_str()
        .expect("certificate-authority-data");
    let decoded = with_input(
        Command::new("base64")
            .arg("--decode")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
        ca_data,
    );
    assert!(
        decoded.status.success(),
        "certificate-authority-data: base64"
    );
    let ca = decoded.stdout;
    std::fs::create_dir_all(dir).expect("service account dir");
    std::fs::write(dir.join("token"), token).expect("token");
    std::fs::write(dir.join("ca.crt"), ca).expect("ca.crt");
    std::fs::write(dir.join("namespace"), namespace).expect("namespace");
    let owner = format!("{uid}:{uid}");
    let token_path = dir.join("token");
    ok("chown", &[&owner, token_path.to_str().expect("utf-8")]);
    ok("chmod", &["0600", token_path.to_str().expect("utf-8")]);
    ok("chmod", &["0755", dir.to_str().expect("utf-8")]);
}

/// A field of /proc/PID/status.
fn proc_status(pid: u32, field: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"))
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[tokio::test]
async fn operator_image_runs_under_the_charts_security_context() {
    require_cluster();
    if let Some(why) = runc_unavailable() {
        eprintln!("SKIPPED operator_image_runs_under_the_charts_security_context: {why}");
        return;
    }
    let image = Image::open("secgroup-operator");
    let release = install_release("image");
    let id = &release.id;
    let deployment = deployment(&release.system, &release.sa);
    let spec = &deployment["spec"]["template"]["spec"];
    let container = &spec["containers"][0];
    let grace = Duration::from_secs(spec["terminationGracePeriodSeconds"].as_u64().unwrap_or(30));

    // The image's user is the one the chart runs as, so the image works
    // unchanged where a policy forbids overriding it.
    assert_eq!(
        image.config["config"]["User"],
        format!(
            "{0}:{1}",
            spec["securityContext"]["runAsUser"], spec["securityContext"]["runAsGroup"]
        ),
        "the image's USER and the chart's runAsUser:runAsGroup"
    );

    // The fake cloud from its image, as a demo would run it: under the same
    // security context, listening on a free loopback port.
    let hosts = log_path(&format!("image-{id}-hosts"));
    std::fs::write(&hosts, "127.0.0.1\tlocalhost\n::1\tlocalhost\n").expect("hosts");
    let cloud_image = Image::open("secgroup-fakecloud");
    let cloud_port = free_port();
    let cloud_url = format!("http://127.0.0.1:{cloud_port}");
    let cloud_spec = json!({
        "securityContext": spec["securityContext"],
        "containers": [{"securityContext": container["securityContext"]}],
    });
    let cloud_id = format!("secgroup-image-{id}-fakecloud");
    let _cloud = Pod {
        name: "fakecloud",
        spec: &cloud_spec,
        image: &cloud_image,
        args: [
            "--listen",
            &format!("127.0.0.1:{cloud_port}"),
            "--access-key",
            &format!("{ACCESS_KEY}:{SECRET_KEY}"),
        ]
        .map(str::to_owned)
        .to_vec(),
        env: Vec::new(),
        service_account: None,
        hosts: &hosts,
    }
    .boot(&cloud_id);
    let cloud_log = log_path(&format!("{cloud_id}.log"));
    eventually(
        "the fake cloud in its container listening",
        Duration::from_secs(30),
        || async {
            let log = std::fs::read_to_string(&cloud_log).map_err(|e| e.to_string())?;
            if log.contains(&format!("listening on {cloud_url}")) {
                Ok(())
            } else {
                Err(format!("not listening yet: {log}"))
            }
        },
    )
    .await;
    let (config, group) = release.provider_config(&cloud_url).await;

    // The container's ports on free loopback ports of this machine.
    let (mut args, mut env) = deployment_command(&release.system, &release.sa);
    let mut ready_port = None;
    for port in container["ports"].as_array().expect("ports") {
        let (inside, outside) = (port["containerPort"].as_u64().expect("port"), free_port());
        for arg in &mut args {
            *arg = arg.replace(
                &format!("0.0.0.0:{inside}"),
                &format!("127.0.0.1:{outside}"),
            );
        }
        if port["name"] == container["readinessProbe"]["httpGet"]["port"] {
            ready_port = Some(outside);
        }
    }
    let ready_port = ready_port.expect("the readiness probe's port among the container's ports");
    // How the in-cluster config finds the API server.
    let server = url::Url::parse(&std::env::var("TESTCLUSTER_SERVER").expect("TESTCLUSTER_SERVER"))
        .expect("server URL");
    let pod = format!("{}-0", release.sa);
    env.extend([
        ("HOSTNAME".to_owned(), pod.clone()),
        (
            "KUBERNETES_SERVICE_HOST".to_owned(),
            server.host_str().expect("host").to_owned(),
        ),
        (
            "KUBERNETES_SERVICE_PORT".to_owned(),
            server.port().expect("port").to_string(),
        ),
    ]);

    // The kubelet's files: the ServiceAccount volume, /etc/hosts.
    let volume = log_path(&format!("image-{id}-serviceaccount"));
    let uid = spec["securityContext"]["runAsUser"]
        .as_u64()
        .expect("runAsUser");
    service_account_volume(&volume, &release.token(), &release.system, uid);
    let pod_hosts = log_path(&format!("image-{id}-pod-hosts"));
    std::fs::write(
        &pod_hosts,
        format!("127.0.0.1\tlocalhost\n::1\tlocalhost\n127.0.0.1\t{pod}\n"),
    )
    .expect("hosts");
    let operator_id = format!("secgroup-image-{id}");
    let log = log_path(&format!("{operator_id}.log"));
    let mut operator = Pod {
        name: &pod,
        spec,
        image: &image,
        args,
        env,
        service_account: Some(&volume),
        hosts: &pod_hosts,
    }
    .boot(&operator_id);
    until_ready("the operator in its container ready", ready_port).await;
    let to_ready = operator.started.elapsed();

    // The security context holds for the running process: its user, no
    // capabilities, no privilege escalation, a seccomp filter, a read-only root.
    let pid = operator.pid();
    assert_eq!(proc_status(pid, "Uid"), format!("{uid} {uid} {uid} {uid}"));
    for field in ["CapEff", "CapPrm", "CapBnd"] {
        assert_eq!(proc_status(pid, field), "0000000000000000", "{field}");
    }
    assert_eq!(proc_status(pid, "NoNewPrivs"), "1");
    assert_eq!(proc_status(pid, "Seccomp"), "2", "a seccomp filter");
    let mounts = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).expect("mountinfo");
    let root = mounts
        .lines()
        .find(|l| l.split_whitespace().nth(4) == Some("/"))
        .expect("root mount");
    assert!(
        root.split_whitespace()
            .nth(5)
            .is_some_and(|o| o.split(',').any(|o| o == "ro")),
        "read-only root: {root}"
    );

    release.reconciles_a_rule(&cloud_url, &config, &group).await;

    let (to_exit, status) = operator.terminate(grace).await;
    let output = std::fs::read_to_string(&log).expect("log");
    assert!(status.success(), "exit after SIGTERM: {status}\n{output}");
    assert!(!output.contains(SECRET_KEY), "the secret key in the log");
    println!(
        "image {}: start -> /readyz {:.2}s, SIGTERM -> exit {:.2}s (grace {}s)",
        image.reference,
        to_ready.as_secs_f64(),
        to_exit.as_secs_f64(),
        grace.as_secs()
    );
}
