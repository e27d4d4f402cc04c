//! Deterministic ClientTokens.
//!
//! A retry after a crash must send the same token, so the provider replays
//! the first answer instead of acting twice; a new intent must send a new
//! token, or the provider would swallow it as a replay. So the token is a
//! hash of everything that identifies the intent:
//!
//! ```text
//! token = "sgo-" + hex(SHA-256(uid ‖ action ‖ generation ‖ attempt epoch ‖ canonical request))[..60]
//! ```
//!
//! 64 ASCII characters, the limit of every supported provider. Each field is
//! length-prefixed so no two different inputs can concatenate to the same bytes.
//! The canonical request is spelled out here, field by field, rather than
//! derived from `Debug`, so the token stays stable across releases.

use std::fmt::Write as _;

use sha2::{Digest, Sha256};

use crate::provider::{
    Authorize, Direction, GroupRef, Modify, NicType, Peer, Policy, PortRange, Protocol, Revoke,
    RevokeTarget, Rule,
};

/// Documented prefix, so operators can tell the operator's calls apart in provider audit logs.
pub const PREFIX: &str = "sgo-";
/// Providers accept at most 64 ASCII characters.
pub const MAX_LEN: usize = 64;

/// Which mutation a token is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Intent {
    Authorize,
    Revoke,
    Modify,
}

/// Everything that identifies one intent.
#[derive(Clone, Copy, Debug)]
pub struct TokenInput<'a> {
    pub uid: &'a str,
    pub intent: Intent,
    pub generation: i64,
    pub attempt_epoch: u32,
    pub canonical_request: &'a str,
}

/// The ClientToken of an intent.
pub fn client_token(input: &TokenInput<'_>) -> String {
    let intent = match input.intent {
        Intent::Authorize => "authorize",
        Intent::Revoke => "revoke",
        Intent::Modify => "modify",
    };
    let mut hasher = Sha256::new();
    for field in [
        input.uid,
        intent,
        &input.generation.to_string(),
        &input.attempt_epoch.to_string(),
        input.canonical_request,
    ] {
        hasher.update((field.len() as u64).to_be_bytes());
        hasher.update(field.as_bytes());
    }
    let digest = hex::encode(hasher.finalize());
    format!("{PREFIX}{}", &digest[..MAX_LEN - PREFIX.len()])
}

/// Canonical text of an authorize call.
pub fn canonical_authorize(call: &Authorize) -> String {
    let mut out = canonical_group(&call.group);
    out.push_str("rule=");
    push_rule(&mut out, &call.rule);
    out
}

/// Canonical text of a revoke call.
pub fn canonical_revoke(call: &Revoke) -> String {
    let mut out = canonical_group(&call.group);
    match &call.target {
        RevokeTarget::Id { rule_id, .. } => {
            let _ = write!(out, "id={rule_id}");
        }
        RevokeTarget::Attributes(rule) => {
            out.push_str("rule=");
            push_rule(&mut out, rule);
        }
    }
    out
}

pub fn canonical_modify(call: &Modify) -> String {
    let mut out = canonical_group(&call.group);
    let _ = write!(out, "id={};rule=", call.rule_id);
    push_rule(&mut out, &call.rule);
    out
}

fn canonical_group(group: &GroupRef) -> String {
    format!("region={};group={};", group.region, group.security_group_id)
}

fn push_rule(out: &mut String, rule: &Rule) {
    let direction = match rule.direction {
        Direction::Ingress => "ingress",
        Direction::Egress => "egress",
    };
    let protocol = match rule.protocol {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
        Protocol::Icmp => "icmp",
        Protocol::Icmpv6 => "icmpv6",
        Protocol::Gre => "gre",
        Protocol::All => "all",
    };
    let peer = match &rule.peer {
        Peer::Cidr(net) => format!("cidr:{net}"),
        Peer::Ipv6Cidr(net) => format!("cidr6:{net}"),
        Peer::Group {
            id,
            owner_account,
            owner_id,
        } => format!(
            "group:{id}/{}/{}",
            owner_account.as_deref().unwrap_or(""),
            owner_id.as_deref().unwrap_or("")
        ),
    };
    let policy = match rule.policy {
        Policy::Accept => "accept",
        Policy::Drop => "drop",
    };
    let nic = match rule.nic_type {
        NicType::Intranet => "intranet",
        NicType::Internet => "internet",
    };
    let _ = write!(
        out,
        "{direction}|{protocol}|{}|{}|{peer}|{policy}|{}|{nic}|{}:{}",
        ports(rule.effective_ports()),
        ports(rule.source_ports),
        rule.priority,
        rule.description.len(),
        rule.description,
    );
}

fn ports(range: Option<PortRange>) -> String {
    range.map_or_else(String::new, |p| format!("{}-{}", p.from, p.to))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule() -> Rule {
        Rule {
            direction: Direction::Ingress,
            protocol: Protocol::Tcp,
            ports: Some(PortRange { from: 443, to: 443 }),
            source_ports: None,
            peer: Peer::parse_ip("10.0.0.0/8").expect("valid"),
            policy: Policy::Accept,
            priority: 1,
            nic_type: NicType::Intranet,
            description: "web https".into(),
        }
    }

    fn group() -> GroupRef {
        GroupRef {
            region: "cn-hangzhou".into(),
            security_group_id: "sg-bp67acfmxazb4p".into(),
        }
    }

    fn authorize_request(rule: Rule) -> String {
        canonical_authorize(&Authorize {
            group: group(),
            rule,
            client_token: String::new(),
        })
    }

    fn token(intent: Intent, generation: i64, epoch: u32, request: &str) -> String {
        client_token(&TokenInput {
            uid: "3f1c2a9e-6b7d-4c1e-9a55-0e2f4b6d8a10",
            intent,
            generation,
            attempt_epoch: epoch,
            canonical_request: request,
        })
    }

    /// A restarted process (or a new release) must derive the very token the
    /// crashed one sent. The pinned value was computed independently from the
    /// documented formula with Python's hashlib.
    #[test]
    fn same_inputs_give_the_same_token_across_processes() {
        let request = authorize_request(rule());
        let first = token(Intent::Authorize, 4, 0, &request);
        assert_eq!(first, token(Intent::Authorize, 4, 0, &request));
        assert_eq!(
            request,
            "region=cn-hangzhou;group=sg-bp67acfmxazb4p;rule=ingress|tcp|443-443||cidr:10.0.0.0/8|accept|1|intranet|9:web https"
        );
        assert_eq!(
            first,
            "sgo-f34a1dad7791a5f87344b902f8c1c6c245bfe09ee7e94f590731763339c4"
        );
    }

    #[test]
    fn any_change_of_intent_gives_a_different_token() {
        let request = authorize_request(rule());
        let base = token(Intent::Authorize, 4, 0, &request);
        let mut wider = rule();
        wider.ports = Some(PortRange { from: 443, to: 444 });
        let mut other_peer = rule();
        other_peer.peer = Peer::parse_ip("10.0.0.0/16").expect("valid");
        let variants = [
            token(Intent::Revoke, 4, 0, &request),
            token(Intent::Authorize, 5, 0, &request),
            token(Intent::Authorize, 4, 1, &request),
            token(Intent::Authorize, 4, 0, &authorize_request(wider)),
            token(Intent::Authorize, 4, 0, &authorize_request(other_peer)),
            client_token(&TokenInput {
                uid: "another-uid",
                intent: Intent::Authorize,
                generation: 4,
                attempt_epoch: 0,
                canonical_request: &request,
            }),
        ];
        for (i, v) in variants.iter().enumerate() {
            assert_ne!(v, &base, "variant {i} collided with the base token");
        }
        let unique: std::collections::HashSet<_> = variants.iter().collect();
        assert_eq!(unique.len(), variants.len());
    }

    #[test]
    fn revoke_by_id_and_by_attributes_are_different_requests() {
        let by_id = canonical_revoke(&Revoke {
            group: group(),
            target: RevokeTarget::Id {
                rule_id: "sgr-1".into(),
                rule: rule(),
            },
            client_token: String::new(),
        });
        let by_attrs = canonical_revoke(&Revoke {
            group: group(),
            target: RevokeTarget::Attributes(rule()),
            client_token: String::new(),
        });
        assert_ne!(by_id, by_attrs);
    }

    #[test]
    fn tokens_fit_every_provider() {
        let t = token(Intent::Revoke, i64::MAX, u32::MAX, &"x".repeat(10_000));
        assert_eq!(t.len(), MAX_LEN);
        assert!(t.is_ascii());
        assert!(t.starts_with(PREFIX));
    }

    /// Length prefixes keep field boundaries: moving bytes between the
    /// description and the next field must not collide.
    #[test]
    fn field_boundaries_cannot_be_forged() {
        let a = client_token(&TokenInput {
            uid: "ab",
            intent: Intent::Revoke,
            generation: 1,
            attempt_epoch: 0,
            canonical_request: "c",
        });
        let b = client_token(&TokenInput {
            uid: "a",
            intent: Intent::Revoke,
            generation: 1,
            attempt_epoch: 0,
            canonical_request: "bc",
        });
        assert_ne!(a, b);
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;
    use crate::provider::{
        ProviderKind,
        fixtures::{group, rule},
    };

    /// What an authorize request carries: two rules with the same key make
    /// the same request, so they must get the same canonical text.
    fn request_key(r: &Rule) -> impl PartialEq + std::fmt::Debug {
        let mut r = r.clone();
        r.ports = r.effective_ports();
        r
    }

    fn authorize(group: &GroupRef, rule: &Rule) -> String {
        canonical_authorize(&Authorize {
            group: group.clone(),
            rule: rule.clone(),
            client_token: String::new(),
        })
    }

    proptest! {
        /// Any inputs at all give 64 ASCII characters: the prefix and lowercase hex.
        #[test]
        fn every_token_fits_every_provider(
            uid in "\\PC{0,40}",
            revoke in any::<bool>(),
            generation in any::<i64>(),
            epoch in any::<u32>(),
            request in "\\PC{0,200}",
        ) {
            let token = client_token(&TokenInput {
                uid: &uid,
                intent: if revoke { Intent::Revoke } else { Intent::Authorize },
                generation,
                attempt_epoch: epoch,
                canonical_request: &request,
            });
            prop_assert_eq!(token.len(), MAX_LEN);
            prop_assert!(token.starts_with(PREFIX));
            prop_assert!(token[PREFIX.len()..].bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        }

        /// Two admitted rules give the same canonical request exactly when
        /// the provider would receive the same rule: a new intent never
        /// reuses an old token, and a retry always does.
        #[test]
        fn canonical_requests_tell_rules_apart(g in group(), a in rule(ProviderKind::Alibaba), b in rule(ProviderKind::Alibaba)) {
            prop_assert_eq!(authorize(&g, &a) == authorize(&g, &b), request_key(&a) == request_key(&b));
            prop_assert_eq!(authorize(&g, &a), authorize(&g, &a.clone()));
        }

        /// A rule changed in one field at a time always changes the request.
        #[test]
        fn one_changed_field_changes_the_request(g in group(), a in rule(ProviderKind::Alibaba), b in rule(ProviderKind::Alibaba), field in 0..9_usize) {
            let mut changed = a.clone();
            match field {
                0 => changed.direction = b.direction,
                1 => changed.protocol = b.protocol,
                2 => changed.ports = b.ports,
                3 => changed.source_ports = b.source_ports,
                4 => changed.peer = b.peer.clone(),
                5 => changed.policy = b.policy,
                6 => changed.priority = b.priority,
                7 => changed.nic_type = b.nic_type,
                _ => changed.description = b.description.clone(),
            }
            prop_assume!(request_key(&changed) != request_key(&a));
            prop_assert_ne!(authorize(&g, &a), authorize(&g, &changed));
        }

        /// A revoke by id and one by attributes are never the same request.
        #[test]
        fn revoke_by_id_never_looks_like_revoke_by_attributes(g in group(), r in rule(ProviderKind::Baidu), id in "\\PC{0,30}") {
            let by_id = canonical_revoke(&Revoke { group: g.clone(), target: RevokeTarget::Id { rule_id: id, rule: r.clone() }, client_token: String::new() });
            let by_attributes = canonical_revoke(&Revoke { group: g, target: RevokeTarget::Attributes(r), client_token: String::new() });
            prop_assert_ne!(by_id, by_attributes);
        }
    }
}
