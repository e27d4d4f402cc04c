//! Decides the next provider call for a rule. Pure: no client, no clock.
//!
//! One step at a time, from the record of every rule that may exist at the
//! provider because of this object:
//!
//! - `applied`: authorized, and the declared state as far as status knows;
//! - `superseded`: to be revoked (replaced by a spec change, or about to be
//!   revoked because the rule is `Absent` or being deleted);
//! - `authorizing`: an authorize was sent and its outcome is not recorded
//!   (held in memory before the call, written to status with a failure
//!   that leaves it open), so the rule may or may not exist;
//! - `strays`: rules carrying the object's ownership mark that a describe
//!   shows and nothing above accounts for, left by an authorize whose
//!   outcome died with the process.
//!
//! Order of work:
//! 1. a superseded rule is revoked;
//! 2. a rule left `authorizing` is authorized again if the spec still asks
//!    for it (the provider replays the call or finds the rule), else revoked;
//! 3. strays are revoked;
//! 4. `Present`: authorize the desired rule unless it is what was applied.
//!    The applied rule stays until its replacement exists (make before
//!    break), then is superseded. A change that keeps the provider's rule
//!    identity (say, only Alibaba's priority) cannot be authorized next to
//!    the old rule: where the provider can, and the rule id is known, the
//!    rule is modified in place; else the old one is superseded first;
//! 5. `Absent` or deleting: the applied rule is superseded, then revoked.
//!    With nothing recorded and no strays, nothing of this object is at the
//!    provider.

use super::ownership::Mark;
use crate::{
    provider::{
        Authorize, DescribedRule, GroupRef, Modify, ProviderKind, Revoke, RevokeTarget, Rule,
    },
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
    pub applied: Option<Applied>,
    pub superseded: Option<Applied>,
    /// A rule whose authorize has no recorded outcome.
    pub authorizing: Option<Rule>,
    /// This object's rules that a describe shows and the record does not
    /// know (see [`strays`]).
    pub strays: Vec<Applied>,
}

/// Which recorded rule a revoke removes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RevokeOf {
    Superseded,
    /// A rule left `authorizing` that the spec no longer asks for.
    Authorizing,
    /// The first of the strays.
    Stray,
}

/// The next step.
#[derive(Clone, Debug)]
pub enum Step {
    Authorize(Authorize),
    Revoke {
        call: Revoke,
        of: RevokeOf,
    },
    /// Change the applied rule's priority and description in place (only
    /// they changed, and the provider can): it never leaves the group.
    Modify(Modify),
    /// Record the applied rule as superseded (no call): a crash after its
    /// revoke must not leave status claiming it is still authorized (see
    /// `steps::Pass::supersede` for when this is written first).
    Supersede,
    /// Nothing to do: the declared `Present` rule is authorized.
    PresentHolds,
    /// Nothing to do: nothing of this object remains at the provider.
    AbsentHolds,
}

pub fn plan(input: &PlanInput<'_>) -> Step {
    if let Some(old) = &input.superseded {
        return revoke(input, old, RevokeOf::Superseded);
    }
    if let Some(maybe) = &input.authorizing {
        return match &input.desired {
            Desired::Present(want) if want == maybe => authorize(input, want),
            _ => {
                let unrecorded = Applied {
                    rule: maybe.clone(),
                    rule_id: None,
                };
                revoke(input, &unrecorded, RevokeOf::Authorizing)
            }
        };
    }
    if let Some(stray) = input.strays.first() {
        return revoke(input, stray, RevokeOf::Stray);
    }
    match (&input.desired, &input.applied) {
        (Desired::Present(want), Some(applied)) if applied.rule == *want => Step::PresentHolds,
        (Desired::Present(want), Some(applied)) if input.kind.same_rule(want, &applied.rule) => {
            match &applied.rule_id {
                Some(rule_id) if input.kind.modifies_in_place() => {
                    Step::Modify(modify_call(input, want, rule_id))
                }
                _ => Step::Supersede,
            }
        }
        (Desired::Present(want), _) => authorize(input, want),
        (Desired::Absent, Some(_)) => Step::Supersede,
        (Desired::Absent, None) => Step::AbsentHolds,
    }
}

/// The rules among `described` that carry this object's `mark` and that
/// neither the record (applied, superseded, authorizing) nor the desired
/// rule accounts for. A rule with the desired identity but another
/// priority or description, left by an older spec, is one: authorizing the
/// desired rule next to it would change nothing. Only an authorize whose outcome was never recorded
/// leaves one (the process died between the call and the status write, and
/// the spec changed since, or the object is being deleted); the mark is how
/// the cloud tells, without a record written before the call.
pub fn strays(input: &PlanInput<'_>, mark: &Mark, described: &[DescribedRule]) -> Vec<Applied> {
    let recorded: Vec<&Rule> = input
        .applied
        .iter()
        .chain(&input.superseded)
        .map(|a| &a.rule)
        .chain(&input.authorizing)
        .collect();
    let desired = |have: &Rule| match &input.desired {
        Desired::Present(want) => same_content(input.kind, want, have),
        Desired::Absent => false,
    };
    described
        .iter()
        .filter(|d| mark.is_on(&d.rule.description))
        .filter(|d| !recorded.iter().any(|k| input.kind.same_rule(k, &d.rule)))
        .filter(|d| !desired(&d.rule))
        .map(|d| Applied {
            rule: d.rule.clone(),
            rule_id: Some(d.rule_id.clone()).filter(|id| !id.is_empty()),
        })
        .collect()
}

/// Whether `have` is `want` in everything the provider keeps, not only in
/// its identity: on Alibaba and Apsara Stack also the priority and the
/// description, which two rules of one identity may differ in (Baidu's
/// identity includes the remark, and it has no priority).
pub fn same_content(kind: ProviderKind, want: &Rule, have: &Rule) -> bool {
    kind.same_rule(want, have)
        && match kind {
            ProviderKind::Baidu => true,
            ProviderKind::Alibaba | ProviderKind::Apsara => {
                want.priority == have.priority && want.description.trim() == have.description.trim()
            }
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
    Step::Revoke {
        call: revoke_call(input, what),
        of,
    }
}

/// The revoke of `what`, by its id when known, with the intent's token. The
/// pass aims a planned revoke at the rule id a describe confirmed as this
/// object's through this function, so the token always fits the call.
pub fn revoke_call(input: &PlanInput<'_>, what: &Applied) -> Revoke {
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
    call
}

/// The in-place change of the rule with `rule_id` into `rule`. The pass
/// aims it at the id a describe confirmed as this object's.
pub fn modify_call(input: &PlanInput<'_>, rule: &Rule, rule_id: &str) -> Modify {
    let mut call = Modify {
        group: input.group.clone(),
        rule_id: rule_id.to_owned(),
        rule: rule.clone(),
        client_token: String::new(),
    };
    call.client_token = token_for(input, Intent::Modify, &token::canonical_modify(&call));
    call
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

    fn input(desired: Desired) -> PlanInput<'static> {
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
            applied: None,
            superseded: None,
            authorizing: None,
            strays: Vec::new(),
        }
    }

    fn applied(rule: Rule, id: Option<&str>) -> Option<Applied> {
        Some(Applied {
            rule,
            rule_id: id.map(str::to_owned),
        })
    }

    fn revoke_of(step: Step) -> (Revoke, RevokeOf) {
        match step {
            Step::Revoke { call, of } => (call, of),
            other => panic!("expected a revoke, got {other:?}"),
        }
    }

    #[test]
    fn a_new_present_rule_is_authorized() {
        let want = rule(22);
        let step = plan(&input(Desired::Present(want.clone())));
        assert!(matches!(step, Step::Authorize(ref call) if call.rule == want));
    }

    #[test]
    fn an_applied_rule_that_matches_needs_nothing() {
        let want = rule(22);
        let mut i = input(Desired::Present(want.clone()));
        i.applied = applied(want, Some("sgr-1"));
        assert!(matches!(plan(&i), Step::PresentHolds));
    }

    #[test]
    fn a_changed_identity_is_authorized_before_the_old_rule_is_revoked() {
        let want = rule(443);
        let mut i = input(Desired::Present(want.clone()));
        i.applied = applied(rule(22), Some("sgr-old"));
        assert!(matches!(plan(&i), Step::Authorize(ref call) if call.rule == want));

        // After the authorize, status holds the old rule as superseded.
        i.applied = applied(want.clone(), Some("sgr-new"));
        i.superseded = applied(rule(22), Some("sgr-old"));
        let (call, of) = revoke_of(plan(&i));
        assert_eq!(of, RevokeOf::Superseded);
        assert!(
            matches!(call.target, RevokeTarget::Id { ref rule_id, .. } if rule_id == "sgr-old")
        );
    }

    /// Alibaba changes priority and description in place, by id: traffic
    /// never loses the rule.
    #[test]
    fn a_priority_change_on_alibaba_is_made_in_place() {
        let mut want = rule(22);
        want.priority = 5;
        want.description = "ssh".into();
        let mut i = input(Desired::Present(want.clone()));
        i.applied = applied(rule(22), Some("sgr-1"));
        let Step::Modify(call) = plan(&i) else {
            panic!("expected a modify")
        };
        assert_eq!((call.rule_id.as_str(), &call.rule), ("sgr-1", &want));
        // Without a known id it cannot be addressed: revoke first.
        i.applied = applied(rule(22), None);
        assert!(matches!(plan(&i), Step::Supersede));
    }

    #[test]
    fn a_change_that_keeps_the_identity_supersedes_the_old_rule_first() {
        let mut want = rule(22);
        want.priority = 5;
        let mut i = input(Desired::Present(want.clone()));
        i.kind = ProviderKind::Apsara;
        i.applied = applied(rule(22), Some("sgr-1"));
        assert!(matches!(plan(&i), Step::Supersede));
        i.superseded = i.applied.take();
        assert_eq!(revoke_of(plan(&i)).1, RevokeOf::Superseded);
        i.superseded = None;
        assert!(matches!(plan(&i), Step::Authorize(ref call) if call.rule == want));
    }

    /// `Absent` first records the applied rule as superseded, so a crash
    /// right after its revoke cannot leave status claiming it authorized.
    #[test]
    fn absent_supersedes_the_applied_rule_then_revokes_it_by_id() {
        let mut i = input(Desired::Absent);
        i.applied = applied(rule(22), Some("sgr-1"));
        assert!(matches!(plan(&i), Step::Supersede));
        i.superseded = i.applied.take();
        let (call, of) = revoke_of(plan(&i));
        assert_eq!(of, RevokeOf::Superseded);
        assert!(matches!(call.target, RevokeTarget::Id { ref rule_id, .. } if rule_id == "sgr-1"));
        i.superseded = None;
        assert!(matches!(plan(&i), Step::AbsentHolds));
    }

    /// With nothing recorded and no strays, nothing of this object is at
    /// the provider.
    #[test]
    fn absent_with_nothing_recorded_needs_no_call() {
        assert!(matches!(plan(&input(Desired::Absent)), Step::AbsentHolds));
    }

    /// An authorize whose outcome was never recorded (a crash, a lost
    /// answer) is sent again while the spec asks for that rule: with the
    /// intent's token, so the provider replays it rather than acting twice.
    #[test]
    fn an_unrecorded_authorize_is_sent_again_while_the_spec_wants_it() {
        let want = rule(22);
        let Step::Authorize(first) = plan(&input(Desired::Present(want.clone()))) else {
            panic!("expected an authorize")
        };
        let mut i = input(Desired::Present(want.clone()));
        i.authorizing = Some(want);
        let Step::Authorize(again) = plan(&i) else {
            panic!("expected the authorize again")
        };
        assert_eq!(first.client_token, again.client_token);
    }

    /// The spec moved on before the authorize's outcome was recorded: the
    /// rule it may have created is revoked by its attributes, whatever the
    /// spec asks now, before anything else happens.
    #[test]
    fn an_unrecorded_authorize_the_spec_no_longer_wants_is_revoked() {
        for desired in [Desired::Present(rule(443)), Desired::Absent] {
            let mut i = input(desired);
            i.authorizing = Some(rule(22));
            i.applied = applied(rule(80), Some("sgr-80"));
            let (call, of) = revoke_of(plan(&i));
            assert_eq!(of, RevokeOf::Authorizing);
            assert!(matches!(call.target, RevokeTarget::Attributes(ref r) if *r == rule(22)));
        }
    }

    #[test]
    fn a_superseded_rule_goes_before_anything_else() {
        let mut i = input(Desired::Present(rule(22)));
        i.authorizing = Some(rule(22));
        i.superseded = applied(rule(80), None);
        assert_eq!(revoke_of(plan(&i)).1, RevokeOf::Superseded);
    }

    fn at_cloud(id: &str, rule: Rule) -> DescribedRule {
        DescribedRule {
            rule_id: id.into(),
            rule,
        }
    }

    /// A stray is a rule with this object's mark that nothing recorded or
    /// desired accounts for; unmarked rules and other objects' never are.
    #[test]
    fn strays_are_the_objects_marked_rules_nothing_accounts_for() {
        let mark = Mark::of_uid("uid-1");
        let mut i = input(Desired::Present(mark.on(&rule(443))));
        i.applied = applied(mark.on(&rule(80)), Some("sgr-80"));
        i.superseded = applied(mark.on(&rule(81)), None);
        i.authorizing = Some(mark.on(&rule(82)));
        let described = [
            at_cloud("sgr-443", mark.on(&rule(443))),
            at_cloud("sgr-80", mark.on(&rule(80))),
            at_cloud("sgr-81", mark.on(&rule(81))),
            at_cloud("sgr-82", mark.on(&rule(82))),
            at_cloud("sgr-22", mark.on(&rule(22))),
            at_cloud("sgr-23", rule(23)),
            at_cloud("sgr-24", Mark::of_uid("uid-2").on(&rule(24))),
        ];
        let found = strays(&i, &mark, &described);
        assert_eq!(
            found,
            vec![applied(mark.on(&rule(22)), Some("sgr-22")).expect("some")]
        );
        // Being deleted, the desired rule is one too.
        i.desired = Desired::Absent;
        assert_eq!(strays(&i, &mark, &described).len(), 2);
    }

    /// Strays go after what is recorded to revoke, before anything new.
    #[test]
    fn strays_are_revoked_after_recorded_rules_and_before_an_authorize() {
        let mut i = input(Desired::Present(rule(443)));
        i.strays = vec![applied(rule(22), Some("sgr-22")).expect("some")];
        i.authorizing = Some(rule(80));
        assert_eq!(revoke_of(plan(&i)).1, RevokeOf::Authorizing);
        i.authorizing = None;
        let (call, of) = revoke_of(plan(&i));
        assert_eq!(of, RevokeOf::Stray);
        assert!(matches!(call.target, RevokeTarget::Id { ref rule_id, .. } if rule_id == "sgr-22"));
        i.strays.clear();
        assert!(matches!(plan(&i), Step::Authorize(_)));
    }

    #[test]
    fn a_retry_of_the_same_intent_reuses_its_token() {
        let want = rule(22);
        let a = plan(&input(Desired::Present(want.clone())));
        let b = plan(&input(Desired::Present(want)));
        let (Step::Authorize(a), Step::Authorize(b)) = (a, b) else {
            panic!("expected authorizes")
        };
        assert_eq!(a.client_token, b.client_token);
    }

    #[test]
    fn a_new_epoch_gives_a_new_token() {
        let want = rule(22);
        let a = plan(&input(Desired::Present(want.clone())));
        let mut i = input(Desired::Present(want));
        i.attempt_epoch = 1;
        let (Step::Authorize(a), Step::Authorize(b)) = (a, plan(&i)) else {
            panic!("expected authorizes")
        };
        assert_ne!(a.client_token, b.client_token);
    }
}
