//! A Baidu BCC security-group rule (`SecurityGroupRuleModel`) exactly as the
//! request body gave it: checked, never rewritten.
//!
//! Identity is what the revokeRule page (seed 001) names: remark, protocol,
//! direction, portRange, sourceIp|destIp and sourceGroupId|destGroupId,
//! compared as stored strings. `tcp` is not `TCP`, `""` is not `all`, and
//! `10.0.0.1` is not `10.0.0.1/32`: whether BCC normalises any of them is
//! not documented, so the fake does not.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{
    cidr::{self, Family},
    pipeline::ApiError,
    rule_json::{Declared, DeclaredPeer, Direction, PeerJson, PortsJson, RuleJson, crd_protocol},
};

const MAX_REMARK_CHARS: usize = 255;
/// `protocol` values; empty means all protocols.
const PROTOCOLS: [&str; 5] = ["", "tcp", "udp", "icmp", "all"];

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct BccRule {
    pub remark: String,
    pub direction: String,
    pub ethertype: String,
    pub port_range: String,
    pub protocol: String,
    pub source_ip: String,
    pub source_group_id: String,
    pub dest_ip: String,
    pub dest_group_id: String,
}

pub fn bad_request(message: &str) -> ApiError {
    ApiError::new(400, "BadRequest", message)
}

impl BccRule {
    /// The rule of a `{"rule": SecurityGroupRuleModel}` body. Unset fields may be
    /// absent (Go SDK) or `null` (Python SDK).
    pub fn from_body(body: &[u8]) -> Result<Self, ApiError> {
        let json: Value = serde_json::from_slice(body).map_err(|_| {
            ApiError::new(
                400,
                "MalformedJSON",
                "The JSON you provided was not well-formed.",
            )
        })?;
        let inappropriate = || {
            ApiError::new(
                400,
                "InappropriateJSON",
                "The JSON you provided was well-formed and valid, but not appropriate for this operation.",
            )
        };
        let fields = json
            .get("rule")
            .and_then(Value::as_object)
            .ok_or_else(inappropriate)?;
        let mut object = serde_json::Map::new();
        for (name, value) in fields {
            match value {
                Value::Null => {}
                Value::String(_) => {
                    object.insert(name.clone(), value.clone());
                }
                _ => return Err(inappropriate()),
            }
        }
        let rule: Self =
            serde_json::from_value(Value::Object(object)).map_err(|_| inappropriate())?;
        rule.check()?;
        Ok(rule)
    }

    fn check(&self) -> Result<(), ApiError> {
        let direction = self.wire_direction()?;
        if !PROTOCOLS.contains(&self.protocol.as_str()) {
            return Err(bad_request("protocol is invalid."));
        }
        let family = match self.ethertype.as_str() {
            "" | "IPv4" => Family::V4,
            "IPv6" => Family::V6,
            _ => return Err(bad_request("ethertype is invalid.")),
        };
        if !self.port_range.is_empty() {
            parse_ports(&self.port_range)?;
        }
        let (ip_field, ip, group_field, group) = match direction {
            Direction::Ingress => (
                "sourceIp",
                &self.source_ip,
                "sourceGroupId",
                &self.source_group_id,
            ),
            Direction::Egress => ("destIp", &self.dest_ip, "destGroupId", &self.dest_group_id),
        };
        if !ip.is_empty() && !group.is_empty() {
            return Err(bad_request(&format!(
                "{ip_field} and {group_field} are mutually exclusive."
            )));
        }
        if !ip.is_empty() && ip != "all" && cidr::family(ip) != Some(family) {
            return Err(ApiError::new(
                400,
                "SecurityGroup.RuleCIDRAddressError",
                "The cidr address of security group rule is invalid.",
            ));
        }
        if self.remark.chars().count() > MAX_REMARK_CHARS {
            return Err(ApiError::new(
                400,
                "SecurityGroup.RuleRemarkTooLong",
                "Security group description is too long.",
            ));
        }
        Ok(())
    }

    fn wire_direction(&self) -> Result<Direction, ApiError> {
        match self.direction.as_str() {
            "ingress" => Ok(Direction::Ingress),
            "egress" => Ok(Direction::Egress),
            _ => Err(bad_request("direction is invalid.")),
        }
    }

    /// The documented identity, string for string.
    pub fn same(&self, other: &Self) -> bool {
        let identity = |r: &Self| Self {
            ethertype: String::new(),
            ..r.clone()
        };
        identity(self) == identity(other)
    }

    /// A `SecurityGroupRuleModel` as the API describes it.
    pub fn described(&self, group_id: &str, rule_id: &str, created_time: &str) -> Value {
        json!({
            "securityGroupRuleId": rule_id,
            "securityGroupId": group_id,
            "remark": self.remark,
            "direction": self.direction,
            "ethertype": self.ethertype,
            "portRange": self.port_range,
            "protocol": self.protocol,
            "sourceIp": self.source_ip,
            "sourceGroupId": self.source_group_id,
            "destIp": self.dest_ip,
            "destGroupId": self.dest_group_id,
            "createdTime": created_time,
            "updatedTime": created_time,
        })
    }

    /// A rule added through the admin API, written as the Go SDK would send it.
    pub fn from_declared(declared: &Declared) -> Self {
        let port_range = match declared.ports {
            Some(PortsJson { from, to }) if from == to => from.to_string(),
            Some(PortsJson { from, to }) => format!("{from}-{to}"),
            None => String::new(),
        };
        let (ip, group, ethertype) = match &declared.peer {
            DeclaredPeer::Cidr { text, family } => (
                text.clone(),
                String::new(),
                if *family == Family::V6 {
                    "IPv6"
                } else {
                    "IPv4"
                },
            ),
            DeclaredPeer::Group { id, .. } => (String::new(), id.clone(), "IPv4"),
        };
        let mut rule = Self {
            remark: declared.description.clone(),
            direction: declared.direction.wire().to_owned(),
            ethertype: ethertype.to_owned(),
            port_range,
            protocol: declared.protocol.to_owned(),
            ..Self::default()
        };
        match declared.direction {
            Direction::Ingress => (rule.source_ip, rule.source_group_id) = (ip, group),
            Direction::Egress => (rule.dest_ip, rule.dest_group_id) = (ip, group),
        }
        rule
    }

    /// The admin API's view: an empty or `all` address is everywhere of the ethertype.
    pub fn to_json(&self) -> RuleJson {
        let direction = self.wire_direction().unwrap_or_default();
        let (ip, group) = match direction {
            Direction::Ingress => (&self.source_ip, &self.source_group_id),
            Direction::Egress => (&self.dest_ip, &self.dest_group_id),
        };
        let peer = if !group.is_empty() {
            PeerJson::group(group, "", "")
        } else if ip.is_empty() || ip == "all" {
            PeerJson::cidr(if self.ethertype == "IPv6" {
                "::/0"
            } else {
                "0.0.0.0/0"
            })
        } else {
            PeerJson::cidr(ip)
        };
        let protocol = if self.protocol.is_empty() {
            "ALL".to_owned()
        } else {
            crd_protocol(&self.protocol)
        };
        let has_ports = matches!(self.protocol.as_str(), "tcp" | "udp");
        RuleJson {
            direction: direction.crd().to_owned(),
            protocol,
            ports: has_ports
                .then(|| parse_ports(&self.port_range).ok().flatten())
                .flatten(),
            source_ports: None,
            peer,
            policy: "Accept".into(),
            priority: 1,
            nic_type: "Intranet".into(),
            description: self.remark.clone(),
        }
    }
}

/// `80` or `1-65535`; empty means all ports.
fn parse_ports(text: &str) -> Result<Option<PortsJson>, ApiError> {
    if text.is_empty() {
        return Ok(None);
    }
    let (from, to) = text.split_once('-').unwrap_or((text, text));
    let number = |s: &str| {
        s.parse::<u32>().map_err(|_| {
            ApiError::new(
                400,
                "SecurityGroup.RulePortInvalid",
                "The value of security group rule port must be number.",
            )
        })
    };
    let (from, to) = (number(from)?, number(to)?);
    let in_range = |p: u32| (1..=65535).contains(&p);
    if !in_range(from) || !in_range(to) {
        return Err(ApiError::new(
            400,
            "SecurityGroup.RulePortRangeInvalid",
            "The value of security group rule port is exceeded.",
        ));
    }
    if from > to {
        return Err(ApiError::new(
            400,
            "SecurityGroup.RulePortOrderInvalid",
            "The order of security group rule port is incorrect.",
        ));
    }
    let port = |p: u32| u16::try_from(p).expect("checked to be a port");
    Ok(Some(PortsJson {
        from: port(from),
        to: port(to),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(json: &str) -> Result<BccRule, ApiError> {
        BccRule::from_body(json.as_bytes())
    }

    #[test]
    fn python_nulls_and_go_omissions_read_the_same() {
        let python = rule(
            r#"{"rule":{"remark":"r","direction":"ingress","ethertype":"IPv4","portRange":"22","protocol":"tcp","sourceGroupId":null,"sourceIp":"10.0.0.0/8","destGroupId":null,"destIp":null}}"#,
        );
        let go = rule(
            r#"{"rule":{"remark":"r","direction":"ingress","ethertype":"IPv4","portRange":"22","protocol":"tcp","sourceIp":"10.0.0.0/8"}}"#,
        );
        assert_eq!(python.expect("valid"), go.expect("valid"));
    }

    #[test]
    fn port_errors_use_the_documented_codes() {
        let code = |ports: &str| parse_ports(ports).expect_err("refused").code;
        assert_eq!(code("x"), "SecurityGroup.RulePortInvalid");
        assert_eq!(code("0-80"), "SecurityGroup.RulePortRangeInvalid");
        assert_eq!(code("90-80"), "SecurityGroup.RulePortOrderInvalid");
        assert_eq!(
            parse_ports("1-65535").expect("valid"),
            Some(PortsJson { from: 1, to: 65535 })
        );
    }

    #[test]
    fn identity_compares_the_stored_strings() {
        let stored = rule(r#"{"rule":{"remark":"web","direction":"ingress","portRange":"22","protocol":"tcp","sourceIp":"10.0.0.1"}}"#).expect("valid");
        let same = rule(r#"{"rule":{"remark":"web","direction":"ingress","ethertype":"IPv4","portRange":"22","protocol":"tcp","sourceIp":"10.0.0.1"}}"#).expect("valid");
        assert!(stored.same(&same));
        for other in [
            r#"{"rule":{"remark":"web","direction":"ingress","portRange":"22","protocol":"tcp","sourceIp":"10.0.0.1/32"}}"#,
            r#"{"rule":{"remark":"web ","direction":"ingress","portRange":"22","protocol":"tcp","sourceIp":"10.0.0.1"}}"#,
            r#"{"rule":{"remark":"web","direction":"ingress","portRange":"22-22","protocol":"tcp","sourceIp":"10.0.0.1"}}"#,
        ] {
            assert!(!stored.same(&rule(other).expect("valid")), "{other}");
        }
        let any = rule(r#"{"rule":{"direction":"ingress","protocol":""}}"#).expect("valid");
        let all = rule(r#"{"rule":{"direction":"ingress","protocol":"all"}}"#).expect("valid");
        assert!(!any.same(&all));
    }

    #[test]
    fn values_are_case_sensitive_and_addresses_of_the_ethertype() {
        assert_eq!(
            rule(r#"{"rule":{"direction":"ingress","protocol":"TCP"}}"#)
                .expect_err("refused")
                .code,
            "BadRequest"
        );
        let wrong_family = rule(r#"{"rule":{"direction":"ingress","sourceIp":"2001:db8::/32"}}"#);
        assert_eq!(
            wrong_family.expect_err("refused").code,
            "SecurityGroup.RuleCIDRAddressError"
        );
        let v6 = rule(r#"{"rule":{"direction":"ingress","ethertype":"IPv6","protocol":""}}"#)
            .expect("valid");
        assert_eq!(v6.to_json().peer.ipv6_cidr.as_deref(), Some("::/0"));
        assert_eq!(v6.to_json().protocol, "ALL");
    }
}
