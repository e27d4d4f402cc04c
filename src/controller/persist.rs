//! Writes `/status` by server-side apply, each write conditional on the
//! resourceVersion the pass started from, or last wrote.
//!
//! A reconcile gets its object from the watch cache, which may not show the
//! previous pass's last write yet. Deciding on such a stale view could
//! forget a rule that pass had just authorized, or claim one it had just
//! revoked. The condition turns that into a conflict: the pass stops before
//! it records (or calls) anything, and runs again on fresh data.
//!
//! The watch usually delivers a write after its answer, so the pass that
//! follows a pass often starts from the version that pass replaced. Such
//! versions are remembered ([`Outdated`]): a pass starting from one waits
//! for the cache to catch up instead of spending a request on a conflict.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use jiff::Timestamp;
use kube::{
    Api, Resource, ResourceExt,
    api::{Patch, PatchParams},
    runtime::reflector::ObjectRef,
};

use super::{
    Error,
    status::{self, Record, Standing},
};
use crate::api::{FIELD_MANAGER, SecurityGroupRule, SecurityGroupRuleStatus};

/// Per rule, the resourceVersions that this operator's own writes have
/// replaced: earlier versions of its status writes, and the last one once
/// the finalizer is removed (the object is gone; a pass from its cached
/// last version would only meet a 404). Kept until a pass starts from a
/// newer version, or for `KEEP` at most.
#[derive(Debug, Default)]
pub struct Outdated(Mutex<HashMap<ObjectRef<SecurityGroupRule>, Versions>>);

#[derive(Debug)]
struct Versions {
    replaced: Vec<String>,
    latest: Option<String>,
    since: Instant,
}

/// How long versions are remembered: the watch delivers within seconds.
const KEEP: Duration = Duration::from_secs(300);
/// Entries beyond this many trigger pruning of the expired ones.
const PRUNE_ABOVE: usize = 4096;

impl Outdated {
    /// Whether `rule` as cached is older than a write of this operator.
    /// Forgets the rule once its cached version is not such a one.
    pub fn is_outdated(&self, rule: &SecurityGroupRule) -> bool {
        let key = ObjectRef::from_obj(rule);
        let mut map = self.lock();
        let outdated = match (map.get(&key), rule.resource_version()) {
            (Some(versions), Some(version)) => versions.replaced.contains(&version),
            _ => false,
        };
        if !outdated {
            map.remove(&key);
        }
        outdated
    }

    /// The finalizer of `rule` is removed: its last written version is gone too.
    pub fn gone(&self, rule: &SecurityGroupRule) {
        if let Some(versions) = self.lock().get_mut(&ObjectRef::from_obj(rule))
            && let Some(latest) = versions.latest.take()
        {
            versions.replaced.push(latest);
        }
    }

    fn written(&self, rule: &SecurityGroupRule, replaced: Option<String>, latest: Option<String>) {
        let mut map = self.lock();
        if map.len() > PRUNE_ABOVE {
            map.retain(|_, v| v.since.elapsed() < KEEP);
        }
        let versions = map
            .entry(ObjectRef::from_obj(rule))
            .or_insert_with(|| Versions {
                replaced: Vec::new(),
                latest: None,
                since: Instant::now(),
            });
        versions.replaced.extend(replaced);
        versions.latest = latest;
        versions.since = Instant::now();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectRef<SecurityGroupRule>, Versions>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

pub struct StatusWriter<'a> {
    api: &'a Api<SecurityGroupRule>,
    rule: &'a SecurityGroupRule,
    outdated: &'a Outdated,
    resource_version: Option<String>,
    /// The status as last read or written.
    status: Option<SecurityGroupRuleStatus>,
    /// Whether a conditional write of this pass succeeded, which proves that
    /// what the pass read was current.
    proven: bool,
}

impl<'a> StatusWriter<'a> {
    pub fn new(
        api: &'a Api<SecurityGroupRule>,
        rule: &'a SecurityGroupRule,
        outdated: &'a Outdated,
    ) -> Self {
        Self {
            api,
            rule,
            outdated,
            resource_version: rule.resource_version(),
            status: rule.status.clone(),
            proven: false,
        }
    }

    /// Before a call that status already accounts for: proves the pass read
    /// the latest record, unless a write of this pass did. Applies the
    /// status unchanged, which the API server answers without a new
    /// resourceVersion (and so without waking the rule), or with a conflict.
    pub async fn ensure_current(&mut self) -> Result<(), Error> {
        match self.status.clone() {
            Some(current) if !self.proven => self.apply(&current).await,
            _ => Ok(()),
        }
    }

    /// The status as last read or written.
    pub fn current(&self) -> Option<&SecurityGroupRuleStatus> {
        self.status.as_ref()
    }

    fn next(&self, record: &Record, standing: &Standing) -> SecurityGroupRuleStatus {
        status::build(
            self.status.as_ref(),
            record,
            standing,
            &self.rule.spec.rule,
            self.rule.meta().generation,
            Timestamp::now(),
        )
    }

    /// Writes the status for `record` and `standing` unless it is what the
    /// object already has. Returns whether it wrote.
    pub async fn write(&mut self, record: &Record, standing: &Standing) -> Result<bool, Error> {
        let next = self.next(record, standing);
        if self.status.as_ref() == Some(&next) {
            return Ok(false);
        }
        self.apply(&next).await?;
        Ok(true)
    }

    /// Writes even an unchanged status: proves that what the pass decided
    /// on was current (a deletion must not end on a stale view).
    pub async fn confirm(&mut self, record: &Record, standing: &Standing) -> Result<(), Error> {
        let next = self.next(record, standing);
        self.apply(&next).await
    }

    async fn apply(&mut self, next: &SecurityGroupRuleStatus) -> Result<(), Error> {
        let patch = serde_json::json!({
            "apiVersion": SecurityGroupRule::api_version(&()),
            "kind": SecurityGroupRule::kind(&()),
            "metadata": {"name": self.rule.name_any(), "resourceVersion": self.resource_version},
            "status": next,
        });
        let written = self
            .api
            .patch_status(
                &self.rule.name_any(),
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await
            .map_err(|e| match e {
                kube::Error::Api(status) if status.code == 409 => Error::Stale,
                other => Error::Kube(other),
            })?;
        let replaced = std::mem::replace(&mut self.resource_version, written.resource_version());
        let replaced = replaced.filter(|old| self.resource_version.as_ref() != Some(old));
        self.outdated
            .written(self.rule, replaced, self.resource_version.clone());
        self.status = written.status;
        self.proven = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use http::{Request, Response};
    use kube::{Client, client::Body};
    use serde_json::{Value, json};
    use tower_test::mock;

    use super::*;
    use crate::api::conditions::reasons;

    fn rule() -> SecurityGroupRule {
        serde_json::from_value(json!({
            "apiVersion": "secgroup.dev/v1alpha1", "kind": "SecurityGroupRule",
            "metadata": {"name": "web", "namespace": "ns", "resourceVersion": "5", "generation": 2},
            "spec": {"providerConfigRef": {"name": "p"}, "securityGroupId": "sg-1",
                     "rule": {"direction": "Ingress", "protocol": "TCP", "peer": {"cidr": "10.0.0.0/8"}}},
            "status": {"observedGeneration": 1, "attemptEpoch": 3}
        }))
        .expect("valid rule")
    }

    /// A fake API server answering each request with the next `(status,
    /// resourceVersion)`: 200 echoes the applied status under that version,
    /// 409 is a conflict. Returns the request bodies once the client is gone.
    fn api_server(
        answers: Vec<(u16, &'static str)>,
    ) -> (Api<SecurityGroupRule>, tokio::task::JoinHandle<Vec<Value>>) {
        let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
        let server = tokio::spawn(async move {
            let mut bodies = Vec::new();
            for (code, version) in answers {
                let Some((request, reply)) = handle.next_request().await else {
                    break;
                };
                assert_eq!(request.method(), http::Method::PATCH);
                assert!(
                    request
                        .uri()
                        .path()
                        .ends_with("/namespaces/ns/securitygrouprules/web/status")
                );
                let body: Value = serde_json::from_slice(
                    &request.into_body().collect_bytes().await.expect("body"),
                )
                .expect("JSON body");
                let answer = if code == 200 {
                    let mut object = serde_json::to_value(rule()).expect("object");
                    object["metadata"]["resourceVersion"] = json!(version);
                    object["status"] = body["status"].clone();
                    object
                } else {
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                           "reason": "Conflict", "code": code, "message": "the object has been modified"})
                };
                bodies.push(body);
                let response = Response::builder()
                    .status(code)
                    .body(Body::from(answer.to_string().into_bytes()))
                    .expect("response");
                reply.send_response(response);
            }
            bodies
        });
        (Api::namespaced(Client::new(service, "ns"), "ns"), server)
    }

    /// `rule` as the cache would hold it at `version`.
    fn at_version(rule: &SecurityGroupRule, version: &str) -> SecurityGroupRule {
        let mut cached = rule.clone();
        cached.metadata.resource_version = Some(version.into());
        cached
    }

    fn progressing() -> Standing {
        Standing::Progressing {
            reason: reasons::PROGRESSING,
            message: "authorizing the rule at the provider".into(),
        }
    }

    /// Every write carries the version it builds on: the object's first,
    /// then what the previous write returned.
    #[tokio::test]
    async fn each_write_is_conditional_on_the_version_it_builds_on() {
        let (api, server) = api_server(vec![(200, "6"), (200, "7")]);
        let rule = rule();
        let outdated = Outdated::default();
        let mut writer = StatusWriter::new(&api, &rule, &outdated);
        let mut record = Record::from_status(rule.status.as_ref());
        assert!(
            writer
                .write(&record, &progressing())
                .await
                .expect("written")
        );
        record.attempt_epoch += 1;
        assert!(
            writer
                .write(&record, &progressing())
                .await
                .expect("written")
        );
        let bodies = server.await.expect("server");
        let versions: Vec<&Value> = bodies
            .iter()
            .map(|b| &b["metadata"]["resourceVersion"])
            .collect();
        assert_eq!(versions, [&json!("5"), &json!("6")]);
        assert_eq!(bodies[1]["status"]["attemptEpoch"], 4);
        // The cache may still hold version 5 or 6: a pass starting from
        // either must wait; one starting from 7 goes ahead.
        let at = |version: &str| at_version(&rule, version);
        assert!(outdated.is_outdated(&at("5")));
        assert!(outdated.is_outdated(&at("6")));
        assert!(!outdated.is_outdated(&at("7")));
        assert!(
            !outdated.is_outdated(&at("5")),
            "forgotten once the cache caught up"
        );
    }

    /// After the finalizer is removed, the last written version is as good
    /// as gone: a pass from it must not write to the deleted object.
    #[tokio::test]
    async fn the_last_version_is_outdated_once_the_rule_is_gone() {
        let (api, server) = api_server(vec![(200, "6")]);
        let rule = rule();
        let outdated = Outdated::default();
        let mut writer = StatusWriter::new(&api, &rule, &outdated);
        let record = Record::from_status(rule.status.as_ref());
        writer
            .write(&record, &progressing())
            .await
            .expect("written");
        drop(api);
        server.await.expect("server");
        outdated.gone(&rule);
        assert!(outdated.is_outdated(&at_version(&rule, "6")));
    }

    /// A conflict means the pass read a stale object: it must stop, not retry blindly.
    #[tokio::test]
    async fn a_conflict_is_reported_as_a_stale_read() {
        let (api, server) = api_server(vec![(409, "")]);
        let rule = rule();
        let outdated = Outdated::default();
        let mut writer = StatusWriter::new(&api, &rule, &outdated);
        let record = Record::from_status(rule.status.as_ref());
        let result = writer.write(&record, &progressing()).await;
        assert!(matches!(result, Err(Error::Stale)), "{result:?}");
        drop(api);
        server.await.expect("server");
    }

    /// Before a call that needs no new record, the unchanged status is
    /// applied once to prove it current; after that, or after any write of
    /// the pass, nothing more is sent.
    #[tokio::test]
    async fn the_record_is_proven_current_once_per_pass() {
        let (api, server) = api_server(vec![(200, "5")]);
        let rule = rule();
        let outdated = Outdated::default();
        let mut writer = StatusWriter::new(&api, &rule, &outdated);
        writer.ensure_current().await.expect("current");
        writer.ensure_current().await.expect("still current");
        drop(api);
        let bodies = server.await.expect("server");
        assert_eq!(bodies.len(), 1);
        assert_eq!(
            bodies[0]["status"],
            json!({"observedGeneration": 1, "attemptEpoch": 3})
        );
        assert_eq!(bodies[0]["metadata"]["resourceVersion"], "5");
        assert!(
            !outdated.is_outdated(&rule),
            "an unchanged status replaces no version"
        );
    }
}
