//! Fair sharing of a ProviderConfig's call rate between namespaces.
//!
//! Each namespace waits in its own queue; one task per ProviderConfig takes
//! a token from the config's bucket and hands it to the next namespace in
//! round robin, so a namespace with thousands of calls queued delays
//! another's single call by at most one token per busy namespace. That a
//! reconcile of the other namespace gets to run at all is `slots`' part.
//!
//! The transport keeps its own bucket at the same rate: it caps HTTP
//! requests (a describe may page), while this one orders the calls.

use std::{
    collections::{HashMap, VecDeque},
    num::NonZeroU32,
    sync::{Arc, Mutex, PoisonError},
};

use async_trait::async_trait;
use futures::{
    StreamExt,
    channel::{mpsc, oneshot},
};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::time::Instant;
use tracing::debug;

use crate::provider::{
    Authorize, DescribedRule, GroupRef, Modify, Provider, ProviderError, ProviderKind, Receipt,
    Revoke,
};

type Request = (String, oneshot::Sender<()>);

/// One ProviderConfig's bucket, served round robin between namespaces.
pub struct Share {
    requests: mpsc::UnboundedSender<Request>,
    /// Taken by the first `turn`, which starts the dispatcher: it needs a
    /// runtime, which building a client does not.
    pending: Mutex<Option<(mpsc::UnboundedReceiver<Request>, DefaultDirectRateLimiter)>>,
}

impl Share {
    pub fn new(qps: u32, burst: u32) -> Arc<Self> {
        let quota = Quota::per_second(NonZeroU32::new(qps).unwrap_or(NonZeroU32::MIN))
            .allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN));
        let (requests, receiver) = mpsc::unbounded();
        Arc::new(Self {
            requests,
            pending: Mutex::new(Some((receiver, RateLimiter::direct(quota)))),
        })
    }

    /// Waits until `tenant` may make one `call`.
    pub async fn turn(&self, tenant: &str, call: &'static str) {
        if let Some((receiver, limiter)) = self
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            tokio::spawn(dispatch(receiver, limiter));
        }
        let (grant, granted) = oneshot::channel();
        if self
            .requests
            .unbounded_send((tenant.to_owned(), grant))
            .is_ok()
        {
            let queued = Instant::now();
            // A dropped sender means the dispatcher is gone: let the call
            // through rather than hang (the transport's bucket still holds).
            let _ = granted.await;
            debug!(namespace = tenant, call, waited = ?queued.elapsed(), "provider call's turn");
        }
    }

    /// `inner`, its calls made in `tenant`'s turn.
    pub fn wrap(self: &Arc<Self>, inner: Arc<dyn Provider>, tenant: &str) -> Arc<dyn Provider> {
        Arc::new(Fair {
            inner,
            share: self.clone(),
            tenant: tenant.to_owned(),
        })
    }
}

/// Round-robin queues of waiting calls, one per tenant.
#[derive(Default)]
struct Queues {
    order: VecDeque<String>,
    calls: HashMap<String, VecDeque<oneshot::Sender<()>>>,
}

impl Queues {
    fn push(&mut self, (tenant, grant): Request) {
        let queue = self.calls.entry(tenant.clone()).or_default();
        if queue.is_empty() {
            self.order.push_back(tenant);
        }
        queue.push_back(grant);
    }

    /// The next tenant's first call; the tenant goes to the back.
    fn pop(&mut self) -> Option<oneshot::Sender<()>> {
        let tenant = self.order.pop_front()?;
        let queue = self.calls.get_mut(&tenant)?;
        let grant = queue.pop_front();
        if queue.is_empty() {
            self.calls.remove(&tenant);
        } else {
            self.order.push_back(tenant);
        }
        grant
    }

    fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

/// Hands out one token at a time, round robin; ends when the Share is dropped.
async fn dispatch(
    mut requests: mpsc::UnboundedReceiver<Request>,
    limiter: DefaultDirectRateLimiter,
) {
    let mut queues = Queues::default();
    loop {
        if queues.is_empty() {
            match requests.next().await {
                Some(request) => queues.push(request),
                None => return,
            }
        }
        limiter.until_ready().await;
        // Whoever arrived during the wait takes part in this round.
        while let Ok(request) = requests.try_recv() {
            queues.push(request);
        }
        // A caller that gave up passes its token on.
        while let Some(grant) = queues.pop() {
            if grant.send(()).is_ok() {
                break;
            }
        }
    }
}

struct Fair {
    inner: Arc<dyn Provider>,
    share: Arc<Share>,
    tenant: String,
}

#[async_trait]
impl Provider for Fair {
    fn kind(&self) -> ProviderKind {
        self.inner.kind()
    }

    async fn authorize(&self, call: &Authorize) -> Result<Receipt, ProviderError> {
        self.share.turn(&self.tenant, "authorize").await;
        self.inner.authorize(call).await
    }

    async fn revoke(&self, call: &Revoke) -> Result<Receipt, ProviderError> {
        self.share.turn(&self.tenant, "revoke").await;
        self.inner.revoke(call).await
    }

    async fn modify(&self, call: &Modify) -> Result<Receipt, ProviderError> {
        self.share.turn(&self.tenant, "modify").await;
        self.inner.modify(call).await
    }

    async fn describe(&self, group: &GroupRef) -> Result<Vec<DescribedRule>, ProviderError> {
        self.share.turn(&self.tenant, "describe").await;
        self.inner.describe(group).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use std::time::Duration;

    use tokio::time::Instant;

    use super::*;

    /// With one tenant's 100 calls queued first, another tenant's single
    /// call is served within the next few tokens, not after the 100.
    /// (The bucket runs on real time.)
    #[tokio::test]
    async fn a_burst_does_not_hold_up_another_tenant() {
        let share = Share::new(100, 1);
        let served = Arc::new(AtomicUsize::new(0));
        let mut bulk = Vec::new();
        for _ in 0..100 {
            let (share, served) = (share.clone(), served.clone());
            bulk.push(tokio::spawn(async move {
                share.turn("a", "test").await;
                served.fetch_add(1, Ordering::SeqCst);
            }));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let before = served.load(Ordering::SeqCst);
        let started = Instant::now();
        share.turn("b", "test").await;
        let waited = started.elapsed();
        let after = served.load(Ordering::SeqCst);
        assert!(
            after - before <= 3,
            "{} of a's calls went first",
            after - before
        );
        assert!(waited <= Duration::from_millis(200), "b waited {waited:?}");
        for task in bulk {
            task.await.expect("present");
        }
        assert_eq!(served.load(Ordering::SeqCst), 100);
    }

    /// Round robin keeps the bucket's rate: 40 calls over two tenants at
    /// 100/s (burst 1) take about 0.4 s, alternating.
    #[tokio::test]
    async fn the_rate_holds_and_tenants_alternate() {
        let share = Share::new(100, 1);
        let order = Arc::new(Mutex::new(Vec::new()));
        let started = Instant::now();
        let mut tasks = Vec::new();
        for i in 0..40 {
            let tenant = if i < 20 { "a" } else { "b" };
            let (share, order) = (share.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                share.turn(tenant, "test").await;
                order.lock().expect("present").push(tenant);
            }));
        }
        for task in tasks {
            task.await.expect("present");
        }
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(370), "{elapsed:?}");
        let order = order.lock().expect("present");
        let switches = order.windows(2).filter(|w| w[0] != w[1]).count();
        assert!(switches >= 30, "{switches} switches in {order:?}");
    }

    /// A caller that stops waiting does not take a token from the others.
    #[tokio::test]
    async fn an_abandoned_wait_passes_its_token_on() {
        let share = Share::new(2, 1);
        share.turn("a", "test").await;
        let gave_up =
            tokio::time::timeout(Duration::from_millis(100), share.turn("a", "test")).await;
        assert!(gave_up.is_err());
        let started = Instant::now();
        share.turn("b", "test").await;
        // The next token comes 0.5 s after the first; without passing the
        // abandoned one on, b would wait for the token after it.
        assert!(
            started.elapsed() <= Duration::from_millis(800),
            "{:?}",
            started.elapsed()
        );
    }
}
