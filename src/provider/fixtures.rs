//! Test fixtures shared by the provider modules.

use std::net::{Ipv4Addr, Ipv6Addr};

use bytes::Bytes;
use http::HeaderMap;
use ipnet::{Ipv4Net, Ipv6Net};
use proptest::{option, prelude::*};

use super::{
    Direction, ErrorKind, GroupRef, NicType, Operation, Peer, Policy, PortRange, Protocol,
    ProviderError, ProviderKind, Rule,
    http::{HttpRequest, HttpResponse, MAX_RETRY_AFTER},
};

/// The rule of the SDK vectors A2, B2, C2 and C3: SSH from 10.0.0.0/8.
pub fn ssh_from_ten() -> Rule {
    Rule {
        direction: Direction::Ingress,
        protocol: Protocol::Tcp,
        ports: Some(PortRange { from: 22, to: 22 }),
        source_ports: None,
        peer: Peer::parse_ip("10.0.0.0/8").expect("cidr"),
        policy: Policy::Accept,
        priority: 1,
        nic_type: NicType::Intranet,
        description: "managed by sg-operator".into(),
    }
}

/// A provider answer.
pub fn response(status: u16, body: &str, headers: &[(&'static str, &str)]) -> HttpResponse {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        map.insert(*name, value.parse().expect("header value"));
    }
    HttpResponse {
        status,
        headers: map,
        body: Bytes::from(body.to_string()),
    }
}

impl HttpRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Decoded query parameters followed by decoded form-body parameters: what a server verifies.
    pub fn sent_params(&self) -> Vec<(String, String)> {
        let query = self.url.query_pairs().into_owned();
        query
            .chain(url::form_urlencoded::parse(&self.body).into_owned())
            .collect()
    }

    /// Asserts that the `Signature` sent verifies, V2-style, over everything sent.
    pub fn assert_v2_signed(&self, secret: &str) {
        let sent = self
            .param(crate::sign::rpc::SIGNATURE_PARAM)
            .expect("a Signature parameter");
        let expected =
            crate::sign::rpc::signature(secret, self.method.as_str(), &self.sent_params());
        assert_eq!(sent, expected, "V2 signature does not verify");
    }

    /// One sent parameter.
    pub fn param(&self, name: &str) -> Option<String> {
        self.sent_params()
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }
}

/// Port ranges as admission allows them: 1 <= from <= to <= 65535.
pub fn port_range() -> impl Strategy<Value = PortRange> {
    (1..=65535_u16)
        .prop_flat_map(|from| (Just(from), from..=65535))
        .prop_map(|(from, to)| PortRange { from, to })
}

/// Peers as admission allows them for `kind`: canonical CIDRs of either
/// family, or another group (with an owner only on Alibaba and Apsara Stack).
pub fn peer(kind: ProviderKind) -> impl Strategy<Value = Peer> {
    // Owners of a peer group are Alibaba's and Apsara Stack's only.
    let (owner_account, owner_id) = if kind == ProviderKind::Baidu {
        (Just(None).boxed(), Just(None).boxed())
    } else {
        (
            option::of("[a-zA-Z0-9@._-]{1,24}").boxed(),
            option::of("[0-9]{1,16}").boxed(),
        )
    };
    prop_oneof![
        (any::<u32>(), 0..=32_u8).prop_map(|(ip, len)| {
            Peer::Cidr(
                Ipv4Net::new(Ipv4Addr::from(ip), len)
                    .expect("prefix length")
                    .trunc(),
            )
        }),
        (any::<u128>(), 0..=128_u8).prop_map(|(ip, len)| {
            Peer::Ipv6Cidr(
                Ipv6Net::new(Ipv6Addr::from(ip), len)
                    .expect("prefix length")
                    .trunc(),
            )
        }),
        ("[a-z]{1,8}-[A-Za-z0-9]{1,20}", owner_account, owner_id).prop_map(
            |(id, owner_account, owner_id)| Peer::Group {
                id,
                owner_account,
                owner_id,
            }
        ),
    ]
}

/// Rules that admission lets through and `kind` can express (Baidu: no
/// policy, priority, NIC type or source ports; TCP, UDP, ICMP or all).
pub fn rule(kind: ProviderKind) -> impl Strategy<Value = Rule> {
    let baidu = kind == ProviderKind::Baidu;
    let protocol = if baidu {
        prop::sample::select(vec![
            Protocol::Tcp,
            Protocol::Udp,
            Protocol::Icmp,
            Protocol::All,
        ])
    } else {
        prop::sample::select(vec![
            Protocol::Tcp,
            Protocol::Udp,
            Protocol::Icmp,
            Protocol::Icmpv6,
            Protocol::Gre,
            Protocol::All,
        ])
    };
    let max_description = if baidu { 255 } else { 256 };
    (
        prop::sample::select(vec![Direction::Ingress, Direction::Egress]),
        protocol,
        option::of(port_range()),
        option::of(port_range()),
        peer(kind),
        any::<bool>(),
        1..=100_u8,
        any::<bool>(),
        prop::collection::vec(any::<char>(), 0..=max_description),
    )
        .prop_map(
            move |(
                direction,
                protocol,
                ports,
                source_ports,
                peer,
                drop,
                priority,
                internet,
                description,
            )| {
                let group_peer = matches!(peer, Peer::Group { .. });
                Rule {
                    direction,
                    protocol,
                    ports: ports.filter(|_| protocol.has_ports()),
                    source_ports: source_ports.filter(|_| protocol.has_ports() && !baidu),
                    peer,
                    policy: if drop && !baidu {
                        Policy::Drop
                    } else {
                        Policy::Accept
                    },
                    priority: if baidu { 1 } else { priority },
                    nic_type: if internet && !baidu && !group_peer {
                        NicType::Internet
                    } else {
                        NicType::Intranet
                    },
                    description: description.into_iter().collect(),
                }
            },
        )
}

/// Regions and group ids as admission allows them.
pub fn group() -> impl Strategy<Value = GroupRef> {
    ("[a-z0-9][a-z0-9-]{0,20}", "[a-z]{1,8}-[A-Za-z0-9]{1,24}").prop_map(
        |(region, security_group_id)| GroupRef {
            region,
            security_group_id,
        },
    )
}

/// What every classified provider error promises, whatever the answer was:
/// a code and a message to show, the answer's status, and a wait only when
/// throttled, never beyond the cap.
pub fn classified_well(err: &ProviderError, response: &HttpResponse) -> Result<(), TestCaseError> {
    prop_assert!(!err.code.is_empty() && !err.message.is_empty(), "{err:?}");
    prop_assert_eq!(err.http_status, Some(response.status));
    prop_assert!(
        err.retry_after.is_none() || err.kind == ErrorKind::Throttled,
        "{err:?}"
    );
    prop_assert!(
        err.retry_after.is_none_or(|w| w <= MAX_RETRY_AFTER),
        "{err:?}"
    );
    Ok(())
}

pub fn operation() -> impl Strategy<Value = Operation> {
    prop::sample::select(vec![
        Operation::Authorize,
        Operation::Revoke,
        Operation::Describe,
    ])
}

/// Any answer a server could give: a status, a body of arbitrary bytes or
/// near-valid JSON, and maybe a retry-after header of either provider.
pub fn any_response() -> impl Strategy<Value = HttpResponse> {
    let body = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..200).prop_map(Bytes::from),
        json_value().prop_map(|v| Bytes::from(v.to_string())),
    ];
    let header = option::of((
        prop::sample::select(vec![
            "x-acs-retry-after",
            "retry-after",
            "x-acs-request-id",
            "x-bce-request-id",
        ]),
        "[ -~]{0,24}",
    ));
    (100..=599_u16, body, header).prop_map(|(status, body, header)| {
        let mut headers = HeaderMap::new();
        if let Some((name, value)) = header
            && let Ok(value) = value.parse()
        {
            headers.insert(name, value);
        }
        HttpResponse {
            status,
            headers,
            body,
        }
    })
}

/// JSON documents that use the field names the providers' answers use, with
/// values of any type: what a parser must survive.
pub fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    const NAMES: [&str; 24] = [
        "RequestId",
        "Code",
        "Message",
        "NextToken",
        "Permissions",
        "Permission",
        "Direction",
        "IpProtocol",
        "PortRange",
        "SourceCidrIp",
        "DestGroupId",
        "Priority",
        "Policy",
        "resultCode",
        "resultMsg",
        "asapiSuccess",
        "asapiErrorCode",
        "requestId",
        "code",
        "message",
        "rules",
        "portRange",
        "sourceIp",
        "remark",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::String),
        prop::sample::select(vec![
            "tcp",
            "-1/-1",
            "22/22",
            "1-65535",
            "ingress",
            "egress",
            "10.0.0.0/8",
            "::/0",
            "all",
            ""
        ])
        .prop_map(|s| Value::String(s.to_owned())),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(NAMES.to_vec()), inner), 0..6).prop_map(
                |fields| {
                    Value::Object(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
                }
            ),
        ]
    })
}
