//! Executes planned steps against the provider until the declared state
//! holds or a call fails. Each call's outcome is folded into the `Record`
//! that becomes the status.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use jiff::Timestamp;
use kube::runtime::{events::EventType, reflector::ObjectRef};
use tracing::warn;

use super::{
    Context, Error, convert, origin,
    ownership::{self, Found, Mark, RevokeCheck},
    persist::RuleWriter,
    plan::{self, Applied, Desired, PlanInput, RevokeOf, Step},
    resolve::Resolved,
    snapshot::{LAG_RETRIES, READ_RETRIES, SHARED_FOR},
    status::{Record, Standing},
};
use crate::{
    api::{
        conditions::reasons,
        rule::{
            LastOperation, OperationResult, ProviderAction, RuleSpec, SecurityGroupRule,
            SecurityGroupRuleStatus, SupersededRule,
        },
    },
    provider::{
        Authorize, DescribedRule, ErrorKind, GroupRef, MODIFY_UNSUPPORTED, Modify, ProviderError,
        Receipt, Revoke, RevokeTarget, Rule,
    },
};

/// More steps than any path needs (revoke superseded, revoke a rule left
/// authorizing, revoke strays, supersede, revoke, authorize, revoke the
/// replaced rule), so a bug can never turn into a loop of provider calls.
/// A pass that runs out (many strays) halts and the next one goes on.
const MAX_STEPS: usize = 12;

/// A provider outcome worth an Event: a failure, or a change a human must
/// see. Success is reported by status conditions, the audit log line and
/// metrics, so a mass operation writes no Event per rule.
#[derive(Clone, Debug)]
pub struct Notice {
    pub type_: EventType,
    pub reason: &'static str,
    pub action: ProviderAction,
    pub note: String,
}

/// What a pass that stopped short of the declared state records: the
/// standing for status (a provider failure, or a call that cannot be made
/// yet) and when to try again. Proves nothing was left unrecorded: status
/// is written with it.
#[derive(Clone, Debug)]
pub struct Halt {
    pub standing: Standing,
    /// When to try again; `None` waits for a change to the object or its
    /// ProviderConfig or Secret.
    pub requeue: Option<Duration>,
}

/// Why a pass ended before the declared state held.
#[derive(Debug)]
pub enum Unfinished {
    /// A call failed or cannot be made yet; status is to record the halt.
    Halt(Halt),
    /// A write ahead of a call failed (say, the object changed since the
    /// pass read it): nothing more may be called in this pass, and the
    /// record held in memory stands for what was called before.
    WriteFailed(Error),
}

impl From<Halt> for Unfinished {
    fn from(halt: Halt) -> Self {
        Self::Halt(halt)
    }
}

/// Everything one pass needs that does not change between steps.
pub struct Pass<'a> {
    pub ctx: &'a Context,
    pub object: ObjectRef<SecurityGroupRule>,
    pub resolved: &'a Resolved,
    pub uid: &'a str,
    /// What every rule this object authorizes carries (from `uid`).
    pub mark: Mark,
    pub generation: i64,
    pub group: GroupRef,
    pub spec_rule: &'a RuleSpec,
    pub desired: Desired,
    /// The object opted in to adoption and its ProviderConfig allows it.
    pub adopt: bool,
    /// The object is being deleted: it never asks for its rules again.
    pub deleting: bool,
    /// Set when a pass of an earlier process may have called the provider
    /// and died before writing status: the pass first looks, in a describe
    /// sent at or after this instant, for rules of the object that the
    /// record does not know (`plan::strays`).
    pub recover: Option<Instant>,
}

impl Pass<'_> {
    /// Runs steps until settled or stopped; appends an Event notice per
    /// failure. Before each provider call the record is held in memory
    /// (`RuleWriter::hold`), so a failed status write forgets nothing in
    /// this process; status is written before a call only where the mark
    /// cannot stand in for it (`supersede`).
    pub async fn run(
        &self,
        record: &mut Record,
        notices: &mut Vec<Notice>,
        writer: &mut RuleWriter<'_>,
    ) -> Result<Standing, Unfinished> {
        let desired = match &self.desired {
            Desired::Present(rule) => Desired::Present(self.mark.on(rule)),
            Desired::Absent => Desired::Absent,
        };
        let mut strays = match self.recover {
            Some(since) => self.find_strays(since, record, notices, &desired).await?,
            None => Vec::new(),
        };
        for _ in 0..MAX_STEPS {
            let input = self.input(record, &desired, &strays)?;
            match plan::plan(&input) {
                Step::PresentHolds => return Ok(settled(reasons::AUTHORIZED)),
                Step::AbsentHolds => return Ok(settled(reasons::REVOKED)),
                Step::Supersede => self.supersede(record, writer).await?,
                Step::Authorize(call) => {
                    self.authorize(&input, &call, record, notices, writer)
                        .await?;
                }
                Step::Modify(call) => {
                    self.modify(&input, &call, record, notices, writer).await?;
                }
                Step::Revoke { call, of } => {
                    self.revoke(&input, &call, record, notices, writer).await?;
                    match of {
                        RevokeOf::Superseded => record.superseded = None,
                        RevokeOf::Authorizing => record.authorizing = None,
                        RevokeOf::Stray => {
                            let stray = strays.remove(0);
                            if let Desired::Present(want) = &desired
                                && self.resolved.kind.same_rule(want, &stray.rule)
                            {
                                // The authorize that left it may have been
                                // answered without effect, under the token
                                // the desired rule would be sent with now:
                                // a replay would create nothing.
                                record.attempt_epoch += 1;
                            }
                        }
                    }
                }
            }
        }
        Err(Unfinished::Halt(Halt {
            standing: Standing::Progressing {
                reason: reasons::PROGRESSING,
                message: "more steps remain".into(),
            },
            requeue: Some(Duration::ZERO),
        }))
    }

    /// What `plan` looks at, from the record as it stands now.
    fn input(
        &self,
        record: &Record,
        desired: &Desired,
        strays: &[Applied],
    ) -> Result<PlanInput<'_>, Halt> {
        let applied = marked(record.applied.as_ref().map(|(r, id)| (r, id.clone())), self)?;
        let superseded = marked(
            record
                .superseded
                .as_ref()
                .map(|s| (&s.rule, s.rule_id.clone())),
            self,
        )?;
        let authorizing = marked(record.authorizing.as_ref().map(|r| (r, None)), self)?;
        Ok(PlanInput {
            uid: self.uid,
            generation: self.generation,
            attempt_epoch: record.attempt_epoch,
            kind: self.resolved.kind,
            group: self.group.clone(),
            desired: desired.clone(),
            applied,
            superseded,
            authorizing: authorizing.map(|a| a.rule),
            strays: strays.to_vec(),
        })
    }

    /// The rules a pass of a dead process may have left (see `recover`).
    /// A group that is gone took its rules with it, unless the
    /// ProviderConfig now points elsewhere than the recorded origin. Like
    /// every call, the describe waits out a credentials pause: after a
    /// restart every unsettled rule of the config takes this path.
    async fn find_strays(
        &self,
        since: Instant,
        record: &mut Record,
        notices: &mut Vec<Notice>,
        desired: &Desired,
    ) -> Result<Vec<Applied>, Unfinished> {
        self.check_credentials_pause()?;
        tokio::time::sleep_until(since.into()).await;
        let input = self.input(record, desired, &[])?;
        match self.describe(since).await {
            Ok(rules) => Ok(plan::strays(&input, &self.mark, &rules)),
            Err(e) if e.kind == ErrorKind::AlreadyGone => {
                match origin::changed(record.origin.as_ref(), &self.resolved.origin) {
                    None => Ok(Vec::new()),
                    Some(what) => Err(self.moved(notices, what).into()),
                }
            }
            Err(e) => Err(self.describe_failed(record, notices, e).into()),
        }
    }

    /// Moves the applied rule to `superseded`, ahead of its revoke. Status
    /// records that before the revoke unless the object is being deleted:
    /// a rule made `Absent` may be declared `Present` again, and a revoke
    /// lost with the process must not leave status claiming the rule is
    /// still authorized (the mark shows a rule that is there, not one that
    /// was). A deleted object never asks for its rule again, and a revoke
    /// repeated after a crash finds the rule gone.
    async fn supersede(
        &self,
        record: &mut Record,
        writer: &mut RuleWriter<'_>,
    ) -> Result<(), Unfinished> {
        if let Some((rule, rule_id)) = record.applied.take() {
            record.superseded = Some(SupersededRule { rule_id, rule });
        }
        if self.deleting {
            return Ok(());
        }
        write_ahead(writer, record, "revoking the rule at the provider").await
    }

    /// Authorizes the declared rule. Usually nothing is written before the
    /// call: the finalizer, added before the object's first call, says a
    /// call may have been made, and a rule created by a call whose answer
    /// was lost carries the object's mark, so a later pass finds it (by the
    /// same token while the spec still asks for it, else as a stray). Only
    /// when status still names a rule this pass revoked or replaced is the
    /// record written first (see `outruns`).
    async fn authorize(
        &self,
        input: &PlanInput<'_>,
        call: &Authorize,
        record: &mut Record,
        notices: &mut Vec<Notice>,
        writer: &mut RuleWriter<'_>,
    ) -> Result<(), Unfinished> {
        self.check_credentials_pause()?;
        let holds_rules =
            record.applied.is_some() || record.superseded.is_some() || record.authorizing.is_some();
        record.origin = Some(origin::before_authorize(
            record.origin.as_ref(),
            holds_rules,
            &self.resolved.origin,
        ));
        record.authorizing = Some(self.spec_rule.clone());
        record.group = Some(call.group.clone());
        if outruns(writer.current(), record) {
            write_ahead(writer, record, "authorizing the rule at the provider").await?;
        }
        writer.hold(record);
        let result = self.resolved.provider.authorize(call).await;
        let sent = Instant::now();
        if result.as_ref().is_err_and(|e| refused(e.kind)) {
            // A refused request had no effect.
            record.authorizing = None;
        }
        let outcome = self.fold(
            record,
            notices,
            ProviderAction::Authorize,
            &call.client_token,
            result,
        )?;
        let rule_id = match self.find_after_authorize(&call.rule, sent).await {
            Found::Own(d) => Some(d.rule_id).filter(|id| !id.is_empty()),
            Found::Foreign(d) if self.may_adopt(&d) => {
                let call = plan::modify_call(input, &call.rule, &d.rule_id);
                let result = self.resolved.provider.modify(&call).await;
                self.modified(record, notices, &call.client_token, result)?;
                Some(d.rule_id)
            }
            Found::Foreign(d) => {
                // The provider keeps one rule per identity: this
                // authorize created nothing, so nothing is recorded.
                record.authorizing = None;
                return Err(self.foreign(notices, &d).into());
            }
            Found::Nothing if outcome == OperationResult::AlreadyExists => {
                // "Already exists" is believed only when the rule
                // shows (Baidu answers 409 to other conflicts too).
                return Err(self.unconfirmed(notices).into());
            }
            // Not visible yet: a revoke finds it by its mark.
            Found::Nothing => None,
        };
        if let Some((old, old_id)) = record.applied.take()
            && old != *self.spec_rule
        {
            record.superseded = Some(SupersededRule {
                rule_id: old_id,
                rule: old,
            });
        }
        record.applied = Some((self.spec_rule.clone(), rule_id));
        record.authorizing = None;
        record.group = Some(call.group.clone());
        Ok(())
    }

    /// Changes the applied rule in place. Nothing is created, so a crash
    /// only repeats the change.
    async fn modify(
        &self,
        input: &PlanInput<'_>,
        call: &Modify,
        record: &mut Record,
        notices: &mut Vec<Notice>,
        writer: &mut RuleWriter<'_>,
    ) -> Result<(), Unfinished> {
        self.check_credentials_pause()?;
        let Some(applied) = &input.applied else {
            unreachable!("a modify is planned from the applied rule")
        };
        match self
            .check_before_revoke(record, notices, &applied.rule, applied.rule_id.as_deref())
            .await?
        {
            RevokeCheck::Own(d) => {
                let call = plan::modify_call(input, &call.rule, &d.rule_id);
                writer.hold(record);
                let result = self.resolved.provider.modify(&call).await;
                if result.as_ref().is_err_and(|e| e.code == MODIFY_UNSUPPORTED) {
                    // The endpoint lacks the call: revoke first, as where
                    // it is not offered.
                    return self.supersede(record, writer).await;
                }
                self.modified(record, notices, &call.client_token, result)?;
                record.applied = Some((self.spec_rule.clone(), Some(d.rule_id)));
            }
            // Gone at the provider: the next step authorizes anew.
            RevokeCheck::Gone => record.applied = None,
            RevokeCheck::Mismatch { rule_id } => {
                return Err(self.mismatch(notices, &rule_id).into());
            }
        }
        Ok(())
    }

    /// Revokes a recorded rule (or a stray), once a describe shows it is
    /// this object's. A crash after the call only repeats it.
    async fn revoke(
        &self,
        input: &PlanInput<'_>,
        call: &Revoke,
        record: &mut Record,
        notices: &mut Vec<Notice>,
        writer: &RuleWriter<'_>,
    ) -> Result<(), Unfinished> {
        self.check_credentials_pause()?;
        let recorded_id = match &call.target {
            RevokeTarget::Id { rule_id, .. } => Some(rule_id.as_str()),
            RevokeTarget::Attributes(_) => None,
        };
        match self
            .check_before_revoke(record, notices, call.target.rule(), recorded_id)
            .await?
        {
            RevokeCheck::Own(d) => {
                let call = plan::revoke_call(
                    input,
                    &Applied {
                        rule: call.target.rule().clone(),
                        rule_id: Some(d.rule_id.clone()).filter(|id| !id.is_empty()),
                    },
                );
                writer.hold(record);
                let result = self.resolved.provider.revoke(&call).await;
                self.fold(
                    record,
                    notices,
                    ProviderAction::Revoke,
                    &call.client_token,
                    result,
                )?;
                self.ctx
                    .snapshots
                    .revoked(&self.resolved.credentials_key, &self.group, &d.rule_id)
                    .await;
            }
            // Nothing of this object's is there: nothing to call.
            RevokeCheck::Gone => {}
            RevokeCheck::Mismatch { rule_id } => {
                return Err(self.mismatch(notices, &rule_id).into());
            }
        }
        Ok(())
    }

    /// Every rule of a ProviderConfig whose credentials were rejected waits
    /// out the same pause instead of trying them again one by one; when it
    /// ends, one rule probes them.
    fn check_credentials_pause(&self) -> Result<(), Halt> {
        let key = &self.resolved.credentials_key;
        match self.ctx.config_backoff.admit(key) {
            Err(wait) => Err(Halt {
                standing: stalled_standing(
                    reasons::CREDENTIALS_REJECTED,
                    // The provider's code says what to fix; no countdown: a
                    // message that changes on every pass would rewrite status,
                    // and each write wakes the rule again.
                    credentials_paused(
                        &self.resolved.config_name,
                        self.ctx.config_backoff.why(key).as_deref(),
                    ),
                ),
                requeue: Some(wait),
            }),
            Ok(()) => Ok(()),
        }
    }

    /// Where the rule just authorized stands in a describe sent after the
    /// authorize, asked again a few times while it is not visible
    /// (read-after-write lag). A failed describe only costs the rule id.
    async fn find_after_authorize(&self, rule: &Rule, sent: Instant) -> Found {
        let mut since = sent;
        for pause in std::iter::once(Duration::ZERO).chain(LAG_RETRIES) {
            tokio::time::sleep(pause).await;
            match self.describe(since).await {
                Ok(rules) => match ownership::find(self.resolved.kind, &self.mark, rule, &rules) {
                    Found::Nothing => since = Instant::now(),
                    found => return found,
                },
                Err(e) => {
                    warn!(group = %self.group.security_group_id, error = %e, "describe after authorize failed; the rule id stays unknown");
                    return Found::Nothing;
                }
            }
        }
        Found::Nothing
    }

    /// Whether a recorded rule may be revoked: the group's describe must show
    /// it carrying this object's mark. A describe shared with other rules of
    /// the group serves when it shows the rule; that it is gone is concluded
    /// only from fresh describes (read-after-write lag).
    async fn check_before_revoke(
        &self,
        record: &mut Record,
        notices: &mut Vec<Notice>,
        rule: &Rule,
        recorded_id: Option<&str>,
    ) -> Result<RevokeCheck, Halt> {
        let kind = self.resolved.kind;
        let shared = Instant::now()
            .checked_sub(SHARED_FOR)
            .unwrap_or_else(Instant::now);
        let mut check = RevokeCheck::Gone;
        for (attempt, pause) in std::iter::once(Duration::ZERO)
            .chain(LAG_RETRIES)
            .enumerate()
        {
            tokio::time::sleep(pause).await;
            let since = if attempt == 0 { shared } else { Instant::now() };
            let rules = match self.describe(since).await {
                Ok(rules) => rules,
                // The group is gone, and its rules with it, unless the
                // ProviderConfig now points at another account or endpoint.
                Err(e) if e.kind == ErrorKind::AlreadyGone => {
                    return match origin::changed(record.origin.as_ref(), &self.resolved.origin) {
                        None => Ok(RevokeCheck::Gone),
                        Some(what) => Err(self.moved(notices, what)),
                    };
                }
                Err(e) => return Err(self.describe_failed(record, notices, e)),
            };
            check = ownership::before_revoke(kind, &self.mark, rule, recorded_id, &rules);
            // A shared describe may predate the record: it settles the
            // question only when it shows the recorded rule id (the usual
            // case), or the object's own rule when no id is recorded.
            let conclusive = match recorded_id {
                _ if attempt > 0 => check != RevokeCheck::Gone,
                Some(id) => rules.iter().any(|d| d.rule_id == id),
                None => matches!(check, RevokeCheck::Own(_)),
            };
            if conclusive {
                break;
            }
        }
        Ok(check)
    }

    /// Records a failed describe as the last operation, and halts.
    fn describe_failed(
        &self,
        record: &mut Record,
        notices: &mut Vec<Notice>,
        e: ProviderError,
    ) -> Halt {
        record.last_operation = Some(operation(
            ProviderAction::Describe,
            None,
            OperationResult::Failed,
            &e,
        ));
        self.halt_on(record, notices, ProviderAction::Describe, e)
    }

    /// The group as a describe sent at or after `since` shows it. A describe
    /// only reads, so a transient failure is asked again a few times here
    /// before it halts the pass: a revoke that needs it must not wait out the
    /// object's backoff for every failed read.
    async fn describe(&self, since: Instant) -> Result<Arc<Vec<DescribedRule>>, ProviderError> {
        let mut failure = None;
        for pause in std::iter::once(Duration::ZERO).chain(READ_RETRIES) {
            tokio::time::sleep(pause).await;
            match self
                .ctx
                .snapshots
                .describe(
                    &self.resolved.credentials_key,
                    &self.group,
                    self.resolved.provider.as_ref(),
                    since,
                )
                .await
            {
                Ok(snapshot) => return Ok(snapshot.rules),
                Err(e) if matches!(e.kind, ErrorKind::Transient | ErrorKind::Throttled) => {
                    failure = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(failure.unwrap_or_else(|| {
            ProviderError::new(ErrorKind::Transient, "DescribeFailed", "describe failed")
        }))
    }

    /// Whether an identical rule that no object created may be taken over:
    /// the object opted in, the ProviderConfig allows it, and the provider
    /// can mark the rule in place. Another object's rule never is.
    fn may_adopt(&self, existing: &DescribedRule) -> bool {
        self.adopt
            && self.resolved.kind.modifies_in_place()
            && !existing.rule_id.is_empty()
            && ownership::split(&existing.rule.description).1.is_none()
    }

    /// An identical rule that is not this object's holds the place.
    fn foreign(&self, notices: &mut Vec<Notice>, existing: &DescribedRule) -> Halt {
        let message = format!(
            "an identical rule {} already exists in security group {} and was not created for this object; \
             the operator leaves it alone and revokes nothing on deletion. Remove it at the provider, delete this object, \
             or (Alibaba) take it over with spec.adopt where the ProviderConfig sets allowAdoption",
            existing.rule_id, self.group.security_group_id
        );
        self.stall(
            notices,
            reasons::RULE_ALREADY_EXISTS,
            ProviderAction::Authorize,
            message,
        )
    }

    /// A record that the cloud contradicts is not acted on.
    fn mismatch(&self, notices: &mut Vec<Notice>, rule_id: &str) -> Halt {
        let message = format!(
            "status names rule {rule_id} in security group {}, but that rule was not created for this object; \
             nothing is revoked. Status must be written by the operator only",
            self.group.security_group_id
        );
        self.stall(
            notices,
            reasons::RECORD_MISMATCH,
            ProviderAction::Revoke,
            message,
        )
    }

    /// A missing group that may only be missing from where the config now points.
    fn moved(&self, notices: &mut Vec<Notice>, what: &str) -> Halt {
        let message = origin::moved_message(
            &self.resolved.config_name,
            &self.group.security_group_id,
            what,
        );
        self.stall(
            notices,
            reasons::PROVIDER_CONFIG_CHANGED,
            ProviderAction::Revoke,
            message,
        )
    }

    fn stall(
        &self,
        notices: &mut Vec<Notice>,
        reason: &'static str,
        action: ProviderAction,
        message: String,
    ) -> Halt {
        notices.push(Notice {
            type_: EventType::Warning,
            reason,
            action,
            note: message.clone(),
        });
        Halt {
            standing: stalled_standing(reason, message),
            requeue: Some(super::status::REFUSAL_RETRY),
        }
    }

    /// The provider said the rule exists, but no describe shows it.
    fn unconfirmed(&self, notices: &mut Vec<Notice>) -> Halt {
        let what = "the provider answered that the rule already exists, but describing the group does not show it; retrying".to_owned();
        notices.push(Notice {
            type_: EventType::Warning,
            reason: reasons::RETRYING,
            action: ProviderAction::Authorize,
            note: what.clone(),
        });
        Halt {
            standing: progressing(reasons::RETRYING, what),
            requeue: Some(self.ctx.object_backoff.fail(&self.object)),
        }
    }

    /// Folds a modify's outcome into the record.
    fn modified(
        &self,
        record: &mut Record,
        notices: &mut Vec<Notice>,
        token: &str,
        result: Result<Receipt, ProviderError>,
    ) -> Result<(), Halt> {
        self.fold(record, notices, ProviderAction::Modify, token, result)
            .map(drop)
    }

    /// Records a call's outcome in `record`; turns failures into a halt.
    fn fold(
        &self,
        record: &mut Record,
        notices: &mut Vec<Notice>,
        action: ProviderAction,
        token: &str,
        result: Result<Receipt, ProviderError>,
    ) -> Result<OperationResult, Halt> {
        let (result, request_id, code, message) = match result {
            Ok(receipt) => (OperationResult::Succeeded, receipt.request_id, None, None),
            Err(e) if e.kind == ErrorKind::AlreadyExists && action == ProviderAction::Authorize => {
                (
                    OperationResult::AlreadyExists,
                    e.request_id,
                    Some(e.code),
                    Some(e.message),
                )
            }
            Err(e) if e.kind == ErrorKind::AlreadyGone && action == ProviderAction::Revoke => (
                OperationResult::AlreadyGone,
                e.request_id,
                Some(e.code),
                Some(e.message),
            ),
            Err(e) => {
                record.last_operation =
                    Some(operation(action, Some(token), OperationResult::Failed, &e));
                return Err(self.halt_on(record, notices, action, e));
            }
        };
        self.ctx
            .config_backoff
            .reset(&self.resolved.credentials_key);
        record.last_operation = Some(LastOperation {
            action,
            client_token: Some(token.to_owned()),
            request_id,
            result,
            code,
            message,
            time: Timestamp::now(),
        });
        Ok(result)
    }

    fn halt_on(
        &self,
        record: &mut Record,
        notices: &mut Vec<Notice>,
        action: ProviderAction,
        e: ProviderError,
    ) -> Halt {
        let what = format!("{} failed: {}: {}", action.as_str(), e.code, e.message);
        let halt = match e.kind {
            // The provider's wait when it names one, but never less than
            // this object's growing backoff: without a Retry-After a flat
            // retry kept spending the config's budget on a throttled account.
            ErrorKind::Throttled => Halt {
                standing: progressing(reasons::THROTTLED, what.clone()),
                requeue: Some(
                    self.ctx
                        .object_backoff
                        .fail(&self.object)
                        .max(e.retry_after.unwrap_or_default()),
                ),
            },
            ErrorKind::Transient | ErrorKind::AlreadyExists | ErrorKind::AlreadyGone => Halt {
                standing: progressing(reasons::RETRYING, what.clone()),
                requeue: Some(self.ctx.object_backoff.fail(&self.object)),
            },
            ErrorKind::Unauthorized => {
                // Rejected requests had no effect: the next attempt is a new one.
                record.attempt_epoch += 1;
                let wait = self
                    .ctx
                    .config_backoff
                    .fail_because(&self.resolved.credentials_key, e.code.clone());
                Halt {
                    standing: stalled_standing(reasons::CREDENTIALS_REJECTED, what.clone()),
                    requeue: Some(wait),
                }
            }
            ErrorKind::Invalid => {
                record.attempt_epoch += 1;
                Halt {
                    standing: stalled_standing(reasons::PROVIDER_ERROR, what.clone()),
                    requeue: Some(super::status::REFUSAL_RETRY),
                }
            }
        };
        notices.push(Notice {
            type_: EventType::Warning,
            reason: reason_of(&halt.standing),
            action,
            note: what,
        });
        halt
    }
}

/// Whether the provider refused a request outright, so it had no effect
/// (unlike a 5xx or a lost answer, after which it may have).
fn refused(kind: ErrorKind) -> bool {
    matches!(kind, ErrorKind::Invalid | ErrorKind::Unauthorized)
}

/// Writes status before a step whose outcome status must know about even
/// if the operator stops right after it.
async fn write_ahead(
    writer: &mut RuleWriter<'_>,
    record: &Record,
    message: &str,
) -> Result<(), Unfinished> {
    let standing = progressing(reasons::PROGRESSING, message.to_owned());
    writer
        .write(record, &standing)
        .await
        .map(drop)
        .map_err(Unfinished::WriteFailed)
}

/// Whether `status` names a rule (applied, superseded or authorizing) that
/// `record` no longer does: one revoked or replaced since status was
/// written. The mark cannot stand in for the record then: the rule about to
/// be authorized may share its identity with the one status names (a change
/// of priority where the provider cannot modify in place), and a pass after
/// a crash would take the new rule for the named one and revoke it, then
/// replay the authorize's token to no effect. Likewise a new attempt epoch
/// the pass chose: its token must not be forgotten with a crash.
fn outruns(status: Option<&SecurityGroupRuleStatus>, record: &Record) -> bool {
    let Some(status) = status else {
        return record.attempt_epoch != 0;
    };
    // Role by role: the rule the spec asks for again may equal one status
    // names as superseded, and is no less a new rule.
    let lost = |named: Option<&RuleSpec>, kept: Option<&RuleSpec>| named.is_some() && named != kept;
    status.attempt_epoch != record.attempt_epoch
        || lost(
            status.applied_rule.as_ref(),
            record.applied.as_ref().map(|(rule, _)| rule),
        )
        || lost(
            status.superseded.as_ref().map(|s| &s.rule),
            record.superseded.as_ref().map(|s| &s.rule),
        )
        || lost(status.authorizing.as_ref(), record.authorizing.as_ref())
}

/// Converts a recorded API rule into the provider model for planning,
/// marked as the operator authorized it.
fn marked(
    entry: Option<(&RuleSpec, Option<String>)>,
    pass: &Pass<'_>,
) -> Result<Option<Applied>, Halt> {
    entry
        .map(|(rule, rule_id)| {
            convert::rule(rule, pass.resolved.kind)
                .map(|rule: Rule| Applied {
                    rule: pass.mark.on(&rule),
                    rule_id,
                })
                .map_err(|e| stalled(reasons::UNSUPPORTED, e.0))
        })
        .transpose()
}

fn operation(
    action: ProviderAction,
    token: Option<&str>,
    result: OperationResult,
    e: &ProviderError,
) -> LastOperation {
    LastOperation {
        action,
        client_token: token.map(str::to_owned),
        request_id: e.request_id.clone(),
        result,
        code: Some(e.code.clone()),
        message: Some(e.message.clone()),
        time: Timestamp::now(),
    }
}

/// Why a rule waits without calling: the ProviderConfig's credentials were
/// rejected (with the provider's code, when known) and are paused.
fn credentials_paused(config: &str, code: Option<&str>) -> String {
    let code = code.map(|c| format!(" ({c})")).unwrap_or_default();
    format!(
        "the provider rejected the credentials of ProviderConfig {config}{code}; fix its Secret, it is retried after a pause"
    )
}

/// The declared state holds; `reason` says which.
fn settled(reason: &'static str) -> Standing {
    let message = if reason == reasons::REVOKED {
        "the rule is revoked at the provider"
    } else {
        "the rule is authorized at the provider"
    };
    Standing::Settled {
        reason,
        message: message.into(),
    }
}

fn progressing(reason: &'static str, message: String) -> Standing {
    Standing::Progressing { reason, message }
}

fn stalled_standing(reason: &'static str, message: String) -> Standing {
    Standing::Stalled { reason, message }
}

pub fn stalled(reason: &'static str, message: String) -> Halt {
    Halt {
        standing: stalled_standing(reason, message),
        requeue: None,
    }
}

pub fn reason_of(standing: &Standing) -> &'static str {
    match standing {
        Standing::Settled { reason, .. }
        | Standing::Progressing { reason, .. }
        | Standing::Stalled { reason, .. } => reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rules that wait out a credentials pause say the provider's code, so
    /// the Stalled condition tells what to fix; the text stays the same for
    /// the whole pause, so it does not rewrite status on every pass.
    #[test]
    fn a_credentials_pause_names_the_provider_code() {
        let message = credentials_paused("alibaba-prod", Some("SignatureDoesNotMatch"));
        assert!(message.contains("(SignatureDoesNotMatch)"), "{message}");
        assert!(message.contains("ProviderConfig alibaba-prod"), "{message}");
        assert_eq!(
            message,
            credentials_paused("alibaba-prod", Some("SignatureDoesNotMatch"))
        );
        assert!(!credentials_paused("alibaba-prod", None).contains('('));
    }
}
