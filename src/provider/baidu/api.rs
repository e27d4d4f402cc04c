//! BCC security-group calls as signed requests, and the group detail as
//! normalised rules. Pure: the attempt's timestamp is a parameter.

use http::Method;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::{
    provider::{
        Authorize, DescribedRule, Direction, GroupRef, NicType, Peer, Policy, PortRange, Protocol,
        Revoke, RevokeTarget, Rule,
        credentials::Credentials,
        error::{ErrorKind, ProviderError},
        http::{HttpRequest, host_header},
    },
    sign::{
        SignedRequest,
        bce::{self, AuthContext},
        encode,
    },
};

/// How long a signature stays valid, as the official SDKs sign.
pub const EXPIRATION_SECONDS: u64 = 1800;

/// One BCC call before signing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaiduCall {
    pub method: Method,
    /// Decoded path, as signed.
    pub path: String,
    pub query: Vec<(String, String)>,
    /// JSON body, if any.
    pub body: Option<String>,
}

/// `SecurityGroupRuleModel`: sent without empty fields (as the Go SDK does);
/// read with every field optional and both id spellings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct WireRule {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub remark: String,
    pub direction: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub ethertype: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub port_range: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub protocol: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub source_ip: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub source_group_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub dest_ip: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub dest_group_id: String,
    #[serde(skip_serializing)]
    pub security_group_rule_id: String,
    #[serde(skip_serializing)]
    pub id: String,
}

#[derive(Serialize)]
struct RuleBody<'a> {
    rule: &'a WireRule,
}

fn unsupported(what: &str) -> ProviderError {
    ProviderError::new(
        ErrorKind::Invalid,
        "UnsupportedByBaidu",
        format!("Baidu BCC rules cannot {what}"),
    )
}

/// The rule in Baidu's model; refuses what BCC cannot express.
pub fn wire_rule(rule: &Rule) -> Result<WireRule, ProviderError> {
    if rule.policy == Policy::Drop {
        return Err(unsupported("drop traffic (policy Drop)"));
    }
    if rule.source_ports.is_some() {
        return Err(unsupported("match source ports"));
    }
    let protocol = match rule.protocol {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
        Protocol::Icmp => "icmp",
        Protocol::All => "all",
        Protocol::Icmpv6 | Protocol::Gre => {
            return Err(unsupported(
                "use protocols other than tcp, udp, icmp and all",
            ));
        }
    };
    let port_range = match rule.effective_ports() {
        Some(PortRange { from, to }) if from == to => from.to_string(),
        Some(PortRange { from, to }) => format!("{from}-{to}"),
        None => String::new(),
    };
    let (ethertype, ip, group) = match &rule.peer {
        Peer::Cidr(net) => ("IPv4", net.to_string(), String::new()),
        Peer::Ipv6Cidr(net) => ("IPv6", net.to_string(), String::new()),
        Peer::Group {
            owner_account: Some(_),
            ..
        }
        | Peer::Group {
            owner_id: Some(_), ..
        } => {
            return Err(unsupported("reference groups of other accounts"));
        }
        Peer::Group { id, .. } => ("IPv4", String::new(), id.clone()),
    };
    let mut wire = WireRule {
        remark: rule.description.clone(),
        direction: rule.direction.as_wire().to_string(),
        ethertype: ethertype.to_string(),
        port_range,
        protocol: protocol.to_string(),
        ..WireRule::default()
    };
    match rule.direction {
        Direction::Ingress => (wire.source_ip, wire.source_group_id) = (ip, group),
        Direction::Egress => (wire.dest_ip, wire.dest_group_id) = (ip, group),
    }
    Ok(wire)
}

fn group_path(group: &GroupRef) -> String {
    format!("/v2/securityGroup/{}", group.security_group_id)
}

fn rule_call(
    group: &GroupRef,
    flag: &str,
    rule: &Rule,
    token: &str,
) -> Result<BaiduCall, ProviderError> {
    let body = serde_json::to_string(&RuleBody {
        rule: &wire_rule(rule)?,
    })
    .map_err(|err| ProviderError::new(ErrorKind::Invalid, "UnencodableRule", err.to_string()))?;
    Ok(BaiduCall {
        method: Method::PUT,
        path: group_path(group),
        query: vec![
            (flag.to_string(), String::new()),
            ("clientToken".to_string(), token.to_string()),
        ],
        body: Some(body),
    })
}

/// `PUT /v2/securityGroup/{id}?authorizeRule&clientToken=…`.
pub fn authorize_call(call: &Authorize) -> Result<BaiduCall, ProviderError> {
    rule_call(&call.group, "authorizeRule", &call.rule, &call.client_token)
}

/// `DELETE /v2/securityGroup/rule/{ruleId}` when the id is known, else
/// `PUT …?revokeRule` with the rule (whose remark is part of Baidu's identity).
pub fn revoke_call(call: &Revoke) -> Result<BaiduCall, ProviderError> {
    match &call.target {
        RevokeTarget::Id { rule_id, .. } => Ok(BaiduCall {
            method: Method::DELETE,
            path: format!("/v2/securityGroup/rule/{rule_id}"),
            query: vec![("clientToken".to_string(), call.client_token.clone())],
            body: None,
        }),
        RevokeTarget::Attributes(rule) => {
            rule_call(&call.group, "revokeRule", rule, &call.client_token)
        }
    }
}

/// `GET /v2/securityGroup/{id}`: the group with all its rules.
pub fn describe_call(group: &GroupRef) -> BaiduCall {
    BaiduCall {
        method: Method::GET,
        path: group_path(group),
        query: Vec::new(),
        body: None,
    }
}

/// The signed request for `call` at `base` (the endpoint), for one attempt.
///
/// Signs `host`, `x-bce-date` and, with a body, `content-type` and
/// `content-length`, listed explicitly so a proxy that adds headers cannot
/// break the signature.
pub fn signed_request(
    base: Url,
    call: &BaiduCall,
    credentials: &Credentials,
    timestamp: &str,
) -> HttpRequest {
    let mut url = base;
    let prefix = url.path().trim_end_matches('/').to_string();
    let segments: Vec<String> = call.path.split('/').map(encode::percent_encode).collect();
    url.set_path(&format!("{prefix}{}", segments.join("/")));
    url.set_query(
        Some(encode::query_string(&call.query))
            .filter(|q| !q.is_empty())
            .as_deref(),
    );
    let body = call.body.clone().unwrap_or_default().into_bytes();
    let mut headers = vec![
        ("host".to_string(), host_header(&url)),
        ("x-bce-date".to_string(), timestamp.to_string()),
    ];
    if !body.is_empty() {
        headers.push((
            "content-type".to_string(),
            "application/json;charset=utf-8".to_string(),
        ));
        headers.push(("content-length".to_string(), body.len().to_string()));
    }
    if let Some(token) = &credentials.security_token {
        headers.push((
            "x-bce-security-token".to_string(),
            token.expose().to_string(),
        ));
    }
    let signed_headers: Vec<String> = headers.iter().map(|(name, _)| name.clone()).collect();
    let signed_path = format!("{prefix}{}", call.path);
    let authorization = bce::authorization(
        credentials.access_key_secret.expose(),
        &AuthContext {
            access_key_id: &credentials.access_key_id,
            timestamp,
            expiration_seconds: EXPIRATION_SECONDS,
        },
        &SignedRequest {
            method: call.method.as_str(),
            path: &signed_path,
            query: &call.query,
            headers: &headers,
            signed_headers: &signed_headers,
        },
    );
    headers.push(("authorization".to_string(), authorization));
    headers.push(("accept".to_string(), "application/json".to_string()));
    HttpRequest {
        method: call.method.clone(),
        url,
        headers,
        body,
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct GroupDetail {
    rules: Vec<WireRule>,
}

/// The rules of a group detail answer. Rules this model cannot express are
/// left out: no declared rule can match them.
pub fn parse_describe(body: &[u8]) -> Result<Vec<DescribedRule>, serde_json::Error> {
    let detail: GroupDetail = serde_json::from_slice(body)?;
    Ok(detail.rules.iter().filter_map(described_rule).collect())
}

fn described_rule(wire: &WireRule) -> Option<DescribedRule> {
    let direction = match wire.direction.to_ascii_lowercase().as_str() {
        "ingress" => Direction::Ingress,
        "egress" => Direction::Egress,
        _ => return None,
    };
    let protocol = Protocol::parse_wire(&wire.protocol)?;
    let (ip, group) = match direction {
        Direction::Ingress => (&wire.source_ip, &wire.source_group_id),
        Direction::Egress => (&wire.dest_ip, &wire.dest_group_id),
    };
    let ipv6 = wire.ethertype.eq_ignore_ascii_case("IPv6");
    let peer = if !group.is_empty() {
        Peer::Group {
            id: group.clone(),
            owner_account: None,
            owner_id: None,
        }
    } else if ip.is_empty() || ip.eq_ignore_ascii_case("all") {
        // An empty address means everyone of the rule's family.
        Peer::parse_ip(if ipv6 { "::/0" } else { "0.0.0.0/0" })?
    } else {
        Peer::parse_ip(ip)?
    };
    let rule_id = if wire.security_group_rule_id.is_empty() {
        &wire.id
    } else {
        &wire.security_group_rule_id
    };
    Some(DescribedRule {
        rule_id: rule_id.clone(),
        rule: Rule {
            direction,
            protocol,
            ports: if protocol.has_ports() {
                Some(parse_port_range(&wire.port_range)?)
            } else {
                None
            },
            source_ports: None,
            peer,
            policy: Policy::Accept,
            priority: 1,
            nic_type: NicType::Intranet,
            description: wire.remark.clone(),
        },
    })
}

/// `22`, `1-200`; empty means all ports.
fn parse_port_range(s: &str) -> Option<PortRange> {
    let s = s.trim();
    if s.is_empty() {
        return Some(PortRange::ALL);
    }
    let (from, to) = s.split_once('-').unwrap_or((s, s));
    let range = PortRange {
        from: from.trim().parse().ok()?,
        to: to.trim().parse().ok()?,
    };
    (range.from >= 1 && range.from <= range.to).then_some(range)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        provider::fixtures::ssh_from_ten,
        sign::{bce::parse_authorization, vectors},
    };

    fn group() -> GroupRef {
        GroupRef {
            region: "bj".into(),
            security_group_id: "g-nky7qeom".into(),
        }
    }

    fn revoke_by_attributes() -> BaiduCall {
        revoke_call(&Revoke {
            group: group(),
            target: RevokeTarget::Attributes(ssh_from_ten()),
            client_token: "k8s-sgr-3f1c2a9e-6b7d-4c1e-9a55-0e2f4b6d8a10".into(),
        })
        .expect("expressible")
    }

    /// Our revoke is vector C3 byte for byte: body, canonical request and signature.
    #[test]
    fn a_revoke_by_attributes_is_signed_exactly_like_vector_c3() {
        let c3 = vectors::get("C3");
        let call = revoke_by_attributes();
        assert_eq!(call.body.as_deref(), c3["body"].as_str());
        let request = signed_request(
            Url::parse("https://bcc.bj.baidubce.com").expect("url"),
            &call,
            &Credentials::new("testak", "testsk", None),
            "2025-01-02T03:04:05Z",
        );
        assert_eq!(request.method, Method::PUT);
        assert_eq!(
            request.url.as_str(),
            "https://bcc.bj.baidubce.com/v2/securityGroup/g-nky7qeom?revokeRule=&clientToken=k8s-sgr-3f1c2a9e-6b7d-4c1e-9a55-0e2f4b6d8a10"
        );
        let ours =
            parse_authorization(request.header("authorization").expect("signed")).expect("parses");
        let sdk = parse_authorization(c3["authorization"].as_str().expect("auth")).expect("parses");
        // Same signature; we list the headers explicitly where the SDK relies on the default set.
        assert_eq!(ours.signature, sdk.signature);
        assert_eq!(
            ours.signed_headers,
            ["content-length", "content-type", "host", "x-bce-date"]
        );
        assert_eq!(request.header("content-length"), Some("143"));
    }

    #[test]
    fn an_authorize_puts_the_rule_with_the_authorize_flag_and_token() {
        let call = authorize_call(&Authorize {
            group: group(),
            rule: ssh_from_ten(),
            client_token: "t-1".into(),
        })
        .expect("expressible");
        assert_eq!(
            (call.method, call.path.as_str()),
            (Method::PUT, "/v2/securityGroup/g-nky7qeom")
        );
        assert_eq!(
            call.query,
            vec![
                ("authorizeRule".into(), String::new()),
                ("clientToken".into(), "t-1".into())
            ]
        );
        assert!(
            call.body
                .expect("body")
                .starts_with(r#"{"rule":{"remark":"managed by sg-operator","direction":"ingress""#)
        );
    }

    #[test]
    fn a_revoke_by_id_deletes_the_rule_with_the_token() {
        let call = revoke_call(&Revoke {
            group: group(),
            target: RevokeTarget::Id {
                rule_id: "r-abc".into(),
                rule: ssh_from_ten(),
            },
            client_token: "t-2".into(),
        })
        .expect("expressible");
        assert_eq!(call.method, Method::DELETE);
        assert_eq!(call.path, "/v2/securityGroup/rule/r-abc");
        assert_eq!(call.query, vec![("clientToken".into(), "t-2".into())]);
        assert_eq!(call.body, None);
    }

    /// Port ranges use a hyphen and a single port stays single; egress names the destination.
    #[test]
    fn egress_ipv6_and_port_ranges_use_baidu_spellings() {
        let mut rule = ssh_from_ten();
        rule.direction = Direction::Egress;
        rule.ports = Some(PortRange {
            from: 1000,
            to: 2000,
        });
        rule.peer = Peer::parse_ip("2001:db8::/32").expect("v6");
        let wire = wire_rule(&rule).expect("expressible");
        assert_eq!(
            (wire.port_range.as_str(), wire.ethertype.as_str()),
            ("1000-2000", "IPv6")
        );
        assert_eq!(
            (wire.dest_ip.as_str(), wire.source_ip.as_str()),
            ("2001:db8::/32", "")
        );
        rule.protocol = Protocol::Icmp;
        assert_eq!(wire_rule(&rule).expect("expressible").port_range, "");
    }

    /// Admission should catch these; the client refuses them too rather than send something else.
    #[test]
    fn rules_baidu_cannot_express_are_invalid() {
        let mut drop = ssh_from_ten();
        drop.policy = Policy::Drop;
        let mut gre = ssh_from_ten();
        gre.protocol = Protocol::Gre;
        let mut source_ports = ssh_from_ten();
        source_ports.source_ports = Some(PortRange { from: 1, to: 2 });
        for rule in [drop, gre, source_ports] {
            assert_eq!(
                wire_rule(&rule).expect_err("refused").kind,
                ErrorKind::Invalid
            );
        }
    }

    /// Baidu leaves fields empty: no ports means all, no protocol means all,
    /// no address means everyone; ids come as `securityGroupRuleId` or `id`.
    #[test]
    fn described_rules_normalise_baidu_spellings() {
        let body = br#"{"id":"g-1","sgVersion":3,"rules":[
            {"remark":"managed by sg-operator","direction":"ingress","ethertype":"IPv4","portRange":"22",
             "protocol":"tcp","sourceIp":"10.0.0.0/8","securityGroupRuleId":"r-1"},
            {"remark":"","direction":"ingress","ethertype":"","portRange":"","protocol":"tcp","sourceIp":"",
             "sourceGroupId":"","id":"r-2"},
            {"remark":"x","direction":"egress","ethertype":"IPv6","portRange":"","protocol":"","destIp":"all","id":"r-3"},
            {"direction":"ingress","protocol":"tcp","portRange":"1-65535","sourceIp":"192.168.0.1","id":"r-4"},
            {"direction":"ingress","protocol":"tcp","portRange":"1-65535","sourceGroupId":"g-peer","id":"r-5"}
        ]}"#;
        let rules = parse_describe(body).expect("parses");
        assert_eq!(rules.len(), 5);
        assert_eq!(
            (rules[0].rule_id.as_str(), &rules[0].rule),
            ("r-1", &ssh_from_ten())
        );
        assert_eq!(rules[1].rule_id, "r-2");
        assert_eq!(rules[1].rule.ports, Some(PortRange::ALL));
        assert_eq!(
            rules[1].rule.peer,
            Peer::parse_ip("0.0.0.0/0").expect("any")
        );
        assert_eq!(
            (rules[2].rule.protocol, rules[2].rule.ports),
            (Protocol::All, None)
        );
        assert_eq!(rules[2].rule.peer, Peer::parse_ip("::/0").expect("any v6"));
        assert_eq!(
            rules[3].rule.peer,
            Peer::parse_ip("192.168.0.1/32").expect("host"),
            "a bare address is /32"
        );
        assert_eq!(
            rules[4].rule.peer,
            Peer::Group {
                id: "g-peer".into(),
                owner_account: None,
                owner_id: None
            }
        );
    }
}
