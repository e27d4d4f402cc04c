//! Shutdown on SIGTERM or Ctrl-C.

use std::time::Duration;

use tracing::{info, warn};

/// How long running reconciles may take to finish after a shutdown signal.
/// Below Kubernetes' default 30 s termination grace period, so the process
/// ends on its own terms rather than by SIGKILL.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// Resolves on SIGTERM or Ctrl-C (SIGINT), and says which arrived.
pub async fn shutdown() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    let which = tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    };
    info!(signal = which, "shutting down");
}

/// Runs `work` until it ends, or until `SHUTDOWN_GRACE` after `signal`.
pub async fn bounded(work: impl Future<Output = ()>, signal: impl Future<Output = ()>) {
    tokio::select! {
        () = work => {}
        () = async { signal.await; tokio::time::sleep(SHUTDOWN_GRACE).await } => {
            warn!(grace = ?SHUTDOWN_GRACE, "work still running after the shutdown grace period; stopping it");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Work that never ends (a controller whose caches never synced) is cut
    /// off once the grace period after the signal has passed.
    #[tokio::test(start_paused = true)]
    async fn work_that_ignores_the_signal_is_stopped_after_the_grace_period() {
        let started = tokio::time::Instant::now();
        bounded(
            std::future::pending(),
            tokio::time::sleep(Duration::from_secs(1)),
        )
        .await;
        assert_eq!(started.elapsed(), Duration::from_secs(1) + SHUTDOWN_GRACE);
    }

    #[tokio::test(start_paused = true)]
    async fn work_that_ends_is_not_held_back() {
        let started = tokio::time::Instant::now();
        bounded(
            tokio::time::sleep(Duration::from_secs(2)),
            std::future::pending(),
        )
        .await;
        assert_eq!(started.elapsed(), Duration::from_secs(2));
    }
}
