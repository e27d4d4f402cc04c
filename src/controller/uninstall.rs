//! Deleting the SecurityGroupRule CRD abandons the cloud rules instead of
//! revoking them: the API server deletes every rule with its CRD, and a mass
//! revoke of a whole account's firewall is never what an uninstall means.
//! To revoke everything, delete the rules first and wait for them to go.
//!
//! The CRD is watched by name (RBAC grants get/list/watch on that one name).
//! The API server marks the CRD deleted before it deletes any rule, but the
//! two watches may deliver out of order: when the cache does not show the
//! CRD terminating, a read of its metadata sent after the rule's deletion
//! was seen settles it before any revoke. One read serves every deletion
//! the rules watch had seen when it was sent: a mass delete costs a read or
//! two, not one per rule.

use std::sync::{Arc, PoisonError};

use futures::Stream;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{
    Api, Client, CustomResourceExt,
    core::PartialObjectMeta,
    runtime::{
        WatchStreamExt,
        reflector::{self, ObjectRef, Store},
        watcher::{self, watcher},
    },
};

use tokio::{sync::Mutex, time::Instant};

use super::backoff::WatchBackoff;
use crate::api::SecurityGroupRule;

pub type CrdMeta = PartialObjectMeta<CustomResourceDefinition>;

/// Whether the SecurityGroupRule CRD is being deleted.
#[derive(Clone)]
pub struct Uninstall {
    api: Api<CrdMeta>,
    cache: Store<CrdMeta>,
    seen: DeletionsSeen,
    /// The last read of the CRD; held while a read is in flight, so that
    /// callers arriving meanwhile share the next one.
    last: Arc<Mutex<Option<Read>>>,
}

struct Read {
    sent: Instant,
    terminating: bool,
}

impl Uninstall {
    /// The watch of the CRD, to drive, and what it learns. The stream yields
    /// the CRD whenever it changes.
    pub fn watch(
        client: Client,
        seen: DeletionsSeen,
    ) -> (
        Self,
        impl Stream<Item = Result<CrdMeta, watcher::Error>> + Send + 'static,
    ) {
        // Metadata only: the CRD's schema is large, and only its deletion matters.
        let api = Api::<CrdMeta>::all(client);
        let (cache, writer) = reflector::store();
        let by_name = watcher::Config::default().fields(&format!("metadata.name={}", crd_name()));
        let events = reflector::reflector(writer, watcher(api.clone(), by_name))
            .backoff(WatchBackoff::default())
            .touched_objects();
        (
            Self {
                api,
                cache,
                seen,
                last: Arc::default(),
            },
            events,
        )
    }

    /// True while the CRD is being deleted (or already gone), as a read sent
    /// after the rules watch saw its latest deletion shows it, unless the
    /// cache already says so. A CRD deletion, once seen, is final.
    pub async fn in_progress(&self) -> Result<bool, kube::Error> {
        let arrived = self.seen.latest();
        if self
            .cache
            .get(&ObjectRef::new(crd_name()))
            .is_some_and(|crd| is_terminating(&crd))
        {
            return Ok(true);
        }
        let mut last = self.last.lock().await;
        if let Some(read) = last
            .as_ref()
            .filter(|read| read.terminating || read.sent >= arrived)
        {
            return Ok(read.terminating);
        }
        let sent = Instant::now();
        let terminating = match self.api.get_opt(crd_name()).await? {
            Some(crd) => is_terminating(&crd),
            None => true,
        };
        *last = Some(Read { sent, terminating });
        Ok(terminating)
    }
}

/// When the rules watch last saw a rule marked for deletion. It notes the
/// moment before its cache takes the rule, so a deletion a reconcile finds
/// in the cache was seen at or before the latest moment noted.
#[derive(Clone)]
pub struct DeletionsSeen(Arc<std::sync::Mutex<Instant>>);

impl Default for DeletionsSeen {
    fn default() -> Self {
        Self(Arc::new(std::sync::Mutex::new(Instant::now())))
    }
}

impl DeletionsSeen {
    pub fn note(&self) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
    }

    fn latest(&self) -> Instant {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Whether a watched CRD event starts the uninstall.
pub fn is_terminating(crd: &CrdMeta) -> bool {
    crd.metadata.deletion_timestamp.is_some()
}

fn crd_name() -> &'static str {
    SecurityGroupRule::crd_name()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use futures::future::join_all;
    use http::{Request, Response};
    use kube::client::Body;
    use serde_json::json;
    use tokio::sync::mpsc;
    use tower_test::mock;

    use super::*;

    fn crd(terminating: bool) -> Vec<u8> {
        let mut metadata = json!({"name": crd_name(), "resourceVersion": "7"});
        if terminating {
            metadata["deletionTimestamp"] = json!("2026-11-30T00:00:00Z");
        }
        serde_json::to_vec(&json!({
            "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": metadata,
        }))
        .expect("JSON")
    }

    /// An API server answering each GET of the CRD with the next answer
    /// sent on the channel; counts the GETs.
    fn api_server() -> (
        Uninstall,
        DeletionsSeen,
        mpsc::UnboundedSender<bool>,
        Arc<AtomicUsize>,
    ) {
        let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
        let (answers, mut next) = mpsc::unbounded_channel::<bool>();
        let reads = Arc::new(AtomicUsize::new(0));
        let counted = reads.clone();
        tokio::spawn(async move {
            while let Some((request, reply)) = handle.next_request().await {
                assert_eq!(request.method(), http::Method::GET);
                assert!(
                    request.uri().path().ends_with(crd_name()),
                    "{}",
                    request.uri()
                );
                counted.fetch_add(1, Ordering::SeqCst);
                let Some(terminating) = next.recv().await else {
                    break;
                };
                reply.send_response(
                    Response::builder()
                        .header("content-type", "application/json")
                        .body(Body::from(crd(terminating)))
                        .expect("response"),
                );
            }
        });
        let seen = DeletionsSeen::default();
        let (uninstall, _) = Uninstall::watch(kube::Client::new(service, "default"), seen.clone());
        (uninstall, seen, answers, reads)
    }

    #[tokio::test]
    async fn deletions_seen_together_share_a_read_of_the_crd() {
        let (uninstall, seen, answers, reads) = api_server();
        for _ in 0..50 {
            answers.send(false).expect("server");
        }
        seen.note();
        let checks = join_all((0..50).map(|_| uninstall.in_progress())).await;
        assert!(checks.into_iter().all(|c| !c.expect("answered")));
        assert_eq!(reads.load(Ordering::SeqCst), 1);
        let later = join_all((0..50).map(|_| uninstall.in_progress())).await;
        assert!(later.into_iter().all(|c| !c.expect("answered")));
        assert_eq!(
            reads.load(Ordering::SeqCst),
            1,
            "no deletion seen since that read"
        );
    }

    /// A read sent before a rule's deletion was seen may predate the CRD's
    /// deletion: it does not answer for that rule.
    #[tokio::test]
    async fn a_read_sent_before_a_deletion_was_seen_does_not_answer_for_it() {
        let (uninstall, seen, answers, reads) = api_server();
        seen.note();
        let early = tokio::spawn({
            let uninstall = uninstall.clone();
            async move { uninstall.in_progress().await }
        });
        while reads.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        seen.note();
        let late = tokio::spawn({
            let uninstall = uninstall.clone();
            async move { uninstall.in_progress().await }
        });
        answers.send(false).expect("server");
        answers.send(true).expect("server");
        assert!(!early.await.expect("ran").expect("answered"));
        assert!(late.await.expect("ran").expect("answered"), "its own read");
        assert_eq!(reads.load(Ordering::SeqCst), 2);
        answers.send(true).expect("server");
        seen.note();
        assert!(
            uninstall.in_progress().await.expect("answered"),
            "a deletion seen stays"
        );
        assert_eq!(reads.load(Ordering::SeqCst), 2);
    }
}
