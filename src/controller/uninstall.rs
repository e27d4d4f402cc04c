//! Deleting the SecurityGroupRule CRD abandons the cloud rules instead of
//! revoking them: the API server deletes every rule with its CRD, and a mass
//! revoke of a whole account's firewall is never what an uninstall means.
//! To revoke everything, delete the rules first and wait for them to go.
//!
//! The CRD is watched by name (RBAC grants get/list/watch on that one name).
//! The API server marks the CRD deleted before it deletes any rule, but the
//! two watches may deliver out of order: when the cache does not show the
//! CRD terminating, a read of its metadata settles it before any revoke.

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

use super::backoff::WatchBackoff;
use crate::api::SecurityGroupRule;

pub type CrdMeta = PartialObjectMeta<CustomResourceDefinition>;

/// Whether the SecurityGroupRule CRD is being deleted.
#[derive(Clone)]
pub struct Uninstall {
    api: Api<CrdMeta>,
    cache: Store<CrdMeta>,
}

impl Uninstall {
    /// The watch of the CRD, to drive, and what it learns. The stream yields
    /// the CRD whenever it changes.
    pub fn watch(
        client: Client,
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
        (Self { api, cache }, events)
    }

    /// True while the CRD is being deleted (or already gone). Reads the API
    /// server unless the cache already says so.
    pub async fn in_progress(&self) -> Result<bool, kube::Error> {
        if self
            .cache
            .get(&ObjectRef::new(crd_name()))
            .is_some_and(|crd| is_terminating(&crd))
        {
            return Ok(true);
        }
        match self.api.get_opt(crd_name()).await? {
            Some(crd) => Ok(is_terminating(&crd)),
            None => Ok(true),
        }
    }
}

/// Whether a watched CRD event starts the uninstall.
pub fn is_terminating(crd: &CrdMeta) -> bool {
    crd.metadata.deletion_timestamp.is_some()
}

fn crd_name() -> &'static str {
    SecurityGroupRule::crd_name()
}
