//! Permission denials, judged per security group.
//!
//! Both clouds scope permissions to resources (a RAM policy on
//! `acs:ecs:…:securitygroup/{id}`, a BCE IAM policy per instance), so one
//! denied group says nothing about the others. A denial stalls the rule
//! that met it (`Invalid`) until denials come back from more than one group
//! within [`WINDOW`]; only then are the credentials themselves taken to lack
//! the permission (`Unauthorized`), which pauses every rule of the config.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use super::error::{ErrorKind, ProviderError};

/// How long a denial on a group counts towards "denied everywhere".
pub const WINDOW: Duration = Duration::from_secs(600);

/// The groups of one client (one ProviderConfig) that denials came from.
#[derive(Debug, Default)]
pub struct Denials {
    groups: Mutex<HashMap<String, Instant>>,
}

impl Denials {
    /// `err` as it should be acted on, when it is a permission denial on
    /// `group` (the provider's code `denial_code`); any other error unchanged.
    pub fn judge(&self, group: &str, denial_code: &str, err: ProviderError) -> ProviderError {
        if err.code != denial_code {
            return err;
        }
        let now = Instant::now();
        let others = {
            let mut groups = self
                .groups
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            groups.retain(|_, at| now.duration_since(*at) < WINDOW);
            groups.insert(group.to_owned(), now);
            groups.len() - 1
        };
        if others > 0 {
            ProviderError {
                kind: ErrorKind::Unauthorized,
                ..err
            }
        } else {
            let message = format!(
                "{} (denied on security group {group} only: grant the permission on it; \
                 denials on more groups pause every rule of the ProviderConfig)",
                err.message
            );
            ProviderError {
                kind: ErrorKind::Invalid,
                message,
                ..err
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn denied() -> ProviderError {
        ProviderError::new(
            ErrorKind::Unauthorized,
            "Forbidden.RAM",
            "User not authorized",
        )
    }

    #[test]
    fn a_denial_on_one_group_stalls_only_that_rule() {
        let denials = Denials::default();
        for _ in 0..3 {
            let err = denials.judge("sg-1", "Forbidden.RAM", denied());
            assert_eq!(err.kind, ErrorKind::Invalid);
            assert!(err.message.contains("sg-1"), "{}", err.message);
        }
    }

    #[test]
    fn denials_on_two_groups_are_the_credentials() {
        let denials = Denials::default();
        assert_eq!(
            denials.judge("sg-1", "Forbidden.RAM", denied()).kind,
            ErrorKind::Invalid
        );
        assert_eq!(
            denials.judge("sg-2", "Forbidden.RAM", denied()).kind,
            ErrorKind::Unauthorized
        );
    }

    #[test]
    fn other_errors_pass_unchanged() {
        let denials = Denials::default();
        let other = ProviderError::new(ErrorKind::Unauthorized, "SignatureDoesNotMatch", "bad");
        assert_eq!(denials.judge("sg-1", "Forbidden.RAM", other.clone()), other);
        assert_eq!(
            denials.judge("sg-2", "Forbidden.RAM", denied()).kind,
            ErrorKind::Invalid,
            "a different code did not count as a denial"
        );
    }
}
