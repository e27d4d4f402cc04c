//! Turns the API's `RuleSpec` into the providers' normalised `Rule`, refusing
//! what the chosen provider cannot express. Admission cannot check these: the
//! provider type lives in another object (the ProviderConfig).

use crate::{
    api::rule as api,
    provider::{self, ProviderKind},
};

/// A spec the provider cannot express; the message names the field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unsupported(pub String);

pub fn rule(spec: &api::RuleSpec, kind: ProviderKind) -> Result<provider::Rule, Unsupported> {
    if kind == ProviderKind::Baidu {
        refuse_on_baidu(spec)?;
    }
    let peer = if let Some(cidr) = spec.peer.cidr.as_deref().or(spec.peer.ipv6_cidr.as_deref()) {
        provider::Peer::parse_ip(cidr)
            .ok_or_else(|| Unsupported(format!("spec.rule.peer: '{cidr}' is not a CIDR")))?
    } else if let Some(id) = &spec.peer.security_group_id {
        provider::Peer::Group {
            id: id.clone(),
            owner_account: spec.peer.owner_account.clone(),
            owner_id: spec.peer.owner_id.clone(),
        }
    } else {
        return Err(Unsupported(
            "spec.rule.peer must set one of cidr, ipv6Cidr or securityGroupId".into(),
        ));
    };
    Ok(provider::Rule {
        direction: match spec.direction {
            api::Direction::Ingress => provider::Direction::Ingress,
            api::Direction::Egress => provider::Direction::Egress,
        },
        protocol: match spec.protocol {
            api::Protocol::Tcp => provider::Protocol::Tcp,
            api::Protocol::Udp => provider::Protocol::Udp,
            api::Protocol::Icmp => provider::Protocol::Icmp,
            api::Protocol::Icmpv6 => provider::Protocol::Icmpv6,
            api::Protocol::Gre => provider::Protocol::Gre,
            api::Protocol::All => provider::Protocol::All,
        },
        ports: spec.ports.map(port_range),
        source_ports: spec.source_ports.map(port_range),
        peer,
        policy: match spec.policy.unwrap_or(api::Policy::Accept) {
            api::Policy::Accept => provider::Policy::Accept,
            api::Policy::Drop => provider::Policy::Drop,
        },
        priority: spec.priority.unwrap_or(1),
        nic_type: match spec.nic_type.unwrap_or(api::NicType::Intranet) {
            api::NicType::Intranet => provider::NicType::Intranet,
            api::NicType::Internet => provider::NicType::Internet,
        },
        description: spec.description.clone().unwrap_or_default(),
    })
}

fn port_range(p: api::PortRange) -> provider::PortRange {
    provider::PortRange {
        from: p.from,
        to: p.to,
    }
}

/// Baidu BCC rules have no policy, priority, NIC type, source ports or
/// cross-account peers, and know only TCP, UDP, ICMP and all protocols.
fn refuse_on_baidu(spec: &api::RuleSpec) -> Result<(), Unsupported> {
    let refuse = |field: &str, what: &str| {
        Err(Unsupported(format!(
            "{field}: {what} is not supported by Baidu BCC"
        )))
    };
    if spec.policy == Some(api::Policy::Drop) {
        return refuse("spec.rule.policy", "Drop");
    }
    if spec.priority.is_some_and(|p| p != 1) {
        return refuse("spec.rule.priority", "a priority");
    }
    if spec.nic_type == Some(api::NicType::Internet) {
        return refuse("spec.rule.nicType", "Internet");
    }
    if spec.source_ports.is_some() {
        return refuse("spec.rule.sourcePorts", "a source port range");
    }
    if spec.peer.owner_account.is_some() || spec.peer.owner_id.is_some() {
        return refuse("spec.rule.peer", "a cross-account security group");
    }
    if matches!(spec.protocol, api::Protocol::Icmpv6 | api::Protocol::Gre) {
        return refuse("spec.rule.protocol", "ICMPv6 or GRE");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> api::RuleSpec {
        serde_json::from_value(serde_json::json!({
            "direction": "Ingress", "protocol": "TCP", "ports": {"from": 443, "to": 443},
            "peer": {"cidr": "10.0.0.0/8"}, "description": "web"
        }))
        .expect("valid spec")
    }

    #[test]
    fn defaults_fill_policy_priority_and_nic_type() {
        let rule = rule(&spec(), ProviderKind::Alibaba).expect("supported");
        assert_eq!(rule.policy, provider::Policy::Accept);
        assert_eq!(rule.priority, 1);
        assert_eq!(rule.nic_type, provider::NicType::Intranet);
        assert_eq!(
            rule.peer,
            provider::Peer::parse_ip("10.0.0.0/8").expect("valid")
        );
    }

    #[test]
    fn drop_is_refused_for_baidu_naming_the_field() {
        let mut s = spec();
        s.policy = Some(api::Policy::Drop);
        assert!(rule(&s, ProviderKind::Alibaba).is_ok());
        let err = rule(&s, ProviderKind::Baidu).expect_err("Baidu has no Drop");
        assert!(err.0.contains("spec.rule.policy"), "{err}");
    }

    #[test]
    fn gre_is_refused_for_baidu() {
        let mut s = spec();
        s.protocol = api::Protocol::Gre;
        s.ports = None;
        assert!(rule(&s, ProviderKind::Baidu).is_err());
    }
}
