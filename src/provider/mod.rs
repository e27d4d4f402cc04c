//! Cloud providers behind one small trait over a normalised rule model.
//!
//! Each provider lives in its own module with pure request building and error
//! classification: [`ecs`] is the ECS client of Alibaba Cloud and, behind
//! another gateway, of Apsara Stack ([`ecs::apsara`]); [`baidu`] is BCC.
//! Signing is in `secgroup_sign`, transport in [`http`], the settings a client
//! is built from in [`settings`] (data only), and [`connect`] builds it.

pub mod baidu;
pub mod connect;
pub mod credentials;
pub mod denials;
pub mod ecs;
pub mod endpoint;
pub mod error;
pub mod http;
pub mod model;
pub mod settings;

#[cfg(test)]
mod fake_contract;
#[cfg(test)]
pub(crate) mod fixtures;
#[cfg(test)]
mod properties;

use async_trait::async_trait;

pub use connect::connect;
pub use credentials::{Credentials, SecretString};
pub use error::{ConnectError, ErrorKind, MODIFY_UNSUPPORTED, Operation, ProviderError};
pub use model::{
    Authorize, DescribedRule, Direction, GroupRef, Modify, NicType, Peer, Policy, PortRange,
    Protocol, ProviderKind, Receipt, Revoke, RevokeTarget, Rule,
};
pub use settings::{
    ApsaraPath, ApsaraSettings, BodyMode, ProviderSettings, RateLimit, SignatureVersion, Timeouts,
};

/// One configured cloud account (one `ProviderConfig`).
///
/// Implementations retry nothing themselves beyond transport-level concerns
/// they document: the reconciler owns retries, so that a retry of an intent
/// always carries the intent's ClientToken.
#[async_trait]
pub trait Provider: Send + Sync {
    fn kind(&self) -> ProviderKind;

    /// Creates the rule. A rule that already exists is `Ok` (or an
    /// `AlreadyExists` error, which the caller treats as success).
    async fn authorize(&self, call: &Authorize) -> Result<Receipt, ProviderError>;

    /// Removes the rule. A missing rule or group is an `AlreadyGone` error,
    /// which the caller treats as success.
    async fn revoke(&self, call: &Revoke) -> Result<Receipt, ProviderError>;

    /// Sets the priority and description of the rule with `call.rule_id`.
    /// Only providers whose kind `modifies_in_place` are asked.
    async fn modify(&self, call: &Modify) -> Result<Receipt, ProviderError> {
        Err(ProviderError::new(
            ErrorKind::Invalid,
            MODIFY_UNSUPPORTED,
            format!(
                "{} rules cannot be changed in place",
                call.rule.direction.as_wire()
            ),
        ))
    }

    /// Lists every rule of the group (all pages, both directions).
    async fn describe(&self, group: &model::GroupRef) -> Result<Vec<DescribedRule>, ProviderError>;
}
