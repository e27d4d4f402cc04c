//! Test fixtures shared by the provider modules.

use bytes::Bytes;
use http::HeaderMap;

use super::{
    Direction, NicType, Peer, Policy, PortRange, Protocol, Rule,
    http::{HttpRequest, HttpResponse},
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
