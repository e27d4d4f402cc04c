//! The writes of a pass to its rule: status by server-side apply, and the
//! finalizer by merge patch, each conditional on the resourceVersion the
//! pass started from, or last wrote.
//!
//! A reconcile gets its object from the watch cache, which may not show the
//! previous pass's last write yet. Deciding on such a stale view could
//! forget a rule that pass had just authorized, or claim one it had just
//! revoked. The condition turns that into a conflict: the pass runs again
//! on fresh data, with the same ClientTokens, before its record or the
//! finalizer's removal lands.
//!
//! The watch usually delivers a write after its answer, so the pass that
//! follows a pass often starts from the version that pass replaced. Such
//! versions are remembered ([`StaleVersions`]): a pass starting from one waits
//! for the cache to catch up instead of spending a request on a conflict.
//!
//! Calls are not preceded by a status write: the record a pass has reached
//! is held in memory before each call ([`Unwritten`]) until a status write
//! holds it, so a failed write forgets nothing while the process lives.

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
use crate::api::{FIELD_MANAGER, FINALIZER, SecurityGroupRule, SecurityGroupRuleStatus};

/// Per rule, the resourceVersions that this operator's own writes have
/// replaced: earlier versions of its status writes, and the last one once
/// the finalizer is removed (the object is gone; a pass from its cached
/// last version would only meet a 404). Kept until a pass starts from a
/// newer version, or for `KEEP` at most.
#[derive(Debug, Default)]
pub struct StaleVersions(Mutex<HashMap<ObjectRef<SecurityGroupRule>, Versions>>);

#[derive(Debug)]
struct Versions {
    replaced: Vec<String>,
    latest: Option<String>,
    since: Instant,
}

impl Versions {
    /// What is kept for `rule`, empty when nothing was.
    fn of<'m>(
        map: &'m mut HashMap<ObjectRef<SecurityGroupRule>, Versions>,
        rule: &SecurityGroupRule,
    ) -> &'m mut Versions {
        map.entry(key(rule)).or_insert_with(|| Versions {
            replaced: Vec::new(),
            latest: None,
            since: Instant::now(),
        })
    }
}

/// How long versions are remembered: the watch delivers within seconds.
const KEEP: Duration = Duration::from_secs(300);
/// Entries beyond this many trigger pruning of the expired ones.
const PRUNE_ABOVE: usize = 4096;

impl StaleVersions {
    /// Whether `rule` as cached is older than a write of this operator.
    /// Forgets the rule once its cached version is not such a one.
    pub fn is_stale(&self, rule: &SecurityGroupRule) -> bool {
        let key = ObjectRef::from_obj(rule);
        let mut map = self.lock();
        let stale = match (map.get(&key), rule.resource_version()) {
            (Some(versions), Some(version)) => versions.replaced.contains(&version),
            _ => false,
        };
        if !stale {
            map.remove(&key);
        }
        stale
    }

    /// The finalizer of `rule` is removed: its last written version is gone too.
    pub fn gone(&self, rule: &SecurityGroupRule) {
        if let Some(versions) = self.lock().get_mut(&ObjectRef::from_obj(rule))
            && let Some(latest) = versions.latest.take()
        {
            versions.replaced.push(latest);
        }
    }

    /// The object has a version newer than `version`, not yet seen.
    fn moved_past(&self, rule: &SecurityGroupRule, version: Option<String>) {
        let mut map = self.lock();
        let versions = Versions::of(&mut map, rule);
        versions.replaced.extend(version);
        versions.since = Instant::now();
    }

    fn written(&self, rule: &SecurityGroupRule, replaced: Option<String>, latest: Option<String>) {
        let mut map = self.lock();
        if map.len() > PRUNE_ABOVE {
            map.retain(|_, v| v.since.elapsed() < KEEP);
        }
        let versions = Versions::of(&mut map, rule);
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

/// Records that ran ahead of status: per rule, the record as it stood
/// before a pass's latest provider call, kept until a status write of the
/// rule succeeds. The write-ahead record in memory: a pass whose status
/// write fails (a conflict, the API server away) leaves its calls' effects
/// here, and the next pass in this process starts from them instead of
/// from status. A restart loses them; see `Pass::recover` for how the
/// ownership mark stands in then.
#[derive(Debug, Default)]
pub struct Unwritten(Mutex<HashMap<ObjectRef<SecurityGroupRule>, Held>>);

/// A record held for one object: the uid tells a new object of the same
/// name from the one the record is about.
#[derive(Debug)]
struct Held {
    uid: Option<String>,
    record: Record,
}

impl Unwritten {
    /// The record a pass of `rule` starts from, when one ran ahead of status.
    pub fn get(&self, rule: &SecurityGroupRule) -> Option<Record> {
        self.lock()
            .get(&ObjectRef::from_obj(rule))
            .filter(|held| held.uid == rule.uid())
            .map(|held| held.record.clone())
    }

    fn hold(&self, rule: &SecurityGroupRule, record: &Record) {
        let held = Held {
            uid: rule.uid(),
            record: record.clone(),
        };
        self.lock().insert(key(rule), held);
    }

    fn release(&self, rule: &SecurityGroupRule) {
        self.lock().remove(&ObjectRef::from_obj(rule));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectRef<SecurityGroupRule>, Held>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A rule's entry in the maps above: name and namespace only. They hold an
/// entry for every rule of a mass delete for minutes, and the uid and
/// version an `ObjectRef` also carries take no part in its identity.
fn key(rule: &SecurityGroupRule) -> ObjectRef<SecurityGroupRule> {
    let mut key = ObjectRef::from_obj(rule);
    key.extra = Default::default();
    key
}

/// Whether `rule` carries the operator's finalizer.
pub fn guarded(rule: &SecurityGroupRule) -> bool {
    rule.finalizers().iter().any(|f| f == FINALIZER)
}

/// Every write of one pass to its rule: status, and the finalizer. Each is
/// conditional on the resourceVersion the pass read, or last wrote, so a
/// pass that decided on a stale cache meets a conflict (`Error::Stale`)
/// instead of overwriting a newer record or releasing a rule it has not
/// revoked.
pub struct RuleWriter<'a> {
    api: &'a Api<SecurityGroupRule>,
    rule: &'a SecurityGroupRule,
    stale: &'a StaleVersions,
    unwritten: &'a Unwritten,
    resource_version: Option<String>,
    /// The status as last read or written.
    status: Option<SecurityGroupRuleStatus>,
    finalizers: Vec<String>,
}

impl<'a> RuleWriter<'a> {
    pub fn new(
        api: &'a Api<SecurityGroupRule>,
        rule: &'a SecurityGroupRule,
        stale: &'a StaleVersions,
        unwritten: &'a Unwritten,
    ) -> Self {
        Self {
            api,
            rule,
            stale,
            unwritten,
            resource_version: rule.resource_version(),
            status: rule.status.clone(),
            finalizers: rule.finalizers().to_vec(),
        }
    }

    /// The status as last read or written.
    pub fn current(&self) -> Option<&SecurityGroupRuleStatus> {
        self.status.as_ref()
    }

    /// Keeps `record` in memory before a provider call whose outcome it
    /// must survive a failed status write with (see [`Unwritten`]).
    pub fn hold(&self, record: &Record) {
        self.unwritten.hold(self.rule, record);
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
    /// object already has. Returns whether it wrote. Either way status then
    /// holds `record`, and nothing of it is kept in memory any more.
    pub async fn write(&mut self, record: &Record, standing: &Standing) -> Result<bool, Error> {
        let next = self.next(record, standing);
        let changed = self.status.as_ref() != Some(&next);
        if changed {
            self.apply(&next).await?;
        }
        self.unwritten.release(self.rule);
        Ok(changed)
    }

    /// Whether a finalizer of another controller keeps the object once
    /// this operator's is removed, so that status is still read.
    pub fn kept_by_others(&self) -> bool {
        self.finalizers.iter().any(|f| f != FINALIZER)
    }

    /// Adds the finalizer, before the rule's first provider call. Its
    /// absence proves that no earlier pass called the provider for it.
    pub async fn add_finalizer(&mut self) -> Result<(), Error> {
        let mut finalizers = self.finalizers.clone();
        finalizers.push(FINALIZER.to_owned());
        self.patch_finalizers(finalizers).await
    }

    /// Removes the finalizer once nothing of the rule is left at the
    /// provider. Conditional like every write: a deletion that decided on
    /// a stale record runs again instead of releasing a rule it missed. An
    /// object already gone counts as released.
    pub async fn remove_finalizer(&mut self) -> Result<(), Error> {
        let finalizers = self
            .finalizers
            .iter()
            .filter(|f| *f != FINALIZER)
            .cloned()
            .collect();
        match self.patch_finalizers(finalizers).await {
            Err(Error::Kube(kube::Error::Api(e))) if e.code == 404 => {}
            other => other?,
        }
        self.unwritten.release(self.rule);
        Ok(())
    }

    /// A merge patch of the finalizer list, conditional on the version the
    /// list was read at (the API server answers a stale one with 409).
    async fn patch_finalizers(&mut self, finalizers: Vec<String>) -> Result<(), Error> {
        let patch = serde_json::json!({
            "metadata": {"resourceVersion": self.resource_version, "finalizers": finalizers},
        });
        let written = self
            .api
            .patch(
                &self.rule.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
            .map_err(|e| self.failed(e))?;
        self.finalizers = written.finalizers().to_vec();
        self.written(written);
        Ok(())
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
            .map_err(|e| self.failed(e))?;
        self.status = written.status.clone();
        self.written(written);
        Ok(())
    }

    /// Remembers the version a write produced, and the one it replaced.
    fn written(&mut self, written: SecurityGroupRule) {
        let replaced = std::mem::replace(&mut self.resource_version, written.resource_version());
        let replaced = replaced.filter(|old| self.resource_version.as_ref() != Some(old));
        self.stale
            .written(self.rule, replaced, self.resource_version.clone());
    }

    /// A conflict says the object moved past the version this pass built
    /// on: a pass from that version would only meet the same conflict.
    fn failed(&self, e: kube::Error) -> Error {
        match e {
            kube::Error::Api(status) if status.code == 409 => {
                self.stale
                    .moved_past(self.rule, self.resource_version.clone());
                Error::Stale
            }
            other => Error::Kube(other),
        }
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
                let path = request.uri().path().to_owned();
                assert!(
                    path.ends_with("/namespaces/ns/securitygrouprules/web/status")
                        || path.ends_with("/namespaces/ns/securitygrouprules/web"),
                    "{path}"
                );
                let body: Value = serde_json::from_slice(
                    &request.into_body().collect_bytes().await.expect("body"),
                )
                .expect("JSON body");
                let answer = if code == 200 {
                    let mut object = serde_json::to_value(rule()).expect("object");
                    object["metadata"]["resourceVersion"] = json!(version);
                    if path.ends_with("/status") {
                        object["status"] = body["status"].clone();
                    } else {
                        object["metadata"]["finalizers"] = body["metadata"]["finalizers"].clone();
                    }
                    object
                } else {
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                           "reason": "Conflict", "code": code, "message": "answered by the test"})
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
        let stale = StaleVersions::default();
        let unwritten = Unwritten::default();
        let mut writer = RuleWriter::new(&api, &rule, &stale, &unwritten);
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
        assert!(stale.is_stale(&at("5")));
        assert!(stale.is_stale(&at("6")));
        assert!(!stale.is_stale(&at("7")));
        assert!(
            !stale.is_stale(&at("5")),
            "forgotten once the cache caught up"
        );
    }

    /// After the finalizer is removed, the last written version is as good
    /// as gone: a pass from it must not write to the deleted object.
    #[tokio::test]
    async fn the_last_version_is_stale_once_the_rule_is_gone() {
        let (api, server) = api_server(vec![(200, "6")]);
        let rule = rule();
        let stale = StaleVersions::default();
        let unwritten = Unwritten::default();
        let mut writer = RuleWriter::new(&api, &rule, &stale, &unwritten);
        let record = Record::from_status(rule.status.as_ref());
        writer
            .write(&record, &progressing())
            .await
            .expect("written");
        drop(api);
        server.await.expect("server");
        stale.gone(&rule);
        assert!(stale.is_stale(&at_version(&rule, "6")));
    }

    /// A conflict means the pass read a stale object: it must stop, not retry blindly.
    #[tokio::test]
    async fn a_conflict_is_reported_as_a_stale_read() {
        let (api, server) = api_server(vec![(409, "")]);
        let rule = rule();
        let stale = StaleVersions::default();
        let unwritten = Unwritten::default();
        let mut writer = RuleWriter::new(&api, &rule, &stale, &unwritten);
        let record = Record::from_status(rule.status.as_ref());
        let result = writer.write(&record, &progressing()).await;
        assert!(matches!(result, Err(Error::Stale)), "{result:?}");
        drop(api);
        server.await.expect("server");
    }

    /// A conflict also says the object moved past the version read: a pass
    /// from that version waits for the cache instead of meeting it again.
    #[tokio::test]
    async fn a_conflict_marks_the_version_read_as_stale() {
        let (api, server) = api_server(vec![(409, "")]);
        let rule = rule();
        let stale = StaleVersions::default();
        let unwritten = Unwritten::default();
        let mut writer = RuleWriter::new(&api, &rule, &stale, &unwritten);
        let result = writer.remove_finalizer().await;
        assert!(matches!(result, Err(Error::Stale)), "{result:?}");
        drop(api);
        server.await.expect("server");
        assert!(stale.is_stale(&rule));
    }

    /// The finalizer goes on before the first call and comes off after the
    /// last, each a merge patch conditional on the version the pass read
    /// or last wrote; other controllers' finalizers stay.
    #[tokio::test]
    async fn finalizer_patches_are_conditional_and_keep_other_finalizers() {
        let (api, server) = api_server(vec![(200, "6"), (200, "7"), (200, "8")]);
        let mut rule = rule();
        rule.metadata.finalizers = Some(vec!["example.com/hold".into()]);
        let stale = StaleVersions::default();
        let unwritten = Unwritten::default();
        let mut writer = RuleWriter::new(&api, &rule, &stale, &unwritten);
        assert!(!guarded(&rule));
        writer.add_finalizer().await.expect("added");
        assert!(writer.kept_by_others());
        let record = Record::from_status(rule.status.as_ref());
        writer
            .write(&record, &progressing())
            .await
            .expect("written");
        writer.remove_finalizer().await.expect("removed");
        drop(api);
        let bodies = server.await.expect("server");
        let versions: Vec<&Value> = bodies
            .iter()
            .map(|b| &b["metadata"]["resourceVersion"])
            .collect();
        assert_eq!(versions, [&json!("5"), &json!("6"), &json!("7")]);
        assert_eq!(
            bodies[0]["metadata"]["finalizers"],
            json!(["example.com/hold", FINALIZER])
        );
        assert_eq!(
            bodies[2]["metadata"]["finalizers"],
            json!(["example.com/hold"])
        );
    }

    /// A deletion that finds its object already gone is done.
    #[tokio::test]
    async fn removing_the_finalizer_of_a_vanished_object_succeeds() {
        let (api, server) = api_server(vec![(404, "")]);
        let rule = rule();
        let stale = StaleVersions::default();
        let unwritten = Unwritten::default();
        let mut writer = RuleWriter::new(&api, &rule, &stale, &unwritten);
        writer.remove_finalizer().await.expect("released");
        drop(api);
        server.await.expect("server");
    }

    /// A record held before a call stays until a status write holds it:
    /// a failed write leaves it for the next pass; a successful one, or a
    /// status that already says the same, releases it.
    #[tokio::test]
    async fn a_held_record_is_released_only_by_a_status_write() {
        let (api, server) = api_server(vec![(409, ""), (200, "6")]);
        let rule = rule();
        let stale = StaleVersions::default();
        let unwritten = Unwritten::default();
        let mut writer = RuleWriter::new(&api, &rule, &stale, &unwritten);
        let mut record = Record::from_status(rule.status.as_ref());
        record.attempt_epoch = 9;
        writer.hold(&record);
        assert!(writer.write(&record, &progressing()).await.is_err());
        assert_eq!(unwritten.get(&rule), Some(record.clone()));
        let mut successor = rule.clone();
        successor.metadata.uid = Some("another object of that name".into());
        assert_eq!(unwritten.get(&successor), None);
        writer
            .write(&record, &progressing())
            .await
            .expect("written");
        assert_eq!(unwritten.get(&rule), None);
        writer.hold(&record);
        assert!(
            !writer
                .write(&record, &progressing())
                .await
                .expect("unchanged")
        );
        assert_eq!(unwritten.get(&rule), None);
        drop(api);
        server.await.expect("server");
    }
}
