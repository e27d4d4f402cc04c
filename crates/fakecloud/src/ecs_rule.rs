//! An ECS security-group rule as Alibaba ECS and Apsara Stack keep it: the
//! request's own fields, checked as the ECS 2014-05-26 reference checks them
//! and stored as sent (protocol, policy and NIC type lower-cased).
//!
//! Identity is the documented matching set of RevokeSecurityGroup:
//! `IpProtocol`, `PortRange`, `SourcePortRange`, `NicType`, `Policy`, both
//! sides' CIDR blocks (a quintuple rule's `DestCidrIp` on ingress,
//! `SourceCidrIp` on egress) and the peer group with its owner. Priority and
//! description are attributes of a rule, not part of what it is.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{
    cidr::{self, Family},
    pipeline::ApiError,
    rule_json::{Declared, DeclaredPeer, Direction, PeerJson, PortsJson, RuleJson, crd_protocol},
};

/// `IpProtocol` values; Apsara Stack takes exactly these, in lower case (seed 000).
const PROTOCOLS: [&str; 6] = ["tcp", "udp", "icmp", "icmpv6", "gre", "all"];
const MAX_DESCRIPTION_CHARS: usize = 512;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct EcsRule {
    pub direction: Direction,
    pub ip_protocol: String,
    pub port_range: String,
    pub source_port_range: String,
    pub source_cidr_ip: String,
    pub ipv6_source_cidr_ip: String,
    pub source_group_id: String,
    pub source_group_owner_account: String,
    pub source_group_owner_id: String,
    pub dest_cidr_ip: String,
    pub ipv6_dest_cidr_ip: String,
    pub dest_group_id: String,
    pub dest_group_owner_account: String,
    pub dest_group_owner_id: String,
    pub policy: String,
    pub priority: u8,
    pub nic_type: String,
    pub description: String,
}

/// What decides how a group reads a rule.
#[derive(Clone, Copy, Debug)]
pub struct Reading {
    /// Apsara Stack: `IpProtocol` values are case sensitive.
    pub case_sensitive_protocol: bool,
    pub network: Network,
    pub enterprise: bool,
}

/// A group's network type: the NIC type of its rules depends on it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// `intranet` only, and the default.
    #[default]
    Vpc,
    /// `internet` (the default) or `intranet`, described one NIC type per call.
    Classic,
}

pub fn missing(name: &str) -> ApiError {
    ApiError::new(
        400,
        "MissingParameter",
        format!(
            "The input parameter \"{name}\" that is mandatory for processing this request is not supplied."
        ),
    )
}

pub fn invalid(code: &str, name: &str) -> ApiError {
    ApiError::new(
        400,
        code,
        format!("The specified parameter \"{name}\" is not valid."),
    )
}

pub fn operation_denied() -> ApiError {
    ApiError::new(
        400,
        "InvalidGroupParameter.OperationDenied",
        "The attributes Policy, SourceGroupId, DestGroupId of enterprise level security groups are not allowed to be set or modified.",
    )
}

/// The names of the peer's and the other side's fields for a direction.
struct Sides {
    peer: &'static str,
    local: &'static str,
}

fn sides(direction: Direction) -> Sides {
    match direction {
        Direction::Ingress => Sides {
            peer: "Source",
            local: "Dest",
        },
        Direction::Egress => Sides {
            peer: "Dest",
            local: "Source",
        },
    }
}

impl EcsRule {
    /// One rule from its fields (`IpProtocol`, `PortRange`, ...); `field`
    /// answers `None` for an absent or empty parameter.
    pub fn from_fields<'a>(
        direction: Direction,
        field: &dyn Fn(&str) -> Option<&'a str>,
        reading: Reading,
    ) -> Result<Self, ApiError> {
        let text = |name: &str| field(name).unwrap_or_default().to_owned();
        let protocol_text = field("IpProtocol").ok_or_else(|| missing("IpProtocol"))?;
        let ip_protocol = PROTOCOLS
            .into_iter()
            .find(|p| {
                if reading.case_sensitive_protocol {
                    *p == protocol_text
                } else {
                    p.eq_ignore_ascii_case(protocol_text)
                }
            })
            .ok_or_else(|| invalid("InvalidIpProtocol.ValueNotSupported", "IpProtocol"))?;
        let port_range = field("PortRange").ok_or_else(|| missing("PortRange"))?;
        if matches!(ip_protocol, "tcp" | "udp") {
            if parse_port_range(port_range).is_none() {
                return Err(invalid("InvalidPortRange.Malformed", "PortRange"));
            }
        } else if port_range != "-1/-1" {
            return Err(invalid("InvalidParam.PortRange", "PortRange"));
        }
        if field("SourcePortRange").is_some_and(|r| parse_port_range(r).is_none()) {
            return Err(invalid(
                "InvalidSourcePortRange.Malformed",
                "SourcePortRange",
            ));
        }
        let policy = match field("Policy").map(str::to_ascii_lowercase).as_deref() {
            None | Some("accept") => "accept",
            Some("drop") => "drop",
            Some(_) => return Err(invalid("InvalidPolicy.Malformed", "Policy")),
        };
        let priority = match field("Priority") {
            None => 1,
            Some(text) => text
                .parse::<u8>()
                .ok()
                .filter(|p| (1..=100).contains(p))
                .ok_or_else(|| invalid("InvalidPriority.Malformed", "Priority"))?,
        };
        let description = text("Description");
        if description.chars().count() > MAX_DESCRIPTION_CHARS {
            return Err(invalid(
                "InvalidSecurityGroupDiscription.Malformed",
                "Description",
            ));
        }
        let mut rule = Self {
            direction,
            ip_protocol: ip_protocol.to_owned(),
            port_range: port_range.to_owned(),
            source_port_range: text("SourcePortRange"),
            policy: policy.to_owned(),
            priority,
            description,
            ..Self::default()
        };
        let Sides { peer, local } = sides(direction);
        rule.read_peer(peer, field)?;
        for (name, family) in [
            (format!("{local}CidrIp"), Family::V4),
            (format!("Ipv6{local}CidrIp"), Family::V6),
        ] {
            if let Some(value) = field(&name) {
                if cidr::family(value) != Some(family) {
                    return Err(invalid(&format!("Invalid{local}CidrIp.Malformed"), &name));
                }
                *rule.field_mut(&name) = value.to_owned();
            }
        }
        if reading.enterprise && (field("Policy").is_some() || rule.has_group_peer()) {
            return Err(operation_denied());
        }
        rule.nic_type = nic_type(field("NicType"), reading.network, rule.has_group_peer())?;
        Ok(rule)
    }

    /// The peer: one CIDR block of either family, or a group (a CIDR block prevails).
    fn read_peer<'a>(
        &mut self,
        side: &str,
        field: &dyn Fn(&str) -> Option<&'a str>,
    ) -> Result<(), ApiError> {
        let v4_name = format!("{side}CidrIp");
        let v6_name = format!("Ipv6{side}CidrIp");
        match (field(&v4_name), field(&v6_name)) {
            (Some(_), Some(_)) => Err(invalid(&format!("InvalidParam.{side}Ip"), &v4_name)),
            (Some(v4), None) if cidr::family(v4) == Some(Family::V4) => {
                *self.field_mut(&v4_name) = v4.to_owned();
                Ok(())
            }
            (Some(_), None) => Err(invalid(&format!("Invalid{side}CidrIp.Malformed"), &v4_name)),
            (None, Some(v6)) if cidr::family(v6) == Some(Family::V6) => {
                *self.field_mut(&v6_name) = v6.to_owned();
                Ok(())
            }
            (None, Some(_)) => Err(invalid(&format!("InvalidParam.{v6_name}"), &v6_name)),
            (None, None) => {
                if field(&format!("{side}GroupId")).is_some() {
                    for name in ["GroupId", "GroupOwnerAccount", "GroupOwnerId"] {
                        let name = format!("{side}{name}");
                        *self.field_mut(&name) = field(&name).unwrap_or_default().to_owned();
                    }
                    return Ok(());
                }
                if field(&format!("{side}PrefixListId")).is_some() {
                    return Err(ApiError::new(
                        404,
                        "InvalidPrefixListId.NotFound",
                        "The specified prefix list does not exist.",
                    ));
                }
                Err(ApiError::new(
                    400,
                    &format!("MissingParameter.{side}"),
                    format!("One of {side}CidrIp, Ipv6{side}CidrIp and {side}GroupId is required."),
                ))
            }
        }
    }

    fn field_mut(&mut self, name: &str) -> &mut String {
        match name {
            "SourceCidrIp" => &mut self.source_cidr_ip,
            "Ipv6SourceCidrIp" => &mut self.ipv6_source_cidr_ip,
            "SourceGroupId" => &mut self.source_group_id,
            "SourceGroupOwnerAccount" => &mut self.source_group_owner_account,
            "SourceGroupOwnerId" => &mut self.source_group_owner_id,
            "DestCidrIp" => &mut self.dest_cidr_ip,
            "Ipv6DestCidrIp" => &mut self.ipv6_dest_cidr_ip,
            "DestGroupId" => &mut self.dest_group_id,
            "DestGroupOwnerAccount" => &mut self.dest_group_owner_account,
            "DestGroupOwnerId" => &mut self.dest_group_owner_id,
            other => unreachable!("no rule field {other}"),
        }
    }

    /// The peer group's id, owner account and owner id (empty when the peer is a CIDR block).
    pub fn peer_group(&self) -> (&str, &str, &str) {
        match self.direction {
            Direction::Ingress => (
                &self.source_group_id,
                &self.source_group_owner_account,
                &self.source_group_owner_id,
            ),
            Direction::Egress => (
                &self.dest_group_id,
                &self.dest_group_owner_account,
                &self.dest_group_owner_id,
            ),
        }
    }

    pub fn has_group_peer(&self) -> bool {
        !self.peer_group().0.is_empty()
    }

    /// The rule as request parameters, for a change that keeps what it is not given.
    pub fn wire_fields(&self) -> BTreeMap<&'static str, String> {
        BTreeMap::from([
            ("IpProtocol", self.ip_protocol.clone()),
            ("PortRange", self.port_range.clone()),
            ("SourcePortRange", self.source_port_range.clone()),
            ("SourceCidrIp", self.source_cidr_ip.clone()),
            ("Ipv6SourceCidrIp", self.ipv6_source_cidr_ip.clone()),
            ("SourceGroupId", self.source_group_id.clone()),
            (
                "SourceGroupOwnerAccount",
                self.source_group_owner_account.clone(),
            ),
            ("SourceGroupOwnerId", self.source_group_owner_id.clone()),
            ("DestCidrIp", self.dest_cidr_ip.clone()),
            ("Ipv6DestCidrIp", self.ipv6_dest_cidr_ip.clone()),
            ("DestGroupId", self.dest_group_id.clone()),
            (
                "DestGroupOwnerAccount",
                self.dest_group_owner_account.clone(),
            ),
            ("DestGroupOwnerId", self.dest_group_owner_id.clone()),
            ("Policy", self.policy.clone()),
            ("Priority", self.priority.to_string()),
            ("NicType", self.nic_type.clone()),
            ("Description", self.description.clone()),
        ])
    }

    /// The documented matching set; everything but priority and description.
    pub fn same(&self, other: &Self) -> bool {
        let identity = |r: &Self| Self {
            priority: 0,
            description: String::new(),
            ..r.clone()
        };
        identity(self) == identity(other)
    }

    /// One `Permissions.Permission[]` entry, every key present as the API has it.
    pub fn permission(&self, id: &str, created_time: &str) -> Value {
        json!({
            "SecurityGroupRuleId": id,
            "Direction": self.direction.wire(),
            "IpProtocol": self.ip_protocol.to_ascii_uppercase(),
            "PortRange": self.port_range,
            "SourceCidrIp": self.source_cidr_ip,
            "Ipv6SourceCidrIp": self.ipv6_source_cidr_ip,
            "SourceGroupId": self.source_group_id,
            "SourceGroupName": "",
            "SourceGroupOwnerAccount": self.source_group_owner_account,
            "SourcePrefixListId": "",
            "SourcePrefixListName": "",
            "SourcePortRange": self.source_port_range,
            "DestCidrIp": self.dest_cidr_ip,
            "Ipv6DestCidrIp": self.ipv6_dest_cidr_ip,
            "DestGroupId": self.dest_group_id,
            "DestGroupName": "",
            "DestGroupOwnerAccount": self.dest_group_owner_account,
            "DestPrefixListId": "",
            "DestPrefixListName": "",
            "PortRangeListId": "",
            "PortRangeListName": "",
            "NicType": self.nic_type,
            "Policy": capitalised(&self.policy),
            "Priority": self.priority.to_string(),
            "Description": self.description,
            "CreateTime": created_time,
        })
    }

    /// A rule added through the admin API, written as a client would send it.
    pub fn from_declared(declared: &Declared) -> Self {
        let range = |p: PortsJson| format!("{}/{}", p.from, p.to);
        let port_range = match declared.ports {
            Some(p) => range(p),
            None if declared.has_ports() => "1/65535".to_owned(),
            None => "-1/-1".to_owned(),
        };
        let mut rule = Self {
            direction: declared.direction,
            ip_protocol: declared.protocol.to_owned(),
            port_range,
            source_port_range: declared.source_ports.map(range).unwrap_or_default(),
            policy: declared.policy.to_owned(),
            priority: declared.priority,
            nic_type: declared.nic_type.to_owned(),
            description: declared.description.clone(),
            ..Self::default()
        };
        let side = sides(declared.direction).peer;
        match &declared.peer {
            DeclaredPeer::Cidr {
                text,
                family: Family::V4,
            } => *rule.field_mut(&format!("{side}CidrIp")) = text.clone(),
            DeclaredPeer::Cidr {
                text,
                family: Family::V6,
            } => *rule.field_mut(&format!("Ipv6{side}CidrIp")) = text.clone(),
            DeclaredPeer::Group {
                id,
                owner_account,
                owner_id,
            } => {
                *rule.field_mut(&format!("{side}GroupId")) = id.clone();
                *rule.field_mut(&format!("{side}GroupOwnerAccount")) =
                    owner_account.clone().unwrap_or_default();
                *rule.field_mut(&format!("{side}GroupOwnerId")) =
                    owner_id.clone().unwrap_or_default();
            }
        }
        rule
    }

    /// The admin API's view of the rule (the other side's CIDR blocks have no place there).
    pub fn to_json(&self) -> RuleJson {
        let (cidr, ipv6) = match self.direction {
            Direction::Ingress => (&self.source_cidr_ip, &self.ipv6_source_cidr_ip),
            Direction::Egress => (&self.dest_cidr_ip, &self.ipv6_dest_cidr_ip),
        };
        let peer = if !cidr.is_empty() {
            PeerJson::cidr(cidr)
        } else if !ipv6.is_empty() {
            PeerJson::cidr(ipv6)
        } else {
            let (id, account, owner) = self.peer_group();
            PeerJson::group(id, account, owner)
        };
        let ports = |text: &str| parse_port_range(text).map(|(from, to)| PortsJson { from, to });
        RuleJson {
            direction: self.direction.crd().to_owned(),
            protocol: crd_protocol(&self.ip_protocol),
            ports: ports(&self.port_range),
            source_ports: ports(&self.source_port_range),
            peer,
            policy: capitalised(&self.policy),
            priority: self.priority,
            nic_type: capitalised(&self.nic_type),
            description: self.description.clone(),
        }
    }
}

/// The NIC type of a rule in a group of this network (documented per network type).
fn nic_type(given: Option<&str>, network: Network, group_peer: bool) -> Result<String, ApiError> {
    let given = given.map(str::to_ascii_lowercase);
    let nic = match (network, given.as_deref()) {
        (Network::Vpc, None | Some("intranet")) => "intranet",
        (Network::Classic, None | Some("internet")) => "internet",
        (Network::Classic, Some("intranet")) => "intranet",
        _ => return Err(invalid("InvalidNicType.ValueNotSupported", "NicType")),
    };
    if group_peer && nic != "intranet" {
        // A rule between groups is always on the internal network.
        return Err(invalid("InvalidNicType.ValueNotSupported", "NicType"));
    }
    Ok(nic.to_owned())
}

fn capitalised(lower: &str) -> String {
    let mut chars = lower.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_ascii_uppercase().to_string() + chars.as_str()
    })
}

/// `start/end` with 1 <= start <= end <= 65535.
fn parse_port_range(text: &str) -> Option<(u16, u16)> {
    let (from, to) = text.split_once('/')?;
    let number = |s: &str| {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u16>().ok())
            .flatten()
    };
    let (from, to) = (number(from)?, number(to)?);
    (from >= 1 && from <= to).then_some((from, to))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PUBLIC: Reading = Reading {
        case_sensitive_protocol: false,
        network: Network::Vpc,
        enterprise: false,
    };

    fn fields<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<&'a str> + 'a {
        move |name| pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }

    fn read(
        direction: Direction,
        pairs: &[(&str, &str)],
        reading: Reading,
    ) -> Result<EcsRule, ApiError> {
        EcsRule::from_fields(direction, &fields(pairs), reading)
    }

    const SSH: [(&str, &str); 3] = [
        ("IpProtocol", "tcp"),
        ("PortRange", "22/22"),
        ("SourceCidrIp", "10.0.0.0/8"),
    ];

    #[test]
    fn ports_are_required_for_every_protocol_and_checked_for_its_kind() {
        let code = |pairs: &[(&str, &str)]| {
            read(Direction::Ingress, pairs, PUBLIC)
                .expect_err("refused")
                .code
        };
        assert_eq!(
            code(&[("IpProtocol", "tcp"), ("SourceCidrIp", "10.0.0.0/8")]),
            "MissingParameter"
        );
        assert_eq!(
            code(&[("IpProtocol", "all"), ("SourceCidrIp", "10.0.0.0/8")]),
            "MissingParameter"
        );
        assert_eq!(
            code(&[
                ("IpProtocol", "ICMP"),
                ("PortRange", "1/2"),
                ("SourceCidrIp", "10.0.0.0/8")
            ]),
            "InvalidParam.PortRange"
        );
        assert_eq!(
            code(&[
                ("IpProtocol", "UDP"),
                ("PortRange", "200/1"),
                ("SourceCidrIp", "10.0.0.0/8")
            ]),
            "InvalidPortRange.Malformed"
        );
    }

    #[test]
    fn apsara_takes_the_protocol_only_in_lower_case() {
        let apsara = Reading {
            case_sensitive_protocol: true,
            ..PUBLIC
        };
        let upper = [
            ("IpProtocol", "TCP"),
            ("PortRange", "22/22"),
            ("SourceCidrIp", "10.0.0.0/8"),
        ];
        assert!(read(Direction::Ingress, &upper, PUBLIC).is_ok());
        assert_eq!(
            read(Direction::Ingress, &upper, apsara)
                .expect_err("refused")
                .code,
            "InvalidIpProtocol.ValueNotSupported"
        );
        assert!(read(Direction::Ingress, &SSH, apsara).is_ok());
    }

    #[test]
    fn the_other_side_s_cidr_is_part_of_the_identity() {
        let plain = read(Direction::Ingress, &SSH, PUBLIC).expect("valid");
        let mut quintuple_fields = SSH.to_vec();
        quintuple_fields.push(("DestCidrIp", "192.168.0.0/16"));
        let quintuple = read(Direction::Ingress, &quintuple_fields, PUBLIC).expect("valid");
        assert_eq!(quintuple.dest_cidr_ip, "192.168.0.0/16");
        assert!(!plain.same(&quintuple));
        let mut described = SSH.to_vec();
        described.extend([("Priority", "9"), ("Description", "other")]);
        assert!(plain.same(&read(Direction::Ingress, &described, PUBLIC).expect("valid")));
    }

    #[test]
    fn egress_rules_take_their_peer_from_the_destination() {
        let egress = [
            ("IpProtocol", "all"),
            ("PortRange", "-1/-1"),
            ("DestCidrIp", "192.168.0.0/16"),
        ];
        let rule = read(Direction::Egress, &egress, PUBLIC).expect("valid");
        assert_eq!(rule.dest_cidr_ip, "192.168.0.0/16");
        assert_eq!(rule.to_json().peer.cidr.as_deref(), Some("192.168.0.0/16"));
        let none = [
            ("IpProtocol", "all"),
            ("PortRange", "-1/-1"),
            ("SourceCidrIp", "10.0.0.0/8"),
        ];
        assert_eq!(
            read(Direction::Egress, &none, PUBLIC)
                .expect_err("refused")
                .code,
            "MissingParameter.Dest"
        );
    }

    #[test]
    fn nic_types_follow_the_network_type() {
        let classic = Reading {
            network: Network::Classic,
            ..PUBLIC
        };
        assert_eq!(
            read(Direction::Ingress, &SSH, classic)
                .expect("valid")
                .nic_type,
            "internet"
        );
        assert_eq!(
            read(Direction::Ingress, &SSH, PUBLIC)
                .expect("valid")
                .nic_type,
            "intranet"
        );
        let mut internet = SSH.to_vec();
        internet.push(("NicType", "internet"));
        assert_eq!(
            read(Direction::Ingress, &internet, PUBLIC)
                .expect_err("refused")
                .code,
            "InvalidNicType.ValueNotSupported"
        );
        let group = [
            ("IpProtocol", "tcp"),
            ("PortRange", "22/22"),
            ("SourceGroupId", "sg-2"),
        ];
        assert!(read(Direction::Ingress, &group, classic).is_err());
        let mut intranet_group = group.to_vec();
        intranet_group.push(("NicType", "intranet"));
        assert!(read(Direction::Ingress, &intranet_group, classic).is_ok());
    }

    #[test]
    fn enterprise_groups_refuse_policy_and_group_peers() {
        let enterprise = Reading {
            enterprise: true,
            ..PUBLIC
        };
        assert!(read(Direction::Ingress, &SSH, enterprise).is_ok());
        let mut with_policy = SSH.to_vec();
        with_policy.push(("Policy", "accept"));
        let group = [
            ("IpProtocol", "tcp"),
            ("PortRange", "22/22"),
            ("SourceGroupId", "sg-2"),
        ];
        for pairs in [&with_policy[..], &group[..]] {
            assert_eq!(
                read(Direction::Ingress, pairs, enterprise)
                    .expect_err("refused")
                    .code,
                "InvalidGroupParameter.OperationDenied"
            );
        }
    }

    #[test]
    fn described_rules_use_the_documented_spelling() {
        let mut pairs = SSH.to_vec();
        pairs.push(("Policy", "drop"));
        let json = read(Direction::Ingress, &pairs, PUBLIC)
            .expect("valid")
            .permission("sgr-1", "2025-01-02T03:04:05Z");
        assert_eq!(json["IpProtocol"], "TCP");
        assert_eq!(json["Policy"], "Drop");
        assert_eq!(json["Priority"], "1");
        assert_eq!(json["DestCidrIp"], "");
        assert_eq!(json.as_object().map(serde_json::Map::len), Some(26));
    }
}
