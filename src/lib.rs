//! secgroup-operator: keeps cloud security group rules in the state that
//! `SecurityGroupRule` objects declare, on Alibaba Cloud ECS, Apsara Stack and
//! Baidu BCC.

pub mod api;
pub mod cache;
pub mod cli;
pub mod controller;
pub mod crds;
pub mod leader;
pub mod metrics;
pub mod provider;
pub mod server;
pub mod signal;
pub mod telemetry;
pub mod token;

/// The signers, shared with the fake cloud (`crates/sign`).
pub use secgroup_sign as sign;
