//! Leader election over a `coordination.k8s.io/v1` Lease, with client-go's
//! rules: the holder renews every [`RENEW_PERIOD`]; a candidate takes the
//! lease over once it has seen the same lease version, unrenewed, for the
//! lease duration on its own monotonic clock (so clocks of different nodes
//! need not agree); a holder that has not renewed for [`RENEW_DEADLINE`]
//! gives up, well before any candidate may take over.
//!
//! Only the holder runs the controller, so only it calls the providers.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
};
use kube::{Api, Client, ResourceExt, api::PostParams};
use tokio::{sync::oneshot, time::Instant};
use tracing::{info, warn};

/// How long a lease stays valid without renewal.
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
/// How often the holder renews.
pub const RENEW_PERIOD: Duration = Duration::from_secs(5);
/// How long the holder keeps trying to renew before it gives up leading.
pub const RENEW_DEADLINE: Duration = Duration::from_secs(10);
/// How often a candidate looks at the lease, and a failed renewal is
/// retried. A takeover comes at most this much after the lease expires.
pub const RETRY_PERIOD: Duration = Duration::from_secs(1);

// The holder must have stopped before a candidate can take over.
const _: () = assert!(
    RENEW_DEADLINE.as_secs() + RETRY_PERIOD.as_secs() <= LEASE_DURATION.as_secs()
        && RENEW_PERIOD.as_secs() < RENEW_DEADLINE.as_secs()
);

/// Which lease, and who is asking for it.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub namespace: String,
    pub lease_name: String,
    pub identity: String,
}

/// Why the holder stopped leading.
#[derive(Debug, thiserror::Error)]
pub enum Lost {
    #[error("the lease was taken over by {0}")]
    TakenOver(String),
    #[error("the lease could not be renewed for {RENEW_DEADLINE:?}")]
    NotRenewed,
}

/// What one look at the lease decided.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// No lease yet: create it, holding it.
    Create,
    /// Ours: renew it.
    Renew,
    /// Released, or expired: take it over.
    TakeOver,
    /// Someone else holds it and it has not expired.
    Wait { holder: String },
}

/// What `spec` asks of candidate `me`, given whether the lease has expired.
fn step(spec: Option<&LeaseSpec>, me: &str, expired: bool) -> Step {
    let Some(spec) = spec else {
        return Step::Create;
    };
    match spec.holder_identity.as_deref() {
        Some(holder) if holder == me => Step::Renew,
        None | Some("") => Step::TakeOver,
        Some(_) if expired => Step::TakeOver,
        Some(holder) => Step::Wait {
            holder: holder.to_owned(),
        },
    }
}

/// When this candidate first saw the lease's current version.
#[derive(Debug)]
struct Observation {
    version: Option<String>,
    at: Instant,
}

impl Observation {
    /// Whether a lease seen at version `version` and lasting `duration` has
    /// expired at `now`; a version not seen before starts the clock again.
    fn expired(
        slot: &mut Option<Self>,
        version: Option<String>,
        duration: Duration,
        now: Instant,
    ) -> bool {
        match slot {
            Some(seen) if seen.version == version => now.duration_since(seen.at) >= duration,
            _ => {
                *slot = Some(Self { version, at: now });
                false
            }
        }
    }
}

/// Result of one attempt on the lease.
#[derive(Debug)]
enum Attempt {
    Leading,
    HeldBy(String),
}

#[derive(Debug)]
pub struct Elector {
    api: Api<Lease>,
    candidate: Candidate,
    observed: Option<Observation>,
    /// When the last successful write of the lease by this holder was sent.
    renewed: Option<Instant>,
}

impl Elector {
    pub fn new(client: Client, candidate: Candidate) -> Self {
        Self {
            api: Api::namespaced(client, &candidate.namespace),
            candidate,
            observed: None,
            renewed: None,
        }
    }

    /// Waits until this instance holds the lease. `on_standby` runs after
    /// every look that found the lease held by another instance.
    pub async fn acquire(&mut self, mut on_standby: impl FnMut()) {
        let mut last_holder = None;
        loop {
            match self.attempt().await {
                Ok(Attempt::Leading) => {
                    info!(identity = %self.candidate.identity, lease = %self.candidate.lease_name, "acquired the lease; leading");
                    return;
                }
                Ok(Attempt::HeldBy(holder)) => {
                    if last_holder.as_ref() != Some(&holder) {
                        info!(%holder, lease = %self.candidate.lease_name, "standing by: another instance holds the lease");
                        last_holder = Some(holder);
                    }
                    on_standby();
                }
                Err(e) => {
                    warn!(error = %e, lease = %self.candidate.lease_name, "cannot read or take the lease")
                }
            }
            tokio::time::sleep(RETRY_PERIOD).await;
        }
    }

    /// Renews the lease until `stop` fires (then hands the elector back,
    /// still holding the lease) or leadership is lost.
    pub async fn hold(mut self, mut stop: oneshot::Receiver<()>) -> Result<Self, Lost> {
        let mut wait = RENEW_PERIOD;
        loop {
            tokio::select! {
                _ = &mut stop => return Ok(self),
                () = tokio::time::sleep(wait) => {}
            }
            let left = RENEW_DEADLINE.saturating_sub(self.since_renewal());
            match tokio::time::timeout(left, self.attempt()).await {
                Ok(Ok(Attempt::Leading)) => wait = RENEW_PERIOD,
                Ok(Ok(Attempt::HeldBy(holder))) => return Err(Lost::TakenOver(holder)),
                Ok(Err(e)) => {
                    warn!(error = %e, "renewing the lease failed; retrying");
                    wait = RETRY_PERIOD;
                }
                Err(_) => wait = Duration::ZERO,
            }
            if self.since_renewal() >= RENEW_DEADLINE {
                return Err(Lost::NotRenewed);
            }
            wait = wait.min(RENEW_DEADLINE.saturating_sub(self.since_renewal()));
        }
    }

    /// Gives the lease up so that a standby takes over at once instead of
    /// waiting for it to expire. Call only once nothing acts as leader any more.
    pub async fn release(self) {
        let result = async {
            let Some(mut lease) = self.api.get_opt(&self.candidate.lease_name).await? else {
                return Ok(());
            };
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            if spec.holder_identity.as_deref() != Some(self.candidate.identity.as_str()) {
                return Ok(());
            }
            spec.holder_identity = None;
            spec.lease_duration_seconds = Some(1);
            spec.renew_time = Some(MicroTime(Timestamp::now()));
            self.api
                .replace(&self.candidate.lease_name, &PostParams::default(), &lease)
                .await
                .map(|_| ())
        }
        .await;
        match result {
            Ok(()) => info!(lease = %self.candidate.lease_name, "released the lease"),
            Err(e) => {
                warn!(error = %e, "could not release the lease; a standby takes over once it expires")
            }
        }
    }

    /// Counted from when the write was sent, not answered: the holder's
    /// deadline then never runs later than the lease seen by others.
    fn since_renewal(&self) -> Duration {
        self.renewed.map_or(Duration::MAX, |at| at.elapsed())
    }

    /// One look at the lease: create, renew or take it over if allowed.
    async fn attempt(&mut self) -> Result<Attempt, kube::Error> {
        let started = Instant::now();
        let attempt = self.look_and_write().await?;
        if matches!(attempt, Attempt::Leading) {
            self.renewed = Some(started);
        }
        Ok(attempt)
    }

    async fn look_and_write(&mut self) -> Result<Attempt, kube::Error> {
        // A conflict means another writer got there first: look again at
        // once, so that the clock runs from its version, not from the next look.
        for _ in 0..2 {
            if let Some(attempt) = self.attempt_once().await? {
                return Ok(attempt);
            }
        }
        Ok(Attempt::HeldBy("a concurrent writer".into()))
    }

    /// `None` when the write conflicted with another writer's.
    async fn attempt_once(&mut self) -> Result<Option<Attempt>, kube::Error> {
        let name = &self.candidate.lease_name;
        let me = self.candidate.identity.as_str();
        let current = self.api.get_opt(name).await?;
        let spec = current.as_ref().and_then(|l| l.spec.as_ref());
        let duration = spec
            .and_then(|s| s.lease_duration_seconds)
            .and_then(|s| u64::try_from(s).ok())
            .map_or(LEASE_DURATION, Duration::from_secs);
        let version = current.as_ref().and_then(ResourceExt::resource_version);
        let expired = Observation::expired(&mut self.observed, version, duration, Instant::now());
        let now = MicroTime(Timestamp::now());
        let written = match step(spec, me, expired) {
            Step::Wait { holder } => return Ok(Some(Attempt::HeldBy(holder))),
            Step::Create => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(me.to_owned()),
                        lease_duration_seconds: Some(lease_seconds()),
                        acquire_time: Some(now.clone()),
                        renew_time: Some(now),
                        lease_transitions: Some(0),
                        ..LeaseSpec::default()
                    }),
                };
                self.api.create(&PostParams::default(), &lease).await
            }
            Step::Renew | Step::TakeOver => {
                let mut lease = current.unwrap_or_default();
                let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
                if spec.holder_identity.as_deref() != Some(me) {
                    spec.holder_identity = Some(me.to_owned());
                    spec.acquire_time = Some(now.clone());
                    spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
                }
                spec.lease_duration_seconds = Some(lease_seconds());
                spec.renew_time = Some(now);
                // resourceVersion is kept: a concurrent writer makes this a 409.
                self.api.replace(name, &PostParams::default(), &lease).await
            }
        };
        match written {
            Ok(_) => Ok(Some(Attempt::Leading)),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Runs `work` while holding the lease. Losing the lease drops `work` at
/// once, so no provider call starts after that, and fails: the process
/// exits and its Pod restarts as a candidate. When `work` ends (SIGTERM),
/// the lease is released for a standby to take over without waiting.
pub async fn lead(
    elector: Elector,
    work: impl Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    let (stop, stopped) = oneshot::channel();
    let mut holding = tokio::spawn(elector.hold(stopped));
    tokio::select! {
        held = &mut holding => {
            let reason = match held {
                Ok(Err(lost)) => lost.to_string(),
                Ok(Ok(_)) => "the lease renewal stopped".to_owned(),
                Err(e) => format!("the lease renewal task failed: {e}"),
            };
            tracing::error!(%reason, "lost leadership; stopping");
            Err(anyhow::anyhow!("lost leadership: {reason}"))
        }
        result = work => {
            let _ = stop.send(());
            if let Ok(Ok(elector)) = holding.await {
                elector.release().await;
            }
            result
        }
    }
}

fn lease_seconds() -> i32 {
    i32::try_from(LEASE_DURATION.as_secs()).unwrap_or(i32::MAX)
}

/// This instance's name in the lease: `POD_NAME`, else the host name with a
/// random suffix, so that two processes on one host never share an identity.
pub fn identity() -> String {
    if let Some(pod) = std::env::var("POD_NAME").ok().filter(|p| !p.is_empty()) {
        return pod;
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "secgroup-operator".to_owned());
    format!("{host}_{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use http::{Request, Response};
    use kube::client::Body;
    use serde_json::{Value, json};
    use tower_test::mock;

    use super::*;

    /// A lease API whose answers `answer` picks from the method and the
    /// body sent; it records what was written.
    fn api_server(
        mut answer: impl FnMut(&http::Method, Option<&Value>) -> (u16, Value) + Send + 'static,
    ) -> (Client, Arc<Mutex<Vec<Value>>>) {
        let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
        let written = Arc::new(Mutex::new(Vec::new()));
        let log = written.clone();
        tokio::spawn(async move {
            while let Some((request, reply)) = handle.next_request().await {
                let method = request.method().clone();
                let bytes = request.into_body().collect_bytes().await.expect("body");
                let body: Option<Value> = serde_json::from_slice(&bytes).ok();
                if let Some(b) = &body {
                    log.lock().expect("log").push(b.clone());
                }
                let (status, json) = answer(&method, body.as_ref());
                let response = Response::builder()
                    .status(status)
                    .body(Body::from(serde_json::to_vec(&json).expect("json")))
                    .expect("response");
                reply.send_response(response);
            }
        });
        (Client::new(service, "ops"), written)
    }

    fn lease(holder: &str, version: &str) -> Value {
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
               "metadata": {"name": "l", "namespace": "ops", "resourceVersion": version},
               "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15, "leaseTransitions": 3}})
    }

    fn not_found() -> Value {
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"})
    }

    fn server_error() -> Value {
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "InternalError", "code": 500, "message": "down"})
    }

    fn elector(client: Client, identity: &str) -> Elector {
        Elector::new(
            client,
            Candidate {
                namespace: "ops".into(),
                lease_name: "l".into(),
                identity: identity.into(),
            },
        )
    }

    /// Fails a test that would otherwise wait forever (in paused time).
    async fn bounded<T>(f: impl Future<Output = T>) -> T {
        tokio::time::timeout(LEASE_DURATION * 4, f)
            .await
            .expect("finished in time")
    }

    /// Creates the lease on the first write, then answers every call with 500.
    fn created_then_unreachable() -> impl FnMut(&http::Method, Option<&Value>) -> (u16, Value) {
        let mut created = false;
        move |method, body| match (method.as_str(), created) {
            ("GET", false) => (404, not_found()),
            ("POST", false) => {
                created = true;
                (201, body.cloned().expect("lease sent"))
            }
            _ => (500, server_error()),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_holder_that_cannot_renew_stops_before_anyone_may_take_over() {
        let (client, written) = api_server(created_then_unreachable());
        let mut me = elector(client, "me");
        bounded(me.acquire(|| panic!("no one else holds it"))).await;
        let acquired = Instant::now();
        assert_eq!(
            written.lock().expect("log")[0]["spec"]["holderIdentity"],
            "me"
        );
        let (_keep, stop) = oneshot::channel();
        let lost = bounded(me.hold(stop)).await.expect_err("cannot renew");
        assert!(matches!(lost, Lost::NotRenewed), "{lost}");
        let held = acquired.elapsed();
        assert!(
            held >= RENEW_DEADLINE && held < LEASE_DURATION,
            "stopped after {held:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_holder_stops_at_the_first_renewal_that_finds_another_holder() {
        let mut created = false;
        let (client, _) = api_server(move |method, body| match (method.as_str(), created) {
            ("GET", false) => (404, not_found()),
            ("POST", false) => {
                created = true;
                (201, body.cloned().expect("lease sent"))
            }
            _ => (200, lease("other", "9")),
        });
        let mut me = elector(client, "me");
        bounded(me.acquire(|| panic!("no one else holds it"))).await;
        let (_keep, stop) = oneshot::channel();
        match bounded(me.hold(stop)).await {
            Err(Lost::TakenOver(holder)) => assert_eq!(holder, "other"),
            other => panic!("{:?}", other.map(|_| ())),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_candidate_takes_over_a_lease_left_unrenewed_for_its_duration() {
        let (client, written) = api_server(|method, body| match method.as_str() {
            "GET" => (200, lease("gone", "7")),
            _ => (200, body.cloned().expect("lease sent")),
        });
        let mut me = elector(client, "me");
        let started = Instant::now();
        let mut standing_by = 0;
        bounded(me.acquire(|| standing_by += 1)).await;
        assert!(
            started.elapsed() >= LEASE_DURATION,
            "{:?}",
            started.elapsed()
        );
        assert!(standing_by >= 10, "looked {standing_by} times");
        let taken = written
            .lock()
            .expect("log")
            .last()
            .cloned()
            .expect("written");
        assert_eq!(taken["spec"]["holderIdentity"], "me");
        assert_eq!(taken["spec"]["leaseTransitions"], 4);
        assert_eq!(
            taken["metadata"]["resourceVersion"], "7",
            "a conditional write"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_candidate_never_takes_a_lease_that_keeps_being_renewed() {
        let mut version = 0;
        let (client, written) = api_server(move |_, _| {
            version += 1;
            (200, lease("other", &version.to_string()))
        });
        let mut me = elector(client, "me");
        let waited = tokio::time::timeout(LEASE_DURATION * 4, me.acquire(|| {})).await;
        assert!(waited.is_err(), "took a lease that was being renewed");
        assert!(written.lock().expect("log").is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn release_clears_the_holder_only_when_it_is_this_instance() {
        let (client, written) = api_server(|method, body| match method.as_str() {
            "GET" => (200, lease("me", "3")),
            _ => (200, body.cloned().expect("lease sent")),
        });
        elector(client, "me").release().await;
        let released = written
            .lock()
            .expect("log")
            .last()
            .cloned()
            .expect("written");
        assert!(
            released["spec"].get("holderIdentity").is_none(),
            "{released}"
        );
        let (client, written) = api_server(|_, _| (200, lease("other", "3")));
        elector(client, "me").release().await;
        assert!(
            written.lock().expect("log").is_empty(),
            "another holder's lease was touched"
        );
    }

    fn held_by(holder: Option<&str>) -> LeaseSpec {
        LeaseSpec {
            holder_identity: holder.map(str::to_owned),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn a_missing_lease_is_created_and_a_released_one_taken() {
        assert_eq!(step(None, "a", false), Step::Create);
        assert_eq!(step(Some(&held_by(None)), "a", false), Step::TakeOver);
        assert_eq!(step(Some(&held_by(Some(""))), "a", false), Step::TakeOver);
    }

    #[test]
    fn the_holder_renews_and_others_wait_until_it_expires() {
        let lease = held_by(Some("a"));
        assert_eq!(step(Some(&lease), "a", false), Step::Renew);
        assert_eq!(
            step(Some(&lease), "b", false),
            Step::Wait { holder: "a".into() }
        );
        assert_eq!(step(Some(&lease), "b", true), Step::TakeOver);
    }

    #[test]
    fn expiry_runs_from_when_this_candidate_first_saw_the_version() {
        let mut seen = None;
        let t0 = Instant::now();
        let d = Duration::from_secs(15);
        let v = |s: &str| Some(s.to_owned());
        assert!(
            !Observation::expired(&mut seen, v("1"), d, t0),
            "first sight"
        );
        assert!(!Observation::expired(
            &mut seen,
            v("1"),
            d,
            t0 + Duration::from_secs(14)
        ));
        // Renewed meanwhile: the clock starts again from this look.
        assert!(!Observation::expired(
            &mut seen,
            v("2"),
            d,
            t0 + Duration::from_secs(16)
        ));
        assert!(!Observation::expired(
            &mut seen,
            v("2"),
            d,
            t0 + Duration::from_secs(30)
        ));
        assert!(Observation::expired(
            &mut seen,
            v("2"),
            d,
            t0 + Duration::from_secs(31)
        ));
    }

    #[test]
    fn pod_name_is_the_identity_else_the_host_with_a_unique_suffix() {
        // The environment is process-wide (and set_var unsafe): check
        // whichever branch this process takes.
        match std::env::var("POD_NAME") {
            Ok(pod) if !pod.is_empty() => assert_eq!(identity(), pod),
            _ => {
                let (a, b) = (identity(), identity());
                assert_ne!(a, b, "two processes on one host must differ");
                assert!(a.contains('_'), "{a}");
            }
        }
    }
}
