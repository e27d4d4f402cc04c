//! The operator's HTTP endpoints: `/metrics` (Prometheus text format) on
//! `--metrics-addr`, optionally for reviewed bearer tokens only
//! ([`crate::review`]); `/healthz` (liveness: the process serves) and
//! `/readyz` (readiness, see [`Health`]) on `--health-addr`, never
//! authenticated, or next to `/metrics` when no health address is set.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU8, Ordering},
    },
};

use axum::{
    Router,
    extract::{Request, State},
    http::{StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
};
use futures::future::BoxFuture;
use kube::{Resource, runtime::reflector::Store};
use tracing::{error, info};

use crate::{
    metrics::Metrics,
    review::{Refusal, Reviewer},
};

/// Something that becomes ready once, such as an informer cache.
pub trait Readiness: Send + Sync + 'static {
    /// True once ready; false if it never will be.
    fn wait_ready(&self) -> BoxFuture<'static, bool>;
}

impl<K> Readiness for Store<K>
where
    K: Resource + Clone + Send + Sync + 'static,
    K::DynamicType: Clone + Eq + std::hash::Hash + Send + Sync,
{
    fn wait_ready(&self) -> BoxFuture<'static, bool> {
        let store = self.clone();
        Box::pin(async move { crate::cache::synced(&store).await })
    }
}

/// Where the instance stands, as `/readyz` reports it.
///
/// A standby answers ready: it is doing its job, which is to be able to take
/// over, and it has shown that by reading the lease. Were it unready, a
/// Deployment rollout would wait forever for a standby to become Ready, and
/// nothing routes requests to the operator by readiness anyway. The leader
/// (or the only instance, without leader election) is ready once every
/// informer cache has synced.
#[derive(Debug)]
pub struct Health(AtomicU8);

const STARTING: u8 = 0;
const STANDBY: u8 = 1;
const SYNCING: u8 = 2;
const READY: u8 = 3;

impl Default for Health {
    fn default() -> Self {
        Self(AtomicU8::new(STARTING))
    }
}

impl Health {
    /// Another instance holds the lease, and this one can reach it.
    pub fn standby(&self) {
        self.0.store(STANDBY, Ordering::Release);
    }

    /// This instance runs the controller: ready once `caches` have synced.
    pub fn leading(self: &Arc<Self>, caches: Vec<Box<dyn Readiness>>) {
        self.0.store(SYNCING, Ordering::Release);
        let health = self.clone();
        tokio::spawn(async move {
            let synced = futures::future::join_all(caches.iter().map(|c| c.wait_ready())).await;
            if synced.contains(&false) {
                return;
            }
            health.0.store(READY, Ordering::Release);
            info!("caches synced; ready");
        });
    }

    fn readiness(&self) -> (StatusCode, &'static str) {
        match self.0.load(Ordering::Acquire) {
            READY => (StatusCode::OK, "ready"),
            STANDBY => (StatusCode::OK, "standby: another instance holds the lease"),
            SYNCING => (StatusCode::SERVICE_UNAVAILABLE, "caches not synced"),
            _ => (StatusCode::SERVICE_UNAVAILABLE, "starting"),
        }
    }
}

/// `/healthz` and `/readyz`.
pub fn probes(health: Arc<Health>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(health)
}

/// `/metrics`, for reviewed bearer tokens only when `reviewer` is set.
pub fn metrics(metrics: Arc<Metrics>, reviewer: Option<Arc<Reviewer>>) -> Router {
    let router = Router::new()
        .route("/metrics", get(metrics_text))
        .with_state(metrics);
    match reviewer {
        Some(reviewer) => router.layer(middleware::from_fn_with_state(reviewer, authorised)),
        None => router,
    }
}

/// Serves `router` on `addr` until the process ends.
pub async fn serve(addr: SocketAddr, router: Router, what: &'static str) {
    match tokio::net::TcpListener::bind(addr).await {
        Ok(listener) => {
            info!(addr = %listener.local_addr().unwrap_or(addr), "serving {what}");
            if let Err(e) = axum::serve(listener, router).await {
                error!(error = %e, "the server of {what} stopped");
            }
        }
        Err(e) => error!(%addr, error = %e, "cannot bind the server of {what}"),
    }
}

async fn readyz(State(health): State<Arc<Health>>) -> (StatusCode, &'static str) {
    health.readiness()
}

async fn metrics_text(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.render(),
    )
}

async fn authorised(
    State(reviewer): State<Arc<Reviewer>>,
    request: Request,
    next: Next,
) -> Response {
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match reviewer.check(authorization).await {
        Ok(()) => next.run(request).await,
        Err(Refusal::Unauthenticated) => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "a bearer token the Kubernetes API server authenticates is required",
        )
            .into_response(),
        Err(Refusal::Forbidden) => (
            StatusCode::FORBIDDEN,
            "the token's user may not get the non-resource URL /metrics",
        )
            .into_response(),
        Err(Refusal::Unavailable) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "the token could not be reviewed; try again",
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use http::Request;
    use tower::ServiceExt;

    use super::*;

    async fn get(app: &Router, path: &str) -> (StatusCode, String) {
        let response = app
            .clone()
            .oneshot(Request::get(path).body(Body::empty()).expect("request"))
            .await
            .expect("answer");
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    /// Becomes ready when its sender fires.
    struct Gate(futures::future::Shared<tokio::sync::oneshot::Receiver<()>>);

    impl Readiness for Gate {
        fn wait_ready(&self) -> BoxFuture<'static, bool> {
            let gate = self.0.clone();
            Box::pin(async move { gate.await.is_ok() })
        }
    }

    #[tokio::test]
    async fn readyz_follows_the_lease_and_the_caches() {
        use futures::FutureExt;
        let health = Arc::new(Health::default());
        let app = probes(health.clone());
        assert_eq!(get(&app, "/healthz").await.0, StatusCode::OK);
        assert_eq!(
            get(&app, "/readyz").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        health.standby();
        let (status, body) = get(&app, "/readyz").await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::OK, "standby: another instance holds the lease")
        );
        let (synced, gate) = tokio::sync::oneshot::channel();
        health.leading(vec![Box::new(Gate(gate.shared()))]);
        assert_eq!(
            get(&app, "/readyz").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        synced.send(()).expect("gate open");
        for _ in 0..100 {
            if get(&app, "/readyz").await.0 == StatusCode::OK {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("not ready after the caches synced");
    }

    #[tokio::test]
    async fn metrics_are_served_in_the_text_format() {
        let metrics = Arc::new(Metrics::new());
        metrics.set_leader(true);
        let app = super::metrics(metrics, None);
        let (status, body) = get(&app, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("\nsecgroup_leader 1\n"), "{body}");
        assert!(body.ends_with("# EOF\n"), "{body}");
    }
}
