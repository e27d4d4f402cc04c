//! Executes planned steps against the provider until the declared state
//! holds or a call fails. Each call's outcome is folded into the `Record`
//! that becomes the status.

use std::time::Duration;

use jiff::Timestamp;
use kube::runtime::{events::EventType, reflector::ObjectRef};

use super::{
    Context, convert,
    plan::{self, Applied, Desired, PlanInput, RevokeOf, Step},
    resolve::Resolved,
    status::{Record, Standing},
};
use crate::{
    api::{
        conditions::reasons,
        rule::{
            Action, LastOperation, OperationResult, RuleSpec, SecurityGroupRule, SupersededRule,
        },
    },
    provider::{ErrorKind, GroupRef, ProviderError, Receipt, Rule},
};

/// More steps than any path needs (revoke superseded, revoke, authorize),
/// so a bug can never turn into a loop of provider calls.
const MAX_STEPS: usize = 4;

/// A provider outcome worth an Event.
#[derive(Clone, Debug)]
pub struct Notice {
    pub type_: EventType,
    pub reason: &'static str,
    pub action: Action,
    pub note: String,
}

/// Why a pass stopped before the declared state held.
#[derive(Clone, Debug)]
pub struct Halt {
    pub standing: Standing,
    /// When to try again; `None` waits for a change to the object or its
    /// ProviderConfig or Secret.
    pub requeue: Option<Duration>,
}

/// Everything one pass needs that does not change between steps.
pub struct Pass<'a> {
    pub ctx: &'a Context,
    pub object: ObjectRef<SecurityGroupRule>,
    pub resolved: &'a Resolved,
    pub uid: &'a str,
    pub generation: i64,
    pub group: GroupRef,
    pub spec_rule: &'a RuleSpec,
    pub desired: Desired,
}

impl Pass<'_> {
    /// Runs steps until settled or halted; appends an Event notice per call.
    pub async fn run(
        &self,
        record: &mut Record,
        notices: &mut Vec<Notice>,
    ) -> Result<Standing, Halt> {
        let spec_rule = convert::rule(self.spec_rule, self.resolved.kind)
            .map_err(|e| stalled(reasons::UNSUPPORTED, e.0))?;
        for _ in 0..MAX_STEPS {
            let applied = recorded(record.applied.as_ref().map(|(r, id)| (r, id.clone())), self)?;
            let superseded = recorded(
                record
                    .superseded
                    .as_ref()
                    .map(|s| (&s.rule, s.rule_id.clone())),
                self,
            )?;
            // Revoking the applied rule revokes the spec's rule when they are one.
            let applied_is_spec = applied.as_ref().is_some_and(|a| a.rule == spec_rule);
            let completed = record
                .last_operation
                .as_ref()
                .filter(|op| op.result != OperationResult::Failed)
                .and_then(|op| op.client_token.clone());
            let step = plan::plan(&PlanInput {
                uid: self.uid,
                generation: self.generation,
                attempt_epoch: record.attempt_epoch,
                kind: self.resolved.kind,
                group: self.group.clone(),
                desired: self.desired.clone(),
                spec_rule: &spec_rule,
                applied,
                superseded,
                completed_token: completed.as_deref(),
                spec_revoked: record.spec_revoked_at == Some(self.generation),
            });
            match step {
                Step::Authorized => {
                    return Ok(Standing::Settled {
                        reason: reasons::AUTHORIZED,
                        message: "the rule is authorized at the provider".into(),
                    });
                }
                Step::Revoked => {
                    return Ok(Standing::Settled {
                        reason: reasons::REVOKED,
                        message: "the rule is revoked at the provider".into(),
                    });
                }
                Step::Authorize(call) => {
                    self.check_credentials_pause()?;
                    let result = self.ctx.call_authorize(self.resolved, &call).await;
                    self.fold(
                        record,
                        notices,
                        Action::Authorize,
                        &call.client_token,
                        result,
                    )?;
                    let rule_id = self
                        .ctx
                        .learn_rule_id(self.resolved, &call.group, &call.rule)
                        .await;
                    if let Some((old, old_id)) = record.applied.take()
                        && old != *self.spec_rule
                    {
                        record.superseded = Some(SupersededRule {
                            rule_id: old_id,
                            rule: old,
                        });
                    }
                    record.applied = Some((self.spec_rule.clone(), rule_id));
                    record.group = Some(call.group.clone());
                }
                Step::Revoke { call, of } => {
                    self.check_credentials_pause()?;
                    let result = self.ctx.call_revoke(self.resolved, &call).await;
                    self.fold(record, notices, Action::Revoke, &call.client_token, result)?;
                    match of {
                        RevokeOf::Superseded => record.superseded = None,
                        RevokeOf::Applied => {
                            record.applied = None;
                            if applied_is_spec {
                                record.spec_revoked_at = Some(self.generation);
                            }
                        }
                        RevokeOf::Unrecorded => {}
                    }
                }
            }
        }
        Err(Halt {
            standing: Standing::Progressing {
                reason: reasons::PROGRESSING,
                message: "more steps remain".into(),
            },
            requeue: Some(Duration::ZERO),
        })
    }

    /// Every rule of a ProviderConfig whose credentials were rejected waits
    /// out the same pause instead of trying them again one by one.
    fn check_credentials_pause(&self) -> Result<(), Halt> {
        match self
            .ctx
            .config_backoff
            .remaining(&self.resolved.credentials_key)
        {
            Some(wait) => Err(Halt {
                standing: stalled_standing(
                    reasons::CREDENTIALS_REJECTED,
                    // No countdown in the message: a message that changes on
                    // every pass would rewrite status, and each write wakes
                    // the rule again.
                    format!(
                        "the provider rejected the credentials of ProviderConfig {}; fix its Secret, it is retried after a pause",
                        self.resolved.config_name,
                    ),
                ),
                requeue: Some(wait),
            }),
            None => Ok(()),
        }
    }

    /// Records a call's outcome in `record` and `notices`; turns failures into a halt.
    fn fold(
        &self,
        record: &mut Record,
        notices: &mut Vec<Notice>,
        action: Action,
        token: &str,
        result: Result<Receipt, ProviderError>,
    ) -> Result<OperationResult, Halt> {
        let (result, request_id, code, message) = match result {
            Ok(receipt) => (OperationResult::Succeeded, receipt.request_id, None, None),
            Err(e) if e.kind == ErrorKind::AlreadyExists && action == Action::Authorize => (
                OperationResult::AlreadyExists,
                e.request_id,
                Some(e.code),
                Some(e.message),
            ),
            Err(e) if e.kind == ErrorKind::AlreadyGone && action == Action::Revoke => (
                OperationResult::AlreadyGone,
                e.request_id,
                Some(e.code),
                Some(e.message),
            ),
            Err(e) => {
                record.last_operation = Some(operation(action, token, OperationResult::Failed, &e));
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
        let (reason, verb) = match action {
            Action::Revoke => (reasons::REVOKED, "revoked"),
            _ => (reasons::AUTHORIZED, "authorized"),
        };
        notices.push(Notice {
            type_: EventType::Normal,
            reason,
            action,
            note: format!(
                "rule {verb} at {} ({result:?}, ClientToken {token})",
                self.resolved.kind
            ),
        });
        Ok(result)
    }

    fn halt_on(
        &self,
        record: &mut Record,
        notices: &mut Vec<Notice>,
        action: Action,
        e: ProviderError,
    ) -> Halt {
        let what = format!("{} failed: {}: {}", action.as_str(), e.code, e.message);
        let halt = match e.kind {
            ErrorKind::Throttled => Halt {
                standing: progressing(reasons::THROTTLED, what.clone()),
                requeue: Some(e.retry_after.unwrap_or(Duration::from_secs(1))),
            },
            ErrorKind::Transient | ErrorKind::AlreadyExists | ErrorKind::AlreadyGone => Halt {
                standing: progressing(reasons::RETRYING, what.clone()),
                requeue: Some(self.ctx.object_backoff.fail(&self.object)),
            },
            ErrorKind::Unauthorized => {
                // Rejected requests had no effect: the next attempt is a new one.
                record.attempt_epoch += 1;
                let wait = self.ctx.config_backoff.fail(&self.resolved.credentials_key);
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

/// Converts a recorded API rule into the provider model for planning.
fn recorded(
    entry: Option<(&RuleSpec, Option<String>)>,
    pass: &Pass<'_>,
) -> Result<Option<Applied>, Halt> {
    entry
        .map(|(rule, rule_id)| {
            convert::rule(rule, pass.resolved.kind)
                .map(|rule: Rule| Applied { rule, rule_id })
                .map_err(|e| stalled(reasons::UNSUPPORTED, e.0))
        })
        .transpose()
}

fn operation(
    action: Action,
    token: &str,
    result: OperationResult,
    e: &ProviderError,
) -> LastOperation {
    LastOperation {
        action,
        client_token: Some(token.to_owned()),
        request_id: e.request_id.clone(),
        result,
        code: Some(e.code.clone()),
        message: Some(e.message.clone()),
        time: Timestamp::now(),
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
