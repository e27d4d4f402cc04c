//! The operator's API: `SecurityGroupRule` and `ProviderConfig` in
//! `secgroup.dev/v1alpha1`. Types only, no IO. Admission rules live next to
//! the fields they check, as schema constraints and CEL rules, so the API
//! server refuses bad input with a message that names the field.

pub mod conditions;
pub mod provider_config;
pub mod rule;

pub use conditions::Condition;
pub use provider_config::{ProviderConfig, ProviderConfigSpec};
pub use rule::{SecurityGroupRule, SecurityGroupRuleSpec, SecurityGroupRuleStatus};

/// API group of every resource of the operator.
pub const GROUP: &str = "secgroup.dev";

/// Finalizer that guards the cloud rule: removed only after the rule is
/// revoked, or orphaned on purpose.
pub const FINALIZER: &str = "secgroup.dev/revoke";

/// Field manager of every write the operator makes.
pub const FIELD_MANAGER: &str = "secgroup-operator";
