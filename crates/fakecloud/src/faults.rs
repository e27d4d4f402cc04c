//! Faults injected into provider calls, set at run time over the admin API.
//!
//! Each rule matches calls by provider, action and security group (absent =
//! any; a call that names no group, like Baidu's delete by rule id, matches
//! only rules without one). For every matching call a rule draws one number
//! from its own seeded generator and turns it into at most one fault:
//! `drop`, `throttle`, `error500`, `error503`, `dropAfter`,
//! `operationConflict`, `forbidden` are consecutive slices of [0, 1).
//! `dropAfter` carries the call out and then closes the connection
//! unanswered, so the client cannot tell whether it acted; `forbidden` on a
//! rule naming a group is a permission denial on that group only. `qps`
//! throttles calls beyond that many per second, `latencyMs` delays every
//! matching call before it is carried out and `holdResponseMs` after (the
//! effect is visible, the answer not yet sent), `describeLagMs` makes
//! describe show the rules of that long ago, and `times` limits how many
//! calls the rule may fault before it goes quiet. The same seed and the same
//! sequence of calls give the same faults.

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

use rand::{Rng, SeedableRng, rngs::StdRng};
use serde::{Deserialize, Serialize};

use super::cloud::Cloud;

/// Used when neither the plan nor the command line gives a seed.
const DEFAULT_SEED: u64 = 0x5ec6_4009;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultPlan {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    #[serde(default)]
    pub rules: Vec<FaultRule>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<Cloud>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default)]
    pub drop: f64,
    #[serde(default)]
    pub throttle: f64,
    /// Sent as Alibaba `x-acs-retry-after` (ms) and Baidu `Retry-After` (s, rounded up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
    /// The HTTP status of a throttle instead of the provider's usual one
    /// (Baidu's throttling is undocumented: 429 is a guess).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttle_status: Option<u16>,
    /// The error code of a throttle instead of the provider's usual one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttle_code: Option<String>,
    #[serde(default)]
    pub error500: f64,
    #[serde(default)]
    pub error503: f64,
    #[serde(default)]
    pub drop_after: f64,
    #[serde(default)]
    pub operation_conflict: f64,
    #[serde(default)]
    pub forbidden: f64,
    #[serde(default)]
    pub latency_ms: u64,
    /// Holds the answer this long after the call was carried out and journaled.
    #[serde(default)]
    pub hold_response_ms: u64,
    /// Describe shows the group as it was this long ago (read-after-write lag).
    #[serde(default)]
    pub describe_lag_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qps: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub times: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Close the connection without answering.
    Drop,
    Throttle(Throttle),
    InternalError,
    ServiceUnavailable,
    /// Carry the call out, then close the connection without answering.
    DropAfter,
    /// ECS `OperationConflict`: another request is changing the resource.
    OperationConflict,
    /// The caller may not act on this group (`Forbidden.RAM`, Baidu `AccessDenied`).
    Forbidden,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Throttle {
    pub retry_after_ms: Option<u64>,
    pub status: Option<u16>,
    pub code: Option<String>,
}

impl Throttle {
    fn of(rule: &FaultRule) -> Fault {
        Fault::Throttle(Self {
            retry_after_ms: rule.retry_after_ms,
            status: rule.throttle_status,
            code: rule.throttle_code.clone(),
        })
    }
}

impl Fault {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Drop => "drop",
            Self::Throttle(_) => "throttle",
            Self::InternalError => "error500",
            Self::ServiceUnavailable => "error503",
            Self::DropAfter => "dropAfter",
            Self::OperationConflict => "operationConflict",
            Self::Forbidden => "forbidden",
        }
    }
}

/// What to do to one call.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Decision {
    pub latency: Duration,
    pub hold: Duration,
    pub describe_lag: Duration,
    pub fault: Option<Fault>,
}

struct ActiveRule {
    rule: FaultRule,
    rng: StdRng,
    faulted: u64,
    /// Admission times of the last second, for the `qps` ceiling.
    window: VecDeque<Instant>,
}

#[derive(Default)]
pub struct Faults {
    plan: FaultPlan,
    active: Vec<ActiveRule>,
}

impl Faults {
    pub fn plan(&self) -> &FaultPlan {
        &self.plan
    }

    /// Replaces every rule; counters and windows start afresh.
    pub fn set(&mut self, plan: FaultPlan, fallback_seed: Option<u64>) -> Result<(), String> {
        for (i, rule) in plan.rules.iter().enumerate() {
            let fractions = [
                rule.drop,
                rule.throttle,
                rule.error500,
                rule.error503,
                rule.drop_after,
                rule.operation_conflict,
                rule.forbidden,
            ];
            let total: f64 = fractions.iter().sum();
            if fractions.iter().any(|f| !(0.0..=1.0).contains(f)) || total > 1.0 + 1e-9 {
                return Err(format!(
                    "rules[{i}]: fractions must be in [0, 1] and add up to at most 1"
                ));
            }
            if rule.qps.is_some_and(|q| q.is_nan() || q <= 0.0) {
                return Err(format!("rules[{i}]: qps must be positive"));
            }
            if rule
                .throttle_status
                .is_some_and(|s| !(400..=599).contains(&s))
            {
                return Err(format!("rules[{i}]: throttleStatus must be 400..599"));
            }
        }
        let seed = plan.seed.or(fallback_seed).unwrap_or(DEFAULT_SEED);
        self.active = plan
            .rules
            .iter()
            .enumerate()
            .map(|(i, rule)| ActiveRule {
                rule: rule.clone(),
                rng: StdRng::seed_from_u64(seed.wrapping_add(i as u64)),
                faulted: 0,
                window: VecDeque::new(),
            })
            .collect();
        self.plan = plan;
        Ok(())
    }

    pub fn decide(
        &mut self,
        provider: Cloud,
        action: &str,
        group: Option<&str>,
        now: Instant,
    ) -> Decision {
        let mut decision = Decision::default();
        for active in &mut self.active {
            let rule = &active.rule;
            if rule.provider.is_some_and(|p| p != provider)
                || rule.action.as_deref().is_some_and(|a| a != action)
                || rule.group.as_deref().is_some_and(|g| Some(g) != group)
            {
                continue;
            }
            decision.latency = decision.latency.max(Duration::from_millis(rule.latency_ms));
            decision.hold = decision
                .hold
                .max(Duration::from_millis(rule.hold_response_ms));
            decision.describe_lag = decision
                .describe_lag
                .max(Duration::from_millis(rule.describe_lag_ms));
            let exhausted = rule.times.is_some_and(|t| active.faulted >= t);
            let draw: f64 = active.rng.random();
            if decision.fault.is_some() || exhausted {
                continue;
            }
            let fault = pick(rule, draw).or_else(|| over_ceiling(active, now));
            if fault.is_some() {
                active.faulted += 1;
                decision.fault = fault;
            }
        }
        decision
    }
}

fn pick(rule: &FaultRule, draw: f64) -> Option<Fault> {
    let slices = [
        (rule.drop, Fault::Drop),
        (rule.throttle, Throttle::of(rule)),
        (rule.error500, Fault::InternalError),
        (rule.error503, Fault::ServiceUnavailable),
        (rule.drop_after, Fault::DropAfter),
        (rule.operation_conflict, Fault::OperationConflict),
        (rule.forbidden, Fault::Forbidden),
    ];
    let mut upper = 0.0;
    for (fraction, fault) in slices {
        upper += fraction;
        if draw < upper {
            return Some(fault);
        }
    }
    None
}

/// Throttles a call beyond the rule's calls-per-second ceiling; admitted calls count.
fn over_ceiling(active: &mut ActiveRule, now: Instant) -> Option<Fault> {
    let qps = active.rule.qps?;
    while active
        .window
        .front()
        .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
    {
        active.window.pop_front();
    }
    if active.window.len() as f64 >= qps {
        return Some(Throttle::of(&active.rule));
    }
    active.window.push_back(now);
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(json: &str) -> FaultPlan {
        serde_json::from_str(json).expect("valid plan")
    }

    fn faults_of(faults: &mut Faults, action: &str, n: usize) -> Vec<Option<Fault>> {
        let now = Instant::now();
        (0..n)
            .map(|_| faults.decide(Cloud::Alibaba, action, None, now).fault)
            .collect()
    }

    #[test]
    fn times_limits_a_rule_to_its_next_calls_of_that_action() {
        let mut faults = Faults::default();
        let p = plan(
            r#"{"rules":[{"provider":"alibaba","action":"RevokeSecurityGroup","throttle":1,"times":2,"retryAfterMs":50}]}"#,
        );
        faults.set(p, None).expect("valid");
        let throttled = Some(Fault::Throttle(Throttle {
            retry_after_ms: Some(50),
            ..Throttle::default()
        }));
        assert_eq!(faults_of(&mut faults, "AuthorizeSecurityGroup", 1), [None]);
        assert_eq!(
            faults_of(&mut faults, "RevokeSecurityGroup", 3),
            [throttled.clone(), throttled, None]
        );
    }

    #[test]
    fn a_seed_makes_fractions_reproducible() {
        let p = plan(r#"{"seed":7,"rules":[{"error500":0.3,"error503":0.3}]}"#);
        let run = || {
            let mut faults = Faults::default();
            faults.set(p.clone(), None).expect("valid");
            faults_of(&mut faults, "DescribeSecurityGroupAttribute", 200)
        };
        let first = run();
        assert_eq!(first, run());
        let errors = first.iter().filter(|f| f.is_some()).count();
        assert!(
            (80..=160).contains(&errors),
            "about 60% of 200, got {errors}"
        );
    }

    #[test]
    fn calls_beyond_the_qps_ceiling_are_throttled() {
        let mut faults = Faults::default();
        faults
            .set(plan(r#"{"rules":[{"qps":3}]}"#), None)
            .expect("valid");
        let now = Instant::now();
        let mut at = |t: Instant| faults.decide(Cloud::Baidu, "X", None, t).fault;
        assert_eq!([at(now), at(now), at(now)], [None, None, None]);
        assert!(matches!(at(now), Some(Fault::Throttle(_))));
        assert_eq!(at(now + Duration::from_secs(1)), None);
    }

    #[test]
    fn a_rule_for_one_group_leaves_other_groups_alone() {
        let mut faults = Faults::default();
        faults
            .set(plan(r#"{"rules":[{"group":"sg-a","error500":1.0}]}"#), None)
            .expect("valid");
        let now = Instant::now();
        let mut fault_for = |group| faults.decide(Cloud::Alibaba, "X", group, now).fault;
        assert!(fault_for(Some("sg-a")).is_some());
        assert!(fault_for(Some("sg-b")).is_none());
        assert!(fault_for(None).is_none());
    }

    #[test]
    fn drop_after_is_a_fault_and_a_hold_applies_to_every_matching_call() {
        let mut faults = Faults::default();
        let p = plan(r#"{"rules":[{"action":"X","dropAfter":1,"times":1,"holdResponseMs":250}]}"#);
        faults.set(p, None).expect("valid");
        let now = Instant::now();
        let held = Duration::from_millis(250);
        let mut decide = |action| faults.decide(Cloud::Baidu, action, None, now);
        assert_eq!(
            [decide("X"), decide("X"), decide("Y")],
            [
                Decision {
                    hold: held,
                    fault: Some(Fault::DropAfter),
                    ..Decision::default()
                },
                Decision {
                    hold: held,
                    ..Decision::default()
                },
                Decision::default(),
            ]
        );
    }

    #[test]
    fn a_throttle_carries_the_status_and_code_it_was_given() {
        let mut faults = Faults::default();
        let p = plan(
            r#"{"rules":[{"throttle":1,"throttleStatus":403,"throttleCode":"Throttling.Api","describeLagMs":500}]}"#,
        );
        faults.set(p, None).expect("valid");
        let decision = faults.decide(Cloud::Baidu, "X", None, Instant::now());
        assert_eq!(decision.describe_lag, Duration::from_millis(500));
        assert_eq!(
            decision.fault,
            Some(Fault::Throttle(Throttle {
                retry_after_ms: None,
                status: Some(403),
                code: Some("Throttling.Api".into()),
            }))
        );
        let bad = plan(r#"{"rules":[{"throttle":1,"throttleStatus":200}]}"#);
        assert!(faults.set(bad, None).is_err());
    }

    #[test]
    fn impossible_fractions_are_refused() {
        let mut faults = Faults::default();
        let bad = plan(r#"{"rules":[{"drop":0.6,"throttle":0.6}]}"#);
        assert!(faults.set(bad, None).is_err());
        let bad = plan(r#"{"rules":[{"error503":0.5,"dropAfter":0.6}]}"#);
        assert!(faults.set(bad, None).is_err());
    }
}
