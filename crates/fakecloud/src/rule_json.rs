//! The one JSON form of a rule that the fake cloud speaks outside the
//! providers' own wire formats: rules added and listed by the admin API.
//!
//! It mirrors the `spec.rule` of a `SecurityGroupRule` (`Ingress`, `TCP`,
//! `{from, to}`, `Accept`, ...), so a test can write the rule it declared.
//! Input is case-insensitive; output uses the CRD's spelling. Each provider
//! turns it into its own wire form ([`super::ecs_rule`], [`super::bcc_rule`]).

use serde::{Deserialize, Serialize};

use super::cidr::{self, Family};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleJson {
    pub direction: String,
    pub protocol: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<PortsJson>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ports: Option<PortsJson>,
    pub peer: PeerJson,
    #[serde(default = "default_policy")]
    pub policy: String,
    #[serde(default = "default_priority")]
    pub priority: u8,
    #[serde(default = "default_nic_type")]
    pub nic_type: String,
    #[serde(default)]
    pub description: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortsJson {
    pub from: u16,
    pub to: u16,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerJson {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cidr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6_cidr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_group_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_account: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<String>,
}

fn default_policy() -> String {
    "Accept".into()
}

fn default_priority() -> u8 {
    1
}

fn default_nic_type() -> String {
    "Intranet".into()
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    #[default]
    Ingress,
    Egress,
}

impl Direction {
    /// As both clouds write it on the wire.
    pub fn wire(self) -> &'static str {
        match self {
            Self::Ingress => "ingress",
            Self::Egress => "egress",
        }
    }

    pub fn crd(self) -> &'static str {
        match self {
            Self::Ingress => "Ingress",
            Self::Egress => "Egress",
        }
    }
}

/// The protocols a `SecurityGroupRule` declares, lower case.
const PROTOCOLS: [&str; 6] = ["tcp", "udp", "icmp", "icmpv6", "gre", "all"];

/// The CRD's spelling of a lower-case protocol name.
pub fn crd_protocol(lower: &str) -> String {
    match lower {
        "icmpv6" => "ICMPv6".into(),
        other => other.to_ascii_uppercase(),
    }
}

/// A [`RuleJson`] checked field by field: lower-case names, a peer of one kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Declared {
    pub direction: Direction,
    pub protocol: &'static str,
    pub ports: Option<PortsJson>,
    pub source_ports: Option<PortsJson>,
    pub peer: DeclaredPeer,
    pub policy: &'static str,
    pub priority: u8,
    pub nic_type: &'static str,
    pub description: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeclaredPeer {
    Cidr {
        text: String,
        family: Family,
    },
    Group {
        id: String,
        owner_account: Option<String>,
        owner_id: Option<String>,
    },
}

impl Declared {
    pub fn has_ports(&self) -> bool {
        matches!(self.protocol, "tcp" | "udp")
    }
}

impl RuleJson {
    /// Checks every field, naming the one that is wrong.
    pub fn declared(&self) -> Result<Declared, String> {
        let direction = match self.direction.to_ascii_lowercase().as_str() {
            "ingress" => Direction::Ingress,
            "egress" => Direction::Egress,
            other => return Err(format!("direction: unknown value {other:?}")),
        };
        let lower = self.protocol.to_ascii_lowercase();
        let protocol = PROTOCOLS
            .into_iter()
            .find(|p| *p == lower)
            .ok_or_else(|| format!("protocol: unknown value {:?}", self.protocol))?;
        let ports = self.ports.map(|p| checked_ports("ports", p)).transpose()?;
        let has_ports = matches!(protocol, "tcp" | "udp");
        if ports.is_some() && !has_ports {
            return Err("ports: only TCP and UDP rules have ports".into());
        }
        let source_ports = self
            .source_ports
            .map(|p| checked_ports("sourcePorts", p))
            .transpose()?;
        let policy = match self.policy.to_ascii_lowercase().as_str() {
            "accept" => "accept",
            "drop" => "drop",
            other => return Err(format!("policy: unknown value {other:?}")),
        };
        let nic_type = match self.nic_type.to_ascii_lowercase().as_str() {
            "intranet" => "intranet",
            "internet" => "internet",
            other => return Err(format!("nicType: unknown value {other:?}")),
        };
        if !(1..=100).contains(&self.priority) {
            return Err("priority: must be 1..100".into());
        }
        Ok(Declared {
            direction,
            protocol,
            ports,
            source_ports,
            peer: self.peer.declared()?,
            policy,
            priority: self.priority,
            nic_type,
            description: self.description.clone(),
        })
    }
}

impl PeerJson {
    fn declared(&self) -> Result<DeclaredPeer, String> {
        let set = [&self.cidr, &self.ipv6_cidr, &self.security_group_id]
            .iter()
            .filter(|v| v.is_some())
            .count();
        if set != 1 {
            return Err("peer: exactly one of cidr, ipv6Cidr, securityGroupId".into());
        }
        if let Some(id) = &self.security_group_id {
            return Ok(DeclaredPeer::Group {
                id: id.clone(),
                owner_account: self.owner_account.clone(),
                owner_id: self.owner_id.clone(),
            });
        }
        let (text, family) = match (&self.cidr, &self.ipv6_cidr) {
            (Some(v4), _) => (v4, Family::V4),
            (_, Some(v6)) => (v6, Family::V6),
            _ => unreachable!("exactly one peer is set"),
        };
        if cidr::family(text) != Some(family) {
            return Err(format!("peer: {text:?} is not a valid CIDR of its family"));
        }
        Ok(DeclaredPeer::Cidr {
            text: text.clone(),
            family,
        })
    }

    /// The peer of a listed rule: `text` in the field of its family.
    pub fn cidr(text: &str) -> Self {
        match cidr::family(text) {
            Some(Family::V6) => Self {
                ipv6_cidr: Some(text.to_owned()),
                ..Self::default()
            },
            _ => Self {
                cidr: Some(text.to_owned()),
                ..Self::default()
            },
        }
    }

    pub fn group(id: &str, owner_account: &str, owner_id: &str) -> Self {
        let some = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        Self {
            security_group_id: Some(id.to_owned()),
            owner_account: some(owner_account),
            owner_id: some(owner_id),
            ..Self::default()
        }
    }
}

fn checked_ports(field: &str, p: PortsJson) -> Result<PortsJson, String> {
    if p.from == 0 || p.from > p.to {
        return Err(format!("{field}: need 1 <= from <= to <= 65535"));
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(text: &str) -> RuleJson {
        serde_json::from_str(text).expect("valid rule JSON")
    }

    #[test]
    fn input_is_read_in_any_case_with_the_crd_defaults() {
        let declared = json(
            r#"{"direction":"ingress","protocol":"icmpV6","peer":{"ipv6Cidr":"2001:db8::/32"}}"#,
        )
        .declared()
        .expect("valid");
        assert_eq!(declared.direction, Direction::Ingress);
        assert_eq!(declared.protocol, "icmpv6");
        assert_eq!(
            (declared.policy, declared.priority, declared.nic_type),
            ("accept", 1, "intranet")
        );
        assert_eq!(crd_protocol(declared.protocol), "ICMPv6");
    }

    #[test]
    fn bad_rules_are_refused_with_the_field_named() {
        let refused = |text: &str| json(text).declared().expect_err("refused");
        assert!(refused(r#"{"direction":"Ingress","protocol":"TCP","peer":{"cidr":"10.0.0.0/8","securityGroupId":"sg-1"}}"#).starts_with("peer"));
        assert!(refused(r#"{"direction":"Ingress","protocol":"ICMP","ports":{"from":1,"to":2},"peer":{"cidr":"10.0.0.0/8"}}"#).starts_with("ports"));
        assert!(
            refused(r#"{"direction":"Egress","protocol":"ALL","peer":{"cidr":"2001:db8::/32"}}"#)
                .starts_with("peer")
        );
        assert!(
            refused(r#"{"direction":"Egress","protocol":"SCTP","peer":{"cidr":"10.0.0.0/8"}}"#)
                .starts_with("protocol")
        );
    }
}
