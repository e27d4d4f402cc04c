//! The one JSON form of a rule that the fake cloud speaks outside the
//! providers' own wire formats: in the admin API and in the `--state` file.
//!
//! It mirrors the `spec.rule` of a `SecurityGroupRule` (`Ingress`, `TCP`,
//! `{from, to}`, `Accept`, ...), so a test can write the rule it declared.
//! Input is case-insensitive; output uses the CRD's spelling.

use serde::{Deserialize, Serialize};

use secgroup_operator::provider::{Direction, NicType, Peer, Policy, PortRange, Protocol, Rule};

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

impl TryFrom<&RuleJson> for Rule {
    type Error = String;

    fn try_from(json: &RuleJson) -> Result<Self, String> {
        let direction = match json.direction.to_ascii_lowercase().as_str() {
            "ingress" => Direction::Ingress,
            "egress" => Direction::Egress,
            other => return Err(format!("direction: unknown value {other:?}")),
        };
        let protocol = Protocol::parse_wire(&json.protocol)
            .filter(|_| !json.protocol.is_empty())
            .ok_or_else(|| format!("protocol: unknown value {:?}", json.protocol))?;
        let ports = json.ports.map(|p| checked_ports("ports", p)).transpose()?;
        if ports.is_some() && !protocol.has_ports() {
            return Err("ports: only TCP and UDP rules have ports".into());
        }
        let source_ports = json
            .source_ports
            .map(|p| checked_ports("sourcePorts", p))
            .transpose()?;
        let policy = match json.policy.to_ascii_lowercase().as_str() {
            "accept" => Policy::Accept,
            "drop" => Policy::Drop,
            other => return Err(format!("policy: unknown value {other:?}")),
        };
        let nic_type = match json.nic_type.to_ascii_lowercase().as_str() {
            "intranet" => NicType::Intranet,
            "internet" => NicType::Internet,
            other => return Err(format!("nicType: unknown value {other:?}")),
        };
        if !(1..=100).contains(&json.priority) {
            return Err("priority: must be 1..100".into());
        }
        Ok(Rule {
            direction,
            protocol,
            ports,
            source_ports,
            peer: peer_from_json(&json.peer)?,
            policy,
            priority: json.priority,
            nic_type,
            description: json.description.clone(),
        })
    }
}

fn checked_ports(field: &str, p: PortsJson) -> Result<PortRange, String> {
    if p.from == 0 || p.from > p.to {
        return Err(format!("{field}: need 1 <= from <= to <= 65535"));
    }
    Ok(PortRange {
        from: p.from,
        to: p.to,
    })
}

fn peer_from_json(json: &PeerJson) -> Result<Peer, String> {
    let set = [&json.cidr, &json.ipv6_cidr, &json.security_group_id]
        .iter()
        .filter(|v| v.is_some())
        .count();
    if set != 1 {
        return Err("peer: exactly one of cidr, ipv6Cidr, securityGroupId".into());
    }
    if let Some(id) = &json.security_group_id {
        return Ok(Peer::Group {
            id: id.clone(),
            owner_account: json.owner_account.clone(),
            owner_id: json.owner_id.clone(),
        });
    }
    let (text, want_v6) = match (&json.cidr, &json.ipv6_cidr) {
        (Some(v4), _) => (v4, false),
        (_, Some(v6)) => (v6, true),
        _ => unreachable!("exactly one peer is set"),
    };
    match Peer::parse_ip(text) {
        Some(peer @ Peer::Cidr(_)) if !want_v6 => Ok(peer),
        Some(peer @ Peer::Ipv6Cidr(_)) if want_v6 => Ok(peer),
        _ => Err(format!("peer: {text:?} is not a valid CIDR of its family")),
    }
}

impl From<&Rule> for RuleJson {
    fn from(rule: &Rule) -> Self {
        let peer = match &rule.peer {
            Peer::Cidr(net) => PeerJson {
                cidr: Some(net.to_string()),
                ..PeerJson::default()
            },
            Peer::Ipv6Cidr(net) => PeerJson {
                ipv6_cidr: Some(net.to_string()),
                ..PeerJson::default()
            },
            Peer::Group {
                id,
                owner_account,
                owner_id,
            } => PeerJson {
                security_group_id: Some(id.clone()),
                owner_account: owner_account.clone(),
                owner_id: owner_id.clone(),
                ..PeerJson::default()
            },
        };
        let ports = |p: PortRange| PortsJson {
            from: p.from,
            to: p.to,
        };
        Self {
            direction: match rule.direction {
                Direction::Ingress => "Ingress",
                Direction::Egress => "Egress",
            }
            .into(),
            protocol: rule.protocol.name().into(),
            ports: rule.effective_ports().map(ports),
            source_ports: rule.source_ports.map(ports),
            peer,
            policy: match rule.policy {
                Policy::Accept => "Accept",
                Policy::Drop => "Drop",
            }
            .into(),
            priority: rule.priority,
            nic_type: match rule.nic_type {
                NicType::Intranet => "Intranet",
                NicType::Internet => "Internet",
            }
            .into(),
            description: rule.description.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(text: &str) -> RuleJson {
        serde_json::from_str(text).expect("valid rule JSON")
    }

    #[test]
    fn a_rule_survives_the_round_trip_through_json() {
        let input = json(
            r#"{"direction":"ingress","protocol":"tcp","ports":{"from":22,"to":22},
                "peer":{"cidr":"10.1.2.3/8"},"policy":"drop","priority":7,"description":"ssh"}"#,
        );
        let rule = Rule::try_from(&input).expect("valid");
        let output = RuleJson::from(&rule);
        assert_eq!(output.direction, "Ingress");
        assert_eq!(output.peer.cidr.as_deref(), Some("10.0.0.0/8"));
        assert_eq!(output.policy, "Drop");
        assert_eq!(Rule::try_from(&output), Ok(rule));
    }

    #[test]
    fn bad_rules_are_refused_with_the_field_named() {
        let two_peers = json(
            r#"{"direction":"Ingress","protocol":"TCP","peer":{"cidr":"10.0.0.0/8","securityGroupId":"sg-1"}}"#,
        );
        assert!(
            Rule::try_from(&two_peers)
                .expect_err("refused")
                .starts_with("peer")
        );
        let icmp_ports = json(
            r#"{"direction":"Ingress","protocol":"ICMP","ports":{"from":1,"to":2},"peer":{"cidr":"10.0.0.0/8"}}"#,
        );
        assert!(
            Rule::try_from(&icmp_ports)
                .expect_err("refused")
                .starts_with("ports")
        );
        let v6_as_v4 =
            json(r#"{"direction":"Egress","protocol":"ALL","peer":{"cidr":"2001:db8::/32"}}"#);
        assert!(
            Rule::try_from(&v6_as_v4)
                .expect_err("refused")
                .starts_with("peer")
        );
    }
}
