//! The normalised rule model every provider speaks.
//!
//! Providers spell the same rule differently (`22/22` vs `22`, `Accept` vs
//! `accept`, `""` vs `1-65535`). Clients translate their wire form into these
//! types once, so comparing a described rule with the declared one is a plain
//! equality on canonical values and never reports false drift.

use std::{fmt, net::IpAddr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// Which cloud a `ProviderConfig` talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProviderKind {
    Alibaba,
    Apsara,
    Baidu,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Alibaba => "alibaba",
            Self::Apsara => "apsarastack",
            Self::Baidu => "baidu",
        }
    }

    /// Whether `have` (described by the provider) is the cloud rule that `want`
    /// declares, using the provider's own notion of rule identity.
    ///
    /// Alibaba matches on peer, ports, protocol, policy, NIC type and source
    /// ports; priority and description are not part of its identity. Baidu's
    /// identity is remark, protocol, direction, port range and peer; the
    /// remark without leading and trailing blanks, which BCC drops, or a
    /// declared " web " would never match the "web" it describes.
    /// Whether a change of only priority or description can be made to the
    /// rule in place, by its id. Apsara Stack's gateway documents neither rule
    /// ids nor `ModifySecurityGroupRule`, and on Baidu the remark is identity.
    pub fn modifies_in_place(self) -> bool {
        self == Self::Alibaba
    }

    pub fn same_rule(self, want: &Rule, have: &Rule) -> bool {
        let common = want.direction == have.direction
            && want.protocol == have.protocol
            && want.effective_ports() == have.effective_ports()
            && want.peer.same_as(&have.peer);
        match self {
            Self::Alibaba | Self::Apsara => {
                common
                    && want.policy == have.policy
                    && want.nic_type == have.nic_type
                    && want.source_ports == have.source_ports
            }
            Self::Baidu => common && want.description.trim() == have.description.trim(),
        }
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    /// Lower-case wire form shared by both clouds (`ingress`, `egress`).
    pub fn as_wire(self) -> &'static str {
        match self {
            Self::Ingress => "ingress",
            Self::Egress => "egress",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Icmp,
    Icmpv6,
    Gre,
    All,
}

impl Protocol {
    /// The spelling of the CRD and of Alibaba's `IpProtocol`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Tcp => "TCP",
            Self::Udp => "UDP",
            Self::Icmp => "ICMP",
            Self::Icmpv6 => "ICMPv6",
            Self::Gre => "GRE",
            Self::All => "ALL",
        }
    }

    /// Whether the protocol carries ports (only then may a rule name them).
    pub fn has_ports(self) -> bool {
        matches!(self, Self::Tcp | Self::Udp)
    }

    /// Parses any provider spelling, case-insensitively (`tcp`, `TCP`, `all`, `-1`, empty = all).
    pub fn parse_wire(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "tcp" | "6" => Self::Tcp,
            "udp" | "17" => Self::Udp,
            "icmp" | "1" => Self::Icmp,
            "icmpv6" | "58" => Self::Icmpv6,
            "gre" | "47" => Self::Gre,
            "all" | "" | "-1" => Self::All,
            _ => return None,
        })
    }
}

/// An inclusive port range, `from <= to`, both in 1..=65535.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PortRange {
    pub from: u16,
    pub to: u16,
}

impl PortRange {
    pub const ALL: Self = Self { from: 1, to: 65535 };
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Peer {
    /// An IPv4 network, stored truncated to its prefix (`10.1.2.3/8` is `10.0.0.0/8`).
    Cidr(Ipv4Net),
    /// An IPv6 network, stored truncated and therefore compared in canonical form.
    Ipv6Cidr(Ipv6Net),
    /// Another security group, optionally in another account (Alibaba).
    Group {
        id: String,
        owner_account: Option<String>,
        owner_id: Option<String>,
    },
}

impl Peer {
    /// Parses an address or CIDR as a provider returns it: a bare address is a
    /// host route (`/32` or `/128`), and the network is truncated to its prefix.
    pub fn parse_ip(s: &str) -> Option<Self> {
        let s = s.trim();
        let net = match s.parse::<IpNet>() {
            Ok(net) => net,
            Err(_) => IpNet::from(s.parse::<IpAddr>().ok()?),
        };
        Some(match net.trunc() {
            IpNet::V4(v4) => Self::Cidr(v4),
            IpNet::V6(v6) => Self::Ipv6Cidr(v6),
        })
    }
}

impl Peer {
    /// Whether two peers name the same thing. A group's owner account and
    /// owner id count only where both sides state them: Alibaba describes a
    /// rule with the owner account and never the owner id, so a rule
    /// declared with `ownerId` would otherwise never match what it became.
    pub fn same_as(&self, other: &Self) -> bool {
        let agree = |a: &Option<String>, b: &Option<String>| a.is_none() || b.is_none() || a == b;
        match (self, other) {
            (
                Self::Group {
                    id,
                    owner_account,
                    owner_id,
                },
                Self::Group {
                    id: other_id,
                    owner_account: other_account,
                    owner_id: other_owner_id,
                },
            ) => {
                id == other_id
                    && agree(owner_account, other_account)
                    && agree(owner_id, other_owner_id)
            }
            _ => self == other,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Policy {
    Accept,
    Drop,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NicType {
    Intranet,
    Internet,
}

/// One security group rule in canonical form.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Rule {
    pub direction: Direction,
    pub protocol: Protocol,
    /// `None` means the provider's "all ports" (only meaningful for TCP/UDP).
    pub ports: Option<PortRange>,
    pub source_ports: Option<PortRange>,
    pub peer: Peer,
    pub policy: Policy,
    pub priority: u8,
    pub nic_type: NicType,
    /// Alibaba `Description`, Baidu `remark` (part of Baidu's rule identity).
    pub description: String,
}

impl Rule {
    /// Ports as the provider stores them: TCP/UDP without ports means 1-65535,
    /// and other protocols have none.
    pub fn effective_ports(&self) -> Option<PortRange> {
        if self.protocol.has_ports() {
            Some(self.ports.unwrap_or(PortRange::ALL))
        } else {
            None
        }
    }
}

/// Where a rule lives.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct GroupRef {
    pub region: String,
    pub security_group_id: String,
}

/// A rule as the provider describes it, with the id it assigned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DescribedRule {
    pub rule_id: String,
    pub rule: Rule,
}

/// Create `rule` in `group`; "already exists" is success.
#[derive(Clone, Debug)]
pub struct Authorize {
    pub group: GroupRef,
    pub rule: Rule,
    pub client_token: String,
}

/// Remove a rule from `group`; "already gone" is success.
#[derive(Clone, Debug)]
pub struct Revoke {
    pub group: GroupRef,
    pub target: RevokeTarget,
    pub client_token: String,
}

/// Change a rule's priority and description in place, by its id
/// (Alibaba `ModifySecurityGroupRule`): the rule never leaves the group.
#[derive(Clone, Debug)]
pub struct Modify {
    pub group: GroupRef,
    pub rule_id: String,
    /// The rule as it is to be: its direction picks the action, its priority
    /// and description are set.
    pub rule: Rule,
    pub client_token: String,
}

#[derive(Clone, Debug)]
pub enum RevokeTarget {
    /// By the provider's rule id (Alibaba `SecurityGroupRuleId.N`, Baidu delete-by-id).
    ///
    /// `rule` is the rule the id was recorded for: its direction picks
    /// Alibaba's action (`RevokeSecurityGroup` or `…Egress`), and Apsara Stack,
    /// whose gateway knows no rule ids, revokes by its attributes instead.
    Id { rule_id: String, rule: Rule },
    /// By the rule's attributes, when no id is known.
    Attributes(Rule),
}

impl RevokeTarget {
    /// The rule being revoked, whichever way it is addressed.
    pub fn rule(&self) -> &Rule {
        match self {
            Self::Id { rule, .. } | Self::Attributes(rule) => rule,
        }
    }
}

/// What a successful call returned that is worth recording.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Receipt {
    pub request_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(from: u16, to: u16) -> Rule {
        Rule {
            direction: Direction::Ingress,
            protocol: Protocol::Tcp,
            ports: Some(PortRange { from, to }),
            source_ports: None,
            peer: Peer::parse_ip("10.0.0.0/8").expect("valid"),
            policy: Policy::Accept,
            priority: 1,
            nic_type: NicType::Intranet,
            description: "web".into(),
        }
    }

    #[test]
    fn peers_compare_in_canonical_form() {
        assert_eq!(Peer::parse_ip("10.1.2.3/8"), Peer::parse_ip("10.0.0.0/8"));
        assert_eq!(
            Peer::parse_ip("192.168.0.1"),
            Peer::parse_ip("192.168.0.1/32")
        );
        assert_eq!(
            Peer::parse_ip("2001:DB8:0:0::/32"),
            Peer::parse_ip("2001:db8::/32")
        );
        assert_ne!(Peer::parse_ip("10.0.0.0/8"), Peer::parse_ip("10.0.0.0/16"));
        assert_eq!(Peer::parse_ip("not-an-ip"), None);
    }

    #[test]
    fn tcp_without_ports_is_the_full_range() {
        let mut all = tcp(1, 65535);
        all.ports = None;
        assert!(ProviderKind::Baidu.same_rule(&all, &tcp(1, 65535)));
        assert!(!ProviderKind::Baidu.same_rule(&all, &tcp(1, 200)));
    }

    #[test]
    fn alibaba_identity_ignores_priority_and_description() {
        let mut other = tcp(22, 22);
        other.priority = 7;
        other.description = "changed".into();
        assert!(ProviderKind::Alibaba.same_rule(&tcp(22, 22), &other));
        other.policy = Policy::Drop;
        assert!(!ProviderKind::Alibaba.same_rule(&tcp(22, 22), &other));
    }

    #[test]
    fn baidu_identity_includes_the_remark() {
        let mut other = tcp(22, 22);
        other.description = "changed".into();
        assert!(!ProviderKind::Baidu.same_rule(&tcp(22, 22), &other));
    }

    /// Alibaba describes a cross-account peer by its owner account only.
    #[test]
    fn a_peer_owner_counts_only_where_both_sides_state_it() {
        let group = |account: Option<&str>, id: Option<&str>| Peer::Group {
            id: "sg-peer".into(),
            owner_account: account.map(str::to_owned),
            owner_id: id.map(str::to_owned),
        };
        assert!(group(None, Some("123")).same_as(&group(Some("acct"), None)));
        assert!(group(Some("acct"), Some("123")).same_as(&group(Some("acct"), None)));
        assert!(!group(Some("acct"), None).same_as(&group(Some("other"), None)));
        assert!(!group(None, Some("1")).same_as(&group(None, Some("2"))));
    }

    /// BCC keeps the remark without surrounding blanks: the rule it
    /// describes is still the one declared, so drift is not reported for it.
    #[test]
    fn baidu_identity_ignores_blanks_around_the_remark() {
        let mut declared = tcp(22, 22);
        declared.description = "\t web https ".into();
        let mut described = tcp(22, 22);
        described.description = "web https".into();
        assert!(ProviderKind::Baidu.same_rule(&declared, &described));
    }

    #[test]
    fn protocols_parse_from_any_provider_spelling() {
        assert_eq!(Protocol::parse_wire("TCP"), Some(Protocol::Tcp));
        assert_eq!(Protocol::parse_wire("icmpv6"), Some(Protocol::Icmpv6));
        assert_eq!(Protocol::parse_wire(""), Some(Protocol::All));
        assert_eq!(Protocol::parse_wire("sctp"), None);
    }
}
