//! Which cloud rules are this object's. Pure: decisions on what a describe
//! of the group shows, no client.
//!
//! Every rule the operator authorizes carries a mark derived from the
//! object's UID at the end of its description (Alibaba and Apsara
//! `Description`, Baidu `remark`). The provider's describe returns it, so
//! the operator can tell its own rule from an identical one that someone
//! else created, and revokes only its own. On Baidu the remark is part of
//! the rule's identity, so the mark also makes each object's rule distinct.

use sha2::{Digest, Sha256};

use crate::provider::{DescribedRule, ProviderKind, Rule};

/// What every mark starts with; a declared description may not contain it.
pub const MARK_PREFIX: &str = "sgo:";
/// Hex digits of SHA-256(uid) in a mark: 64 bits, no collision in any
/// realistic number of objects.
const MARK_HEX_DIGITS: usize = 16;
/// The most a mark adds to a description: a blank, the prefix, the digits.
pub const MARK_CHARS: usize = 1 + MARK_PREFIX.len() + MARK_HEX_DIGITS;
/// The shortest description limit of the providers: Baidu's remark (Alibaba
/// and Apsara allow 512). Admission keeps declared text within this less
/// the mark (`spec.rule.description`).
pub const PROVIDER_DESCRIPTION_CHARS: usize = 255;

/// The ownership mark of one object.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Mark(String);

impl Mark {
    pub fn of_uid(uid: &str) -> Self {
        let digest = hex::encode(Sha256::digest(uid.as_bytes()));
        Self(format!("{MARK_PREFIX}{}", &digest[..MARK_HEX_DIGITS]))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The description sent to the provider: the user's text, then the mark.
    pub fn described(&self, text: &str) -> String {
        if text.is_empty() {
            self.0.clone()
        } else {
            format!("{text} {}", self.0)
        }
    }

    /// `rule` as the operator authorizes it for this object.
    pub fn on(&self, rule: &Rule) -> Rule {
        Rule {
            description: self.described(&rule.description),
            ..rule.clone()
        }
    }

    /// Whether a described description carries this mark.
    pub fn is_on(&self, description: &str) -> bool {
        split(description).1 == Some(self.as_str())
    }
}

/// A described description as the user's text and the mark it carries, if
/// any. Blanks around the whole are ignored (BCC drops them).
pub fn split(description: &str) -> (&str, Option<&str>) {
    let trimmed = description.trim();
    let (text, last) = match trimmed.rsplit_once(' ') {
        Some((text, last)) => (text.trim_end(), last),
        None => ("", trimmed),
    };
    let is_mark = last.len() == MARK_PREFIX.len() + MARK_HEX_DIGITS
        && last.strip_prefix(MARK_PREFIX).is_some_and(|hex| {
            hex.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        });
    if is_mark {
        (text, Some(last))
    } else {
        (trimmed, None)
    }
}

/// What a describe of the group shows of a rule the object declares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Found {
    /// The rule, carrying this object's mark, with the id the provider gave it.
    Own(DescribedRule),
    /// An identical rule that is not this object's (another object's, or
    /// created outside the operator): the provider keeps only one of them.
    Foreign(DescribedRule),
    Nothing,
}

/// Looks for `want` (marked) among the described rules: this object's own
/// first, then anyone else's that the provider would take for the same rule.
pub fn find(kind: ProviderKind, mark: &Mark, want: &Rule, described: &[DescribedRule]) -> Found {
    let mut foreign = None;
    for d in described.iter().filter(|d| kind.same_rule(want, &d.rule)) {
        if mark.is_on(&d.rule.description) {
            return Found::Own(d.clone());
        }
        foreign.get_or_insert(d);
    }
    foreign.map_or(Found::Nothing, |d| Found::Foreign(d.clone()))
}

/// What a revoke of a recorded rule may remove, checked against a describe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RevokeCheck {
    /// The rule is there and this object's: revoke it (by its described id).
    Own(DescribedRule),
    /// Nothing of this object matches: there is nothing to revoke.
    Gone,
    /// The recorded id names a rule that is not this object's: the record is
    /// wrong (edited, or stale beyond repair) and must not be acted on.
    Mismatch { rule_id: String },
}

/// A revoke goes out only for a rule that the describe shows carrying this
/// object's mark: by the recorded id when the group holds that id, else by
/// the object's own rule with the same identity.
pub fn before_revoke(
    kind: ProviderKind,
    mark: &Mark,
    recorded: &Rule,
    recorded_id: Option<&str>,
    described: &[DescribedRule],
) -> RevokeCheck {
    if let Some(id) = recorded_id.filter(|id| !id.is_empty())
        && let Some(d) = described.iter().find(|d| d.rule_id == id)
    {
        return if mark.is_on(&d.rule.description) && kind.same_rule(recorded, &d.rule) {
            RevokeCheck::Own(d.clone())
        } else {
            RevokeCheck::Mismatch {
                rule_id: id.to_owned(),
            }
        };
    }
    match find(kind, mark, recorded, described) {
        Found::Own(d) => RevokeCheck::Own(d),
        Found::Foreign(_) | Found::Nothing => RevokeCheck::Gone,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::{PortRange, fixtures::ssh_from_ten};

    fn rule(description: &str) -> Rule {
        Rule {
            description: description.into(),
            ..ssh_from_ten()
        }
    }

    fn described(id: &str, rule: Rule) -> DescribedRule {
        DescribedRule {
            rule_id: id.into(),
            rule,
        }
    }

    #[test]
    fn a_mark_is_derived_from_the_uid_and_fits_its_budget() {
        let a = Mark::of_uid("3f1c2a9e-6b7d-4c1e-9a55-0e2f4b6d8a10");
        assert_eq!(a, Mark::of_uid("3f1c2a9e-6b7d-4c1e-9a55-0e2f4b6d8a10"));
        assert_ne!(a, Mark::of_uid("3f1c2a9e-6b7d-4c1e-9a55-0e2f4b6d8a11"));
        assert!(a.as_str().starts_with(MARK_PREFIX));
        assert_eq!(a.described("web").chars().count(), 3 + MARK_CHARS);
    }

    /// Admission refuses what could not carry the mark within the providers'
    /// limit, and any text that carries a mark itself.
    #[test]
    fn admission_leaves_room_for_the_mark() {
        use kube::CustomResourceExt;
        let crd = serde_json::to_string(&crate::api::SecurityGroupRule::crd()).expect("json");
        let limit = PROVIDER_DESCRIPTION_CHARS - MARK_CHARS;
        assert!(crd.contains(&format!("size(self) <= {limit}")), "{limit}");
        assert!(crd.contains(&format!("at most {limit} characters")));
        assert!(crd.contains(&format!("!self.contains('{MARK_PREFIX}')")));
    }

    #[test]
    fn the_users_text_is_kept_and_split_off_again() {
        let mark = Mark::of_uid("uid-1");
        assert_eq!(
            split(&mark.described("web https")),
            ("web https", Some(mark.as_str()))
        );
        assert_eq!(split(&mark.described("")), ("", Some(mark.as_str())));
        // BCC drops blanks around the remark.
        assert_eq!(
            split(&format!("  {}  ", mark.described("web"))),
            ("web", Some(mark.as_str()))
        );
        assert_eq!(split("web https"), ("web https", None));
        assert_eq!(split("sgo:notamark"), ("sgo:notamark", None));
        assert_eq!(
            split("sgo:0123456789ABCDEF"),
            ("sgo:0123456789ABCDEF", None)
        );
    }

    #[test]
    fn another_objects_mark_is_not_this_ones() {
        let mine = Mark::of_uid("uid-1");
        let theirs = Mark::of_uid("uid-2");
        assert!(mine.is_on(&mine.described("web")));
        assert!(!mine.is_on(&theirs.described("web")));
        assert!(!mine.is_on("web"));
    }

    /// Alibaba keeps one rule per identity, whatever its description: an
    /// identical unmarked rule is someone else's, never adopted.
    #[test]
    fn an_identical_rule_without_the_mark_is_foreign() {
        let mark = Mark::of_uid("uid-1");
        let want = mark.on(&rule("web"));
        let planted = described("sgr-planted", rule("web"));
        assert_eq!(
            find(
                ProviderKind::Alibaba,
                &mark,
                &want,
                std::slice::from_ref(&planted)
            ),
            Found::Foreign(planted)
        );
        let other = described("sgr-other", Mark::of_uid("uid-2").on(&rule("web")));
        assert!(matches!(
            find(ProviderKind::Alibaba, &mark, &want, &[other]),
            Found::Foreign(_)
        ));
        let own = described("sgr-own", want.clone());
        assert_eq!(
            find(
                ProviderKind::Alibaba,
                &mark,
                &want,
                std::slice::from_ref(&own)
            ),
            Found::Own(own)
        );
        assert_eq!(
            find(ProviderKind::Alibaba, &mark, &want, &[]),
            Found::Nothing
        );
    }

    /// On Baidu the remark, and so the mark, is part of the identity: the
    /// object's rule is distinct from any identical one without its mark.
    #[test]
    fn on_baidu_the_mark_makes_the_rule_distinct() {
        let mark = Mark::of_uid("uid-1");
        let want = mark.on(&rule("web"));
        let planted = described("r-planted", rule("web"));
        assert_eq!(
            find(
                ProviderKind::Baidu,
                &mark,
                &want,
                std::slice::from_ref(&planted)
            ),
            Found::Nothing
        );
        let own = described("r-own", want.clone());
        assert_eq!(
            find(ProviderKind::Baidu, &mark, &want, &[planted, own.clone()]),
            Found::Own(own)
        );
    }

    #[test]
    fn a_revoke_goes_by_the_recorded_id_only_when_that_rule_is_this_objects() {
        let mark = Mark::of_uid("uid-1");
        let want = mark.on(&rule("web"));
        let own = described("sgr-own", want.clone());
        let foreign = described("sgr-foreign", rule("ssh"));
        let group = [own.clone(), foreign];
        let check = |id| before_revoke(ProviderKind::Alibaba, &mark, &want, id, &group);
        assert_eq!(check(Some("sgr-own")), RevokeCheck::Own(own.clone()));
        // A status that names someone else's rule is not acted on.
        assert_eq!(
            check(Some("sgr-foreign")),
            RevokeCheck::Mismatch {
                rule_id: "sgr-foreign".into()
            }
        );
        // An id the group does not hold: the object's own rule is found by
        // its identity and mark.
        assert_eq!(check(Some("sgr-gone")), RevokeCheck::Own(own.clone()));
        assert_eq!(check(None), RevokeCheck::Own(own));
    }

    #[test]
    fn a_revoke_finds_nothing_to_remove_when_only_foreign_rules_match() {
        let mark = Mark::of_uid("uid-1");
        let want = mark.on(&rule("web"));
        let planted = described("sgr-planted", rule("web"));
        for kind in [
            ProviderKind::Alibaba,
            ProviderKind::Apsara,
            ProviderKind::Baidu,
        ] {
            assert_eq!(
                before_revoke(kind, &mark, &want, None, std::slice::from_ref(&planted)),
                RevokeCheck::Gone
            );
        }
    }

    /// A recorded id whose rule carries the mark but is another rule (say,
    /// another port) is not the recorded rule.
    #[test]
    fn a_recorded_id_of_another_rule_of_the_same_object_is_a_mismatch() {
        let mark = Mark::of_uid("uid-1");
        let want = mark.on(&rule("web"));
        let mut other = want.clone();
        other.ports = Some(PortRange { from: 80, to: 80 });
        let group = [described("sgr-80", other)];
        assert_eq!(
            before_revoke(ProviderKind::Alibaba, &mark, &want, Some("sgr-80"), &group),
            RevokeCheck::Mismatch {
                rule_id: "sgr-80".into()
            }
        );
    }
}
