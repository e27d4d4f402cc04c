//! secgroup-operator: keeps cloud security group rules in the state that
//! `SecurityGroupRule` objects declare, on Alibaba Cloud ECS, Apsara Stack and
//! Baidu BCC.

pub mod api;
pub mod cache;
pub mod cli;
pub mod controller;
pub mod crds;
pub mod fakecloud;
pub mod leader;
pub mod metrics;
pub mod provider;
pub mod review;
pub mod server;
pub mod sign;
pub mod signal;
pub mod telemetry;
pub mod token;
