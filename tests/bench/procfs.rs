//! What /proc says about the operator process.

use std::{process::Command, time::Duration};

use anyhow::{Context as _, bail};

fn status_field(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
}

/// Peak resident set size (VmHWM), MiB.
pub fn peak_rss_mib(pid: u32) -> f64 {
    status_field(pid, "VmHWM").unwrap_or(0) as f64 / 1024.0
}

/// Current resident set size (VmRSS), MiB.
pub fn rss_mib(pid: u32) -> f64 {
    status_field(pid, "VmRSS").unwrap_or(0) as f64 / 1024.0
}

/// User + system CPU time, seconds (Linux counts it in 1/100 s ticks).
pub fn cpu_seconds(pid: u32) -> f64 {
    cpu_ticks(pid) as f64 / 100.0
}

/// User + system CPU time in clock ticks.
pub fn cpu_ticks(pid: u32) -> u64 {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let after = text.rsplit_once(") ").map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(11) + field(12)
}

/// Waits until the process has used almost no CPU for a second (at most `limit`).
pub async fn wait_idle(pid: u32, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    let mut quiet = 0;
    let mut last = cpu_ticks(pid);
    while quiet < 2 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = cpu_ticks(pid);
        quiet = if now - last <= 1 { quiet + 1 } else { 0 };
        last = now;
    }
}

/// Sends `kill -SIGNAL pid` ("STOP", "CONT").
pub fn signal(pid: u32, signal: &str) -> anyhow::Result<()> {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .context("running kill")?;
    if !status.success() {
        bail!("kill -{signal} {pid} failed");
    }
    Ok(())
}
