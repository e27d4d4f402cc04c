//! secgroup-operator: keeps cloud security group rules in the state that
//! `SecurityGroupRule` objects declare, on Alibaba Cloud ECS, Apsara Stack and
//! Baidu BCC.

pub mod fakecloud;
pub mod provider;
pub mod sign;
