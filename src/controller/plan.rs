//! Decides the next provider call for a rule. Pure: no client, no clock.
//!
//! One step at a time, each persisted in status before the next, so a crash
//! between steps resumes where it stopped and a crash inside a step repeats
//! it with the same ClientToken (the provider replays it).
//!
//! Order of work:
//! 1. a rule superseded by a spec change is revoked first (make-before-break
//!    already authorized its replacement);
//! 2. `Present`: authorize the desired rule unless it is what was applied. A
//!    change that keeps the provider's rule identity (say, only Alibaba's
//!    priority) cannot be authorized next to the old rule, so the old one is
//!    revoked first;
//! 3. `Absent` or deleting: revoke the applied rule, or — if status records
//!    none, which includes a crash right after an authorize — revoke by the
//!    spec's attributes, which answers "already gone" when nothing is there.

use crate::{
    provider::{Authorize, GroupRef, ProviderKind, Revoke, RevokeTarget, Rule},
    token::{self, Intent, TokenInput},
};

/// What the object asks for.
#[derive(Clone, Debug)]
pub enum Desired {
    Present(Rule),
    /// `ensure: Absent`, or deleting with `deletionPolicy: Delete`.
    Absent,
}

/// A rule the operator believes it authorized.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    pub rule: Rule,
    pub rule_id: Option<String>,
}

/// Everything `plan` looks at.
#[derive(Clone, Debug)]
pub struct PlanInput<'a> {
    pub uid: &'a str,
    pub generation: i64,
    pub attempt_epoch: u32,
    pub kind: ProviderKind,
    pub group: GroupRef,
    pub desired: Desired,
    /// The spec's rule, for revoking by attributes when nothing is recorded.
    pub spec_rule: &'a Rule,
    pub applied: Option<Applied>,
    pub superseded: Option<Applied>,
    /// Token of the last mutation that succeeded (or found the rule already
    /// there / already gone): an intent with this token is complete.
    pub completed_token: Option<&'a str>,
    /// The spec's rule is known revoked at this generation (revoked as the
    /// applied rule, or status says so): revoking it again by attributes
    /// could only answer "already gone".
    pub spec_revoked: bool,
}

/// Which recorded rule a revoke removes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RevokeOf {
    Superseded,
    Applied,
    /// Nothing recorded: by the spec's attributes, in case an authorize
    /// happened that status never recorded.
    Unrecorded,
}

/// The next step.
#[derive(Clone, Debug)]
pub enum Step {
    Authorize(Authorize),
    Revoke {
        call: Revoke,
        of: RevokeOf,
    },
    /// Declared state holds: `Present` is authorized.
    Authorized,
    /// Declared state holds: nothing of this object remains at the provider.
    Revoked,
}

pub fn plan(input: &PlanInput<'_>) -> Step {
    if let Some(old) = &input.superseded {
        return revoke(input, old, RevokeOf::Superseded);
    }
    match &input.desired {
        Desired::Present(want) => match &input.applied {
            Some(applied) if applied.rule == *want => Step::Authorized,
            Some(applied) if input.kind.same_rule(want, &applied.rule) => {
                revoke(input, applied, RevokeOf::Applied)
            }
            _ => authorize(input, want),
        },
        Desired::Absent => match &input.applied {
            Some(applied) => revoke(input, applied, RevokeOf::Applied),
            None if input.spec_revoked => Step::Revoked,
            None => {
                let unrecorded = Applied {
                    rule: input.spec_rule.clone(),
                    rule_id: None,
                };
                match revoke(input, &unrecorded, RevokeOf::Unrecorded) {
                    Step::Revoke { call, .. }
                        if input.completed_token == Some(call.client_token.as_str()) =>
                    {
                        Step::Revoked
                    }
                    step => step,
                }
            }
        },
    }
}

fn authorize(input: &PlanInput<'_>, rule: &Rule) -> Step {
    let mut call = Authorize {
        group: input.group.clone(),
        rule: rule.clone(),
        client_token: String::new(),
    };
    call.client_token = token_for(input, Intent::Authorize, &token::canonical_authorize(&call));
    Step::Authorize(call)
}

fn revoke(input: &PlanInput<'_>, what: &Applied, of: RevokeOf) -> Step {
    let target = match &what.rule_id {
        Some(id) => RevokeTarget::Id {
            rule_id: id.clone(),
            rule: what.rule.clone(),
        },
        None => RevokeTarget::Attributes(what.rule.clone()),
    };
    let mut call = Revoke {
        group: input.group.clone(),
        target,
        client_token: String::new(),
    };
    call.client_token = token_for(input, Intent::Revoke, &token::canonical_revoke(&call));
    Step::Revoke { call, of }
}

fn token_for(input: &PlanInput<'_>, intent: Intent, canonical_request: &str) -> String {
    token::client_token(&TokenInput {
        uid: input.uid,
        intent,
        generation: input.generation,
        attempt_epoch: input.attempt_epoch,
        canonical_request,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::{Direction, NicType, Peer, Policy, PortRange, Protocol};

    fn rule(port: u16) -> Rule {
        Rule {
            direction: Direction::Ingress,
            protocol: Protocol::Tcp,
            ports: Some(PortRange {
                from: port,
                to: port,
            }),
            source_ports: None,
            peer: Peer::parse_ip("10.0.0.0/8").expect("valid"),
            policy: Policy::Accept,
            priority: 1,
            nic_type: NicType::Intranet,
            description: String::new(),
        }
    }

    fn input<'a>(spec_rule: &'a Rule, desired: Desired) -> PlanInput<'a> {
        PlanInput {
            uid: "uid-1",
            generation: 1,
            attempt_epoch: 0,
            kind: ProviderKind::Alibaba,
            group: GroupRef {
                region: "cn-hangzhou".into(),
                security_group_id: "sg-1".into(),
            },
            desired,
            spec_rule,
            applied: None,
            superseded: None,
            completed_token: None,
            spec_revoked: false,
        }
    }

    fn applied(rule: Rule, id: Option<&str>) -> Option<Applied> {
        Some(Applied {
            rule,
            rule_id: id.map(str::to_owned),
        })
    }

    #[test]
    fn a_new_present_rule_is_authorized() {
        let want = rule(22);
        let step = plan(&input(&want, Desired::Present(want.clone())));
        assert!(matches!(step, Step::Authorize(ref call) if call.rule == want));
    }

    #[test]
    fn an_applied_rule_that_matches_needs_nothing() {
        let want = rule(22);
        let mut i = input(&want, Desired::Present(want.clone()));
        i.applied = applied(want.clone(), Some("sgr-1"));
        assert!(matches!(plan(&i), Step::Authorized));
    }

    #[test]
    fn a_changed_identity_is_authorized_before_the_old_rule_is_revoked() {
        let want = rule(443);
        let mut i = input(&want, Desired::Present(want.clone()));
        i.applied = applied(rule(22), Some("sgr-old"));
        assert!(matches!(plan(&i), Step::Authorize(ref call) if call.rule == want));

        // After the authorize, status holds the old rule as superseded.
        i.applied = applied(want.clone(), Some("sgr-new"));
        i.superseded = applied(rule(22), Some("sgr-old"));
        match plan(&i) {
            Step::Revoke { call, of } => {
                assert_eq!(of, RevokeOf::Superseded);
                assert!(
                    matches!(call.target, RevokeTarget::Id { ref rule_id, .. } if rule_id == "sgr-old")
                );
            }
            other => panic!("expected a revoke of the superseded rule, got {other:?}"),
        }
    }

    #[test]
    fn a_change_that_keeps_the_identity_revokes_first() {
        let mut want = rule(22);
        want.priority = 5;
        let mut i = input(&want, Desired::Present(want.clone()));
        i.applied = applied(rule(22), Some("sgr-1"));
        assert!(matches!(
            plan(&i),
            Step::Revoke {
                of: RevokeOf::Applied,
                ..
            }
        ));
    }

    #[test]
    fn absent_revokes_the_applied_rule_by_id() {
        let spec = rule(22);
        let mut i = input(&spec, Desired::Absent);
        i.applied = applied(spec.clone(), Some("sgr-1"));
        match plan(&i) {
            Step::Revoke {
                call,
                of: RevokeOf::Applied,
            } => {
                assert!(
                    matches!(call.target, RevokeTarget::Id { ref rule_id, .. } if rule_id == "sgr-1")
                );
            }
            other => panic!("expected revoke by id, got {other:?}"),
        }
    }

    #[test]
    fn absent_without_a_record_revokes_by_attributes_once() {
        let spec = rule(22);
        let mut i = input(&spec, Desired::Absent);
        let Step::Revoke {
            call,
            of: RevokeOf::Unrecorded,
        } = plan(&i)
        else {
            panic!("expected a revoke by attributes");
        };
        assert!(matches!(call.target, RevokeTarget::Attributes(ref r) if *r == spec));
        let token = call.client_token.clone();
        i.completed_token = Some(&token);
        assert!(matches!(plan(&i), Step::Revoked));
    }

    #[test]
    fn absent_after_the_spec_rule_was_revoked_needs_no_second_revoke() {
        let spec = rule(22);
        let mut i = input(&spec, Desired::Absent);
        i.spec_revoked = true;
        assert!(matches!(plan(&i), Step::Revoked));
    }

    /// What status records may differ from the spec (a spec change whose
    /// authorize never reached status): revoking it leaves the spec's rule
    /// to be revoked by attributes.
    #[test]
    fn an_applied_rule_is_revoked_even_when_the_spec_rule_is_revoked() {
        let spec = rule(22);
        let mut i = input(&spec, Desired::Absent);
        i.spec_revoked = true;
        i.applied = applied(rule(443), Some("sgr-old"));
        assert!(matches!(
            plan(&i),
            Step::Revoke {
                of: RevokeOf::Applied,
                ..
            }
        ));
    }

    #[test]
    fn a_retry_of_the_same_intent_reuses_its_token() {
        let want = rule(22);
        let a = plan(&input(&want, Desired::Present(want.clone())));
        let b = plan(&input(&want, Desired::Present(want.clone())));
        let (Step::Authorize(a), Step::Authorize(b)) = (a, b) else {
            panic!("expected authorizes")
        };
        assert_eq!(a.client_token, b.client_token);
    }

    #[test]
    fn a_new_epoch_gives_a_new_token() {
        let want = rule(22);
        let a = plan(&input(&want, Desired::Present(want.clone())));
        let mut i = input(&want, Desired::Present(want.clone()));
        i.attempt_epoch = 1;
        let (Step::Authorize(a), Step::Authorize(b)) = (a, plan(&i)) else {
            panic!("expected authorizes")
        };
        assert_ne!(a.client_token, b.client_token);
    }
}
