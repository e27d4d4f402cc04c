//! Loopback ports and readiness.

use std::time::{Duration, Instant};

/// A loopback address (`127.0.0.1:PORT`) with a port nobody listens on now.
pub fn free_addr() -> String {
    format!("127.0.0.1:{}", free_port())
}

/// A loopback port nobody listens on now.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("bound address").port()
}

/// Waits until `http://{addr}/readyz` answers 2xx; false after `limit`.
pub async fn ready(addr: &str, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    let http = reqwest::Client::new();
    while Instant::now() < deadline {
        if let Ok(r) = http.get(format!("http://{addr}/readyz")).send().await
            && r.status().is_success()
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}
