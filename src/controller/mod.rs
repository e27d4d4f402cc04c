//! The SecurityGroupRule controller.
//!
//! `reconcile` is a thin driver; each step lives in its own module:
//! `resolve` (ProviderConfig, Secret, namespace: informer caches) →
//! `plan` (pure: the next provider call and its ClientToken) →
//! `steps` (provider calls) → `status` (pure: the status to write) →
//! `persist` (the writes).
//!
//! What a pass writes, each write conditional on the resourceVersion it
//! read or last wrote: the finalizer, once, before the object's first
//! provider call; status once at the end, only when it changed; and status
//! before a call only where the ownership mark cannot stand in for a record
//! (the rule made `Absent` moves to `superseded` before its revoke).
//! Deletion writes only the finalizer's removal, and status first only when
//! another finalizer keeps the object. So create → Ready costs the user's
//! create and two writes (one where the chart's admission policy puts the
//! finalizer in the create), delete → gone the user's delete and one.
//! Between a call and the status write the record is held in memory
//! (`persist::Unwritten`); after a restart the mark shows what a dead
//! process left (`steps::Pass::recover`).

pub mod audit;
pub mod backoff;
pub mod claims;
pub mod configs;
pub mod connector;
pub mod convert;
pub mod drift;
pub mod events;
pub mod gate;
pub mod members;
pub mod origin;
pub mod ownership;
pub mod persist;
pub mod plan;
pub mod policy;
pub mod resolve;
pub mod run;
pub mod share;
pub mod slots;
pub mod snapshot;
pub mod status;
pub mod steps;
#[cfg(test)]
mod tests;
pub mod uninstall;
pub mod usage;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use futures::channel::mpsc;
use jiff::Timestamp;
use kube::{
    Api, Client, Resource, ResourceExt,
    runtime::{
        controller::Action,
        events::{Event as KubeEvent, EventType, Recorder},
        reflector::{self, ObjectRef, Store},
    },
};
use tracing::{debug, info, warn};

pub use run::{Config, run};

use self::{
    backoff::Backoff,
    drift::DriftFindings,
    members::GroupMembers,
    ownership::Mark,
    persist::{RuleWriter, StaleVersions, Unwritten},
    plan::Desired,
    resolve::{ResolveError, Resolved, Resolver},
    snapshot::Snapshots,
    status::{Record, Standing},
    steps::{Halt, Notice, Pass, Unfinished},
    uninstall::Uninstall,
};
use crate::{
    api::{
        SecurityGroupRule,
        conditions::reasons,
        rule::{DeletionPolicy, Ensure},
    },
    metrics::Metrics,
    provider::{self, GroupRef},
};

/// Shared state of the controller.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub resolver: Resolver,
    pub object_backoff: Backoff<ObjectRef<SecurityGroupRule>>,
    pub config_backoff: Backoff<String>,
    pub drift: DriftFindings,
    pub stale: StaleVersions,
    pub unwritten: Unwritten,
    /// When this controller started: a pass of an earlier process may have
    /// called the provider before, and died before writing status.
    pub started: Instant,
    /// Describes of groups, shared between the rules checked at one time.
    pub snapshots: Snapshots,
    /// Starts a reconcile of a rule: one drift detection flagged, a waiting
    /// claimant, or one waiting for a slot.
    pub wake: mpsc::UnboundedSender<ObjectRef<SecurityGroupRule>>,
    pub metrics: Arc<Metrics>,
    /// Every rule the operator watches: per-namespace counts for policy.
    pub rules: Store<SecurityGroupRule>,
    /// The rules of each group, among `rules`: where claims are compared.
    pub members: Arc<GroupMembers>,
    /// Caps the reconciles one namespace runs at once.
    pub slots: slots::Slots<SecurityGroupRule>,
    /// Tells whether the rules' CRD is being deleted; without it, never.
    pub uninstall: Option<Uninstall>,
}

impl Context {
    pub fn new(
        client: Client,
        recorder: Recorder,
        resolver: Resolver,
        wake: mpsc::UnboundedSender<ObjectRef<SecurityGroupRule>>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            client,
            recorder,
            resolver,
            object_backoff: Backoff::new(Duration::from_secs(1), Duration::from_secs(300)),
            config_backoff: Backoff::new(Duration::from_secs(30), Duration::from_secs(600)),
            drift: DriftFindings::default(),
            stale: StaleVersions::default(),
            unwritten: Unwritten::default(),
            started: Instant::now(),
            snapshots: Snapshots::default(),
            slots: slots::Slots::new(0, wake.clone()),
            wake,
            metrics,
            rules: reflector::store().0,
            members: Arc::default(),
            uninstall: None,
        }
    }

    /// Deleting the CRD abandons rules instead of revoking them.
    #[must_use]
    pub fn abandoning_on_uninstall(mut self, uninstall: Uninstall) -> Self {
        self.uninstall = Some(uninstall);
        self
    }

    /// Whether rules are being deleted with their CRD.
    async fn uninstalling(&self) -> Result<bool, Error> {
        match &self.uninstall {
            Some(u) => u.in_progress().await.map_err(Error::Kube),
            None => Ok(false),
        }
    }

    /// Describes sent at or after this show every rule an earlier process
    /// created: it started before this one, and the providers' read-after-
    /// write lag (the pauses a describe is repeated after) has passed.
    fn recover_since(&self) -> Instant {
        self.started + snapshot::LAG_RETRIES.iter().sum::<Duration>()
    }

    /// Lets policy count the rules of a namespace, and claims compare a
    /// group's rules; `members` is kept from the watch that fills `rules`.
    #[must_use]
    pub fn with_rules(
        mut self,
        rules: Store<SecurityGroupRule>,
        members: Arc<GroupMembers>,
    ) -> Self {
        self.rules = rules;
        self.members = members;
        self
    }

    /// Shares the controller's `concurrency` reconciles between namespaces.
    #[must_use]
    pub fn with_concurrency(mut self, concurrency: usize) -> Self {
        self.slots = slots::Slots::new(concurrency, self.wake.clone());
        self
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[source] kube::Error),
    /// The object changed since the pass read it (say, the watch cache did
    /// not show the previous pass's status yet): run again on fresh data.
    #[error("the object changed since this pass read it")]
    Stale,
    #[error("the rule is not revoked yet")]
    CleanupPending { requeue: Option<Duration> },
}

/// Reconciles one SecurityGroupRule, counted and timed.
pub async fn reconcile(rule: Arc<SecurityGroupRule>, ctx: Arc<Context>) -> Result<Action, Error> {
    let object = ObjectRef::from_obj(rule.as_ref());
    let namespace = object.namespace.as_deref().unwrap_or_default();
    let deleting = rule.metadata.deletion_timestamp.is_some();
    let _slot = match ctx.slots.enter(&object) {
        Ok(slot) => slot,
        Err(wait) => {
            debug!(namespace, name = %object.name, "reconcile deferred: the namespace holds its share of slots");
            return Ok(Action::requeue(wait));
        }
    };
    debug!(namespace, name = %object.name, deleting, "reconcile started");
    let timer = ctx.metrics.reconcile_started(&object);
    let result = reconcile_rule(rule, &ctx).await;
    timer.finish(result.is_ok());
    if let Ok(action) = &result {
        ctx.metrics.next_action(object, action);
    }
    result
}

async fn reconcile_rule(rule: Arc<SecurityGroupRule>, ctx: &Context) -> Result<Action, Error> {
    // The caches fill while the controller runs (it drives their watches).
    if tokio::time::timeout(Duration::from_secs(5), ctx.resolver.caches_ready())
        .await
        .is_err()
    {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    if ctx.stale.is_stale(&rule) {
        // The watch has not delivered this operator's last write (or the
        // deletion it allowed) yet; it will, and wake the rule. The requeue
        // covers a lost event.
        return Ok(Action::requeue(Duration::from_secs(5)));
    }
    let ns = rule.namespace().unwrap_or_default();
    let api: Api<SecurityGroupRule> = Api::namespaced(ctx.client.clone(), &ns);
    if rule.metadata.deletion_timestamp.is_none() {
        return apply(&rule, ctx, &api).await;
    }
    if !persist::guarded(&rule) {
        // Released already, or never called for: another finalizer keeps it.
        return Ok(Action::await_change());
    }
    let result = cleanup(&rule, ctx, &api).await;
    if result.is_ok() {
        ctx.stale.gone(&rule);
    }
    result
}

/// What happens after a failed reconcile. Provider failures are handled
/// inside `reconcile` (they return `Ok(requeue)`); what reaches here is a
/// Kubernetes API failure or a cleanup that must keep the finalizer.
pub fn error_policy(rule: Arc<SecurityGroupRule>, error: &Error, ctx: Arc<Context>) -> Action {
    let object = ObjectRef::from_obj(rule.as_ref());
    let action = retry_after(&object, error, &ctx);
    ctx.metrics.next_action(object, &action);
    action
}

fn retry_after(object: &ObjectRef<SecurityGroupRule>, error: &Error, ctx: &Context) -> Action {
    match error {
        Error::CleanupPending { requeue } => {
            requeue.map_or_else(Action::await_change, Action::requeue)
        }
        // The newer object's watch event starts the next pass; this is
        // only a fallback, and no failure to back off from.
        Error::Stale => Action::requeue(Duration::from_secs(1)),
        Error::Kube(_) => {
            warn!(rule = %object.name, error = %error, "reconcile failed");
            Action::requeue(ctx.object_backoff.fail(object))
        }
    }
}

/// The group a rule acts on: what status recorded, else the spec.
fn group_of(rule: &SecurityGroupRule, record: &Record, resolved: &Resolved) -> GroupRef {
    record.group.clone().unwrap_or_else(|| GroupRef {
        region: rule
            .spec
            .region
            .clone()
            .unwrap_or_else(|| resolved.default_region.clone()),
        security_group_id: rule.spec.security_group_id.clone(),
    })
}

async fn apply(
    rule: &SecurityGroupRule,
    ctx: &Context,
    api: &Api<SecurityGroupRule>,
) -> Result<Action, Error> {
    let object = ObjectRef::from_obj(rule);
    let mut writer = RuleWriter::new(api, rule, &ctx.stale, &ctx.unwritten);
    // Before anything may be called. A rule without the finalizer was never
    // called for, so nothing of it can be at the provider. One given the
    // finalizer at admission (the chart's policy) may have been called for
    // by a process that died: with no settled status, its mark is looked for.
    let first = !persist::guarded(rule);
    if first {
        writer.add_finalizer().await?;
    }
    let (mut record, recover) = record_of(rule, ctx, first);
    if gate::paused(rule) {
        gate::hold_paused(&mut writer, &record, false).await?;
        return Ok(Action::await_change());
    }
    let resolved = match ctx.resolver.resolve_rule(rule) {
        Ok(r) => r,
        Err(e) => {
            return settle_unresolved(rule, ctx, &mut writer, &record, &e)
                .await
                .map(|()| requeue_for(&e).into());
        }
    };
    if gate::observed(rule) {
        return gate::observe(rule, ctx, &resolved, &mut writer, &record).await;
    }
    if let Some(action) = gate::enforce_policy(rule, ctx, &resolved, &mut writer, &record).await? {
        return Ok(action);
    }
    if record.applied.is_some() && ctx.drift.flagged(&object) {
        // The cloud lost the rule: a new attempt at this generation needs a
        // new token, persisted before the call, or the provider would replay
        // the old authorize as a no-op.
        record.attempt_epoch += 1;
        record.applied = None;
        let standing = Standing::Progressing {
            reason: reasons::DRIFT_DETECTED,
            message: "the rule was missing at the provider; authorizing it again".into(),
        };
        writer.write(&record, &standing).await?;
        // Only now: had the write failed, the next pass must still know.
        ctx.drift.take(&object);
        publish(
            ctx,
            rule,
            &[Notice {
                type_: EventType::Warning,
                reason: reasons::DRIFT_DETECTED,
                action: crate::api::rule::ProviderAction::Describe,
                note: "the rule was missing at the provider; authorizing it again".into(),
            }],
        )
        .await;
    }
    // An id drift detection saw for the applied rule; the pass's status
    // write records it (lost with a failed write until the next sweep).
    if let Some((_, rule_id)) = record.applied.as_mut()
        && rule_id.is_none()
        && let Some(learned) = ctx.drift.take_id(&object)
    {
        *rule_id = Some(learned);
    }
    if let Some(wait) = refused_at_this_generation(rule) {
        return Ok(Action::requeue(wait));
    }
    let desired = match rule.spec.ensure {
        Ensure::Absent => Desired::Absent,
        Ensure::Present => match convert::rule(&rule.spec.rule, resolved.kind) {
            Ok(r) => Desired::Present(r),
            Err(e) => {
                let halt = steps::stalled(reasons::UNSUPPORTED, e.0);
                writer.write(&record, &halt.standing).await?;
                return Ok(Action::await_change());
            }
        },
    };
    if let Desired::Present(want) = &desired
        && let Some(message) = duplicate_claim(rule, ctx, &resolved, &record, want)
    {
        let halt = steps::stalled(reasons::DUPLICATE_CLAIM, message);
        writer.write(&record, &halt.standing).await?;
        // The elder's deletion wakes this one; the requeue covers a change
        // of the elder's spec.
        return Ok(Action::requeue(CLAIM_RECHECK));
    }
    let pass = pass_for(
        rule,
        ctx,
        &resolved,
        &record,
        object.clone(),
        desired,
        recover,
    );
    match run_pass(&pass, rule, &mut record, &mut writer).await? {
        Ok(standing) => {
            // Reset only once recorded: a pass whose status write fails
            // repeats its calls, so it must keep backing off.
            writer.write(&record, &standing).await?;
            ctx.object_backoff.reset(&object);
            Ok(Action::await_change())
        }
        Err(requeue) => Ok(requeue.map_or_else(Action::await_change, Action::requeue)),
    }
}

/// Runs `pass` to its end, the part `apply` and `cleanup` share: publishes
/// its notices and writes the standing of a halt. Returns the standing
/// when the declared state holds, for the caller to record as it must, or
/// the halt's requeue.
async fn run_pass(
    pass: &Pass<'_>,
    rule: &SecurityGroupRule,
    record: &mut Record,
    writer: &mut RuleWriter<'_>,
) -> Result<Result<Standing, Option<Duration>>, Error> {
    let mut notices = Vec::new();
    let outcome = pass.run(record, &mut notices, writer).await;
    publish(pass.ctx, rule, &notices).await;
    match outcome {
        Ok(standing) => Ok(Ok(standing)),
        Err(Unfinished::Halt(halt)) => {
            let halt = if pass.deleting {
                with_deletion_advice(halt)
            } else {
                halt
            };
            writer.write(record, &halt.standing).await?;
            Ok(Err(halt.requeue))
        }
        Err(Unfinished::WriteFailed(e)) => Err(e),
    }
}

/// The record a pass starts from: what an earlier pass of this process
/// holds in memory ahead of status, else status. Also whether the pass must
/// look for rules a dead process left (`Pass::recover`): only when the
/// object had the finalizer, so may have been called for, nothing is held,
/// and status does not say the last pass at this generation settled (a
/// settled pass makes no call at the same generation).
fn record_of(rule: &SecurityGroupRule, ctx: &Context, first: bool) -> (Record, Option<Instant>) {
    if let Some(held) = ctx.unwritten.get(rule) {
        return (held, None);
    }
    let settled = status::settled_at(rule.status.as_ref(), rule.meta().generation);
    let recover = (!first && !settled).then(|| ctx.recover_since());
    (Record::from_status(rule.status.as_ref()), recover)
}

async fn cleanup(
    rule: &SecurityGroupRule,
    ctx: &Context,
    api: &Api<SecurityGroupRule>,
) -> Result<Action, Error> {
    let object = ObjectRef::from_obj(rule);
    let mut writer = RuleWriter::new(api, rule, &ctx.stale, &ctx.unwritten);
    let (mut record, recover) = record_of(rule, ctx, false);
    if gate::paused(rule) {
        gate::hold_paused(&mut writer, &record, true).await?;
        return Err(Error::CleanupPending { requeue: None });
    }
    if rule.spec.deletion_policy == Some(DeletionPolicy::Orphan) || gate::observed(rule) {
        return orphan(rule, ctx, &object, &mut writer).await;
    }
    if ctx.uninstalling().await? {
        writer.remove_finalizer().await?;
        return Ok(abandon(rule, ctx, &object));
    }
    let revoked = Standing::Settled {
        reason: reasons::REVOKED,
        message: "the rule is revoked at the provider".into(),
    };
    let resolved = match ctx.resolver.resolve_rule(rule) {
        Ok(r) => r,
        // Only a resolved config is ever called. With nothing recorded, a
        // rule is left only if an authorize's answer was lost with a dead
        // process, and without the config it cannot be looked for: the
        // deletion does not wait for a config that may never be fixed.
        Err(e) if nothing_recorded(&record) && !e.is_transient() => {
            info!(rule = %rule.name_any(), reason = %e, "deleting a rule that never reached its provider");
            release(ctx, &object, &mut writer, &record, &revoked).await?;
            return Ok(Action::await_change());
        }
        Err(e) => {
            settle_unresolved(rule, ctx, &mut writer, &record, &e).await?;
            return Err(Error::CleanupPending {
                requeue: requeue_for(&e).into_requeue(),
            });
        }
    };
    if resolved.default_deletion_policy == DeletionPolicy::Orphan
        && rule.spec.deletion_policy.is_none()
    {
        return orphan(rule, ctx, &object, &mut writer).await;
    }
    // With nothing recorded the pass makes no call, so nothing is held.
    if !nothing_recorded(&record)
        && let Some(wait) = refused_at_this_generation(rule)
    {
        return Err(Error::CleanupPending {
            requeue: Some(wait),
        });
    }
    let pass = pass_for(
        rule,
        ctx,
        &resolved,
        &record,
        object.clone(),
        Desired::Absent,
        recover,
    );
    match run_pass(&pass, rule, &mut record, &mut writer).await? {
        Ok(standing) => {
            release(ctx, &object, &mut writer, &record, &standing).await?;
            wake_waiting_claimants(ctx, rule);
            Ok(Action::await_change())
        }
        Err(requeue) => Err(Error::CleanupPending { requeue }),
    }
}

/// Removes the finalizer once nothing of the rule is left at the provider.
/// Status records the outcome first only when another finalizer keeps the
/// object, so that it is read; otherwise the object vanishes with the
/// removal. The removal is conditional on the version the pass read (or
/// last wrote): a pass that decided on a stale cache runs again, with the
/// same tokens, instead of releasing a rule it missed.
async fn release(
    ctx: &Context,
    object: &ObjectRef<SecurityGroupRule>,
    writer: &mut RuleWriter<'_>,
    record: &Record,
    standing: &Standing,
) -> Result<(), Error> {
    if writer.kept_by_others() {
        writer.write(record, standing).await?;
    }
    writer.remove_finalizer().await?;
    ctx.object_backoff.reset(object);
    Ok(())
}

/// How often a younger claimant looks again whether the elder still holds
/// the rule (no provider call).
const CLAIM_RECHECK: Duration = Duration::from_secs(60);

/// Why this object must wait for an older one that declares the same cloud
/// rule; `None` when it may act. An object that already holds the rule (say,
/// the elder changed its spec to match it) keeps it.
fn duplicate_claim(
    rule: &SecurityGroupRule,
    ctx: &Context,
    resolved: &Resolved,
    record: &Record,
    want: &provider::Rule,
) -> Option<String> {
    let holds = record.applied.as_ref().is_some_and(|(applied, _)| {
        convert::rule(applied, resolved.kind).is_ok_and(|a| resolved.kind.same_rule(&a, want))
    });
    if holds {
        return None;
    }
    let mark = Mark::of_uid(rule.meta().uid.as_deref().unwrap_or_default());
    let others = same_group(ctx, rule);
    claims::elder(
        resolved.kind,
        rule,
        &mark.on(want),
        &resolved.default_region,
        &others,
    )
    .map(|elder| claims::message(rule, elder))
}

/// Wakes the objects of the same group that wait on a duplicate claim: the
/// rule they declare may be theirs to authorize now.
fn wake_waiting_claimants(ctx: &Context, released: &SecurityGroupRule) {
    for other in same_group(ctx, released) {
        let waiting = other.status.as_ref().is_some_and(|s| {
            crate::api::conditions::find(&s.conditions, crate::api::conditions::types::STALLED)
                .is_some_and(|c| c.status == "True" && c.reason == reasons::DUPLICATE_CLAIM)
        });
        if waiting {
            let _ = ctx.wake.unbounded_send(ObjectRef::from_obj(other.as_ref()));
        }
    }
}

/// The cached rules that name the same group of the same ProviderConfig as
/// `rule` (itself included).
fn same_group(ctx: &Context, rule: &SecurityGroupRule) -> Vec<Arc<SecurityGroupRule>> {
    ctx.members
        .of_group(
            &rule.spec.provider_config_ref.name,
            &rule.spec.security_group_id,
        )
        .iter()
        .filter_map(|other| ctx.rules.get(other))
        .collect()
}

/// Whether status records no rule that may exist at the provider.
fn nothing_recorded(record: &Record) -> bool {
    record.applied.is_none() && record.superseded.is_none() && record.authorizing.is_none()
}

/// Releases the finalizer without a call. No Event: the object's own spec
/// asked for it, and a mass deletion would write one per rule.
async fn orphan(
    rule: &SecurityGroupRule,
    ctx: &Context,
    object: &ObjectRef<SecurityGroupRule>,
    writer: &mut RuleWriter<'_>,
) -> Result<Action, Error> {
    writer.remove_finalizer().await?;
    ctx.object_backoff.reset(object);
    let why = if gate::observed(rule) {
        "managementPolicy is Observe"
    } else {
        "deletionPolicy is Orphan"
    };
    info!(
        namespace = object.namespace.as_deref().unwrap_or_default(),
        rule = %rule.name_any(),
        "{why}: the cloud rule is left in place"
    );
    Ok(Action::await_change())
}

/// Counts and logs a rule whose finalizer was released because it is
/// deleted with its CRD, leaving the cloud rule in place (see `uninstall`).
/// No Event: thousands would be written at once, into objects about to
/// vanish.
fn abandon(
    rule: &SecurityGroupRule,
    ctx: &Context,
    object: &ObjectRef<SecurityGroupRule>,
) -> Action {
    ctx.object_backoff.reset(object);
    ctx.metrics.rule_abandoned();
    warn!(
        namespace = object.namespace.as_deref().unwrap_or_default(),
        rule = %rule.name_any(),
        rule_id = rule.status.as_ref().and_then(|s| s.rule_id.as_deref()).unwrap_or_default(),
        "the SecurityGroupRule CRD is being deleted: releasing the rule without revoking it at the provider"
    );
    Action::await_change()
}

/// See `status::refusal_hold`.
fn refused_at_this_generation(rule: &SecurityGroupRule) -> Option<Duration> {
    status::refusal_hold(
        rule.status.as_ref(),
        rule.meta().generation,
        Timestamp::now(),
    )
}

/// A stalled delete says how to get unstuck.
fn with_deletion_advice(mut halt: Halt) -> Halt {
    if let Standing::Stalled { message, .. } = &mut halt.standing {
        message.push_str(
            ". The finalizer stays until the rule is revoked: fix the cause (spec, credentials or the cloud), \
             or set spec.deletionPolicy to Orphan to delete this object and leave the cloud rule in place",
        );
    }
    halt
}

fn pass_for<'a>(
    rule: &'a SecurityGroupRule,
    ctx: &'a Context,
    resolved: &'a Resolved,
    record: &Record,
    object: ObjectRef<SecurityGroupRule>,
    desired: Desired,
    recover: Option<Instant>,
) -> Pass<'a> {
    let uid = rule.meta().uid.as_deref().unwrap_or_default();
    Pass {
        ctx,
        object,
        resolved,
        uid,
        mark: Mark::of_uid(uid),
        generation: rule.meta().generation.unwrap_or_default(),
        group: group_of(rule, record, resolved),
        spec_rule: &rule.spec.rule,
        adopt: resolved.allow_adoption && rule.spec.adopt == Some(true),
        desired,
        deleting: rule.metadata.deletion_timestamp.is_some(),
        recover,
    }
}

/// Status for a rule whose ProviderConfig, Secret or namespace is not usable.
async fn settle_unresolved(
    rule: &SecurityGroupRule,
    ctx: &Context,
    writer: &mut RuleWriter<'_>,
    record: &Record,
    e: &ResolveError,
) -> Result<(), Error> {
    let standing = if e.is_transient() {
        Standing::Progressing {
            reason: e.reason(),
            message: e.to_string(),
        }
    } else {
        Standing::Stalled {
            reason: e.reason(),
            message: e.to_string(),
        }
    };
    let changed = writer.write(record, &standing).await?;
    if changed && !e.is_transient() {
        publish(
            ctx,
            rule,
            &[Notice {
                type_: EventType::Warning,
                reason: e.reason(),
                action: crate::api::rule::ProviderAction::Authorize,
                note: e.to_string(),
            }],
        )
        .await;
    }
    Ok(())
}

/// Retry pacing for resolution failures: transient ones soon, the rest
/// when the ProviderConfig, Secret or Namespace changes (they are watched).
enum ResolveRequeue {
    Soon,
    OnChange,
}

impl ResolveRequeue {
    fn into_requeue(self) -> Option<Duration> {
        match self {
            Self::Soon => Some(Duration::from_secs(2)),
            Self::OnChange => None,
        }
    }
}

impl From<ResolveRequeue> for Action {
    fn from(r: ResolveRequeue) -> Self {
        r.into_requeue()
            .map_or_else(Action::await_change, Action::requeue)
    }
}

fn requeue_for(e: &ResolveError) -> ResolveRequeue {
    if e.is_transient() {
        ResolveRequeue::Soon
    } else {
        ResolveRequeue::OnChange
    }
}

async fn publish(ctx: &Context, rule: &SecurityGroupRule, notices: &[Notice]) {
    let reference = rule.object_ref(&());
    for n in notices {
        let event = KubeEvent {
            type_: n.type_,
            reason: n.reason.to_owned(),
            note: Some(truncate(&n.note, 1000)),
            action: format!("{:?}", n.action),
            secondary: None,
        };
        if let Err(e) = ctx.recorder.publish(&event, &reference).await {
            warn!(rule = %rule.name_any(), error = %e, "could not publish event");
        }
    }
}

/// Cuts `s` to at most `max` bytes on a character boundary (events cap notes at 1 kB).
fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}
