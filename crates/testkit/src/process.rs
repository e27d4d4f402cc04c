//! Child processes tied to the test process. Each runs under a small shell
//! that stops it when its stdin, a pipe from here, closes: that happens
//! however the test process ends, also for a `static` that is never dropped.

use std::{
    ffi::{OsStr, OsString},
    fs::OpenOptions,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, ChildStdout, Command, Stdio},
    time::Duration,
};

/// The holder: starts the program (fd 3 its stdout, fd 4 its stderr), prints
/// its pid before the program can print anything, and on EOF of stdin sends
/// it SIGTERM and waits for it.
const HOLDER: &str = r#"out=$1 err=$2; shift 2
if [ "$out" = - ]; then exec 3>&1; else exec 3>>"$out"; fi
if [ "$err" = - ]; then exec 4>&2; else exec 4>>"$err"; fi
(echo "$BASHPID"; exec "$@" </dev/null >&3 2>&4) &
child=$!
exec 3>&- 4>&-
read -r _
kill "$child" 2>/dev/null
wait"#;

/// Where a tied program's output goes.
#[derive(Clone, Debug)]
pub enum Output {
    /// Appended to this file.
    Log(PathBuf),
    /// stdout: read by the test with [`Tied::read_line`]; stderr: the test's own.
    Here,
}

/// A program held by its shell; dropping this stops both.
pub struct Tied {
    shell: Child,
    stdout: BufReader<ChildStdout>,
    pid: u32,
}

impl Tied {
    /// Starts `program args` with `envs` added to the environment.
    pub fn spawn(
        program: &Path,
        args: &[impl AsRef<OsStr>],
        envs: &[(&str, &str)],
        stdout: Output,
        stderr: Output,
    ) -> Self {
        let target = |output: &Output| match output {
            Output::Log(path) => {
                // Create it now, so a wrong directory fails here and not in the shell.
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .unwrap_or_else(|e| panic!("log {}: {e}", path.display()));
                path.as_os_str().to_owned()
            }
            Output::Here => OsString::from("-"),
        };
        let mut shell = Command::new("bash")
            .args(["-c", HOLDER, "tied"])
            .arg(target(&stdout))
            .arg(target(&stderr))
            .arg(program)
            .args(args)
            .envs(envs.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            // The shell itself would only announce each SIGKILL.
            .stderr(match stderr {
                Output::Here => Stdio::inherit(),
                Output::Log(_) => Stdio::null(),
            })
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", program.display()));
        let mut stdout = BufReader::new(shell.stdout.take().expect("the shell's stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("the pid line");
        let pid = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("starting {}: no pid but {line:?}", program.display()));
        Self { shell, stdout, pid }
    }

    /// The program's pid (not the shell's).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The next line the program wrote to stdout (with [`Output::Here`]).
    pub fn read_line(&mut self) -> String {
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("a line on stdout");
        line
    }

    /// Whether the program runs (neither gone nor a zombie).
    pub fn alive(&self) -> bool {
        std::fs::read_to_string(format!("/proc/{}/stat", self.pid))
            .ok()
            .and_then(|stat| {
                // The command name, in parentheses, may hold spaces: the state follows it.
                let state = stat.rsplit_once(") ")?.1.chars().next()?;
                Some(state != 'Z')
            })
            .unwrap_or(false)
    }

    /// Sends `signal` (`KILL`, `TERM`, ...) to the program.
    pub fn signal(&self, signal: &str) {
        // The shell's builtin: a `kill` program is not on every machine.
        let sent = Command::new("bash")
            .args(["-c", r#"kill -"$1" "$2""#, "kill"])
            .args([signal, &self.pid.to_string()])
            .status()
            .expect("bash runs");
        assert!(sent.success(), "kill -{signal} {}", self.pid);
    }

    /// SIGKILL, as a crash would: no shutdown handler runs, nothing is
    /// flushed. Returns once the program is gone.
    pub fn crash(&self) {
        self.signal("KILL");
        while self.alive() {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILL, then stop the shell.
    pub fn kill(self) {
        self.signal("KILL");
        drop(self);
    }
}

impl Drop for Tied {
    fn drop(&mut self) {
        drop(self.shell.stdin.take());
        let _ = self.shell.wait();
    }
}

/// Runs `command` with `input` on stdin and waits for it; stdout and
/// stderr go where `command` says (inherited unless set).
pub fn with_input(command: &mut Command, input: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = command
        .stdin(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str, stdout: Output) -> Tied {
        Tied::spawn(
            Path::new("bash"),
            &["-c", script],
            &[],
            stdout,
            Output::Here,
        )
    }

    #[test]
    fn the_pid_line_comes_before_the_program_s_output() {
        let mut tied = sh(r#"echo "hello $$"; sleep 30"#, Output::Here);
        assert_eq!(tied.read_line(), format!("hello {}\n", tied.pid()));
        assert!(tied.alive());
    }

    #[test]
    fn dropping_it_stops_the_program() {
        let tied = sh("sleep 30", Output::Here);
        let pid = tied.pid();
        drop(tied);
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "{pid} still runs"
        );
    }

    #[test]
    fn a_crash_kills_the_program_and_a_log_keeps_its_output() {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("out.log");
        let tied = sh("echo started; sleep 30", Output::Log(log.clone()));
        while std::fs::read_to_string(&log).unwrap_or_default().is_empty() {
            std::thread::sleep(Duration::from_millis(10));
        }
        tied.crash();
        assert!(!tied.alive());
        assert_eq!(std::fs::read_to_string(&log).expect("log"), "started\n");
    }
}
