//! The operator's HTTP endpoints: `/healthz` (liveness) and `/readyz`
//! (ready once every informer cache has synced).

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use axum::{Router, extract::State, http::StatusCode, routing::get};
use futures::future::BoxFuture;
use kube::{Resource, runtime::reflector::Store};
use tracing::{error, info};

/// Something that becomes ready once, such as an informer cache.
pub trait Readiness: Send + Sync + 'static {
    fn wait_ready(&self) -> BoxFuture<'static, ()>;
}

impl<K> Readiness for Store<K>
where
    K: Resource + Clone + Send + Sync + 'static,
    K::DynamicType: Clone + Eq + std::hash::Hash + Send + Sync,
{
    fn wait_ready(&self) -> BoxFuture<'static, ()> {
        let store = self.clone();
        Box::pin(async move {
            let _ = store.wait_until_ready().await;
        })
    }
}

pub async fn serve(addr: SocketAddr, caches: Vec<Box<dyn Readiness>>) {
    let ready = Arc::new(AtomicBool::new(false));
    let flag = ready.clone();
    tokio::spawn(async move {
        futures::future::join_all(caches.iter().map(|c| c.wait_ready())).await;
        flag.store(true, Ordering::Release);
        info!("caches synced; ready");
    });
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(ready);
    match tokio::net::TcpListener::bind(addr).await {
        Ok(listener) => {
            if let Err(e) = axum::serve(listener, app).await {
                error!(error = %e, "health server stopped");
            }
        }
        Err(e) => error!(%addr, error = %e, "cannot bind the health server"),
    }
}

async fn readyz(State(ready): State<Arc<AtomicBool>>) -> (StatusCode, &'static str) {
    if ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "caches not synced")
    }
}
