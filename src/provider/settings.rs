//! What the operator reads from a `ProviderConfig`, in the providers' terms.
//! Data only: [`connect`](super::connect) turns it and the credentials into a client.

use std::time::Duration;

use url::Url;

use super::model::ProviderKind;

/// Everything a client needs besides credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderSettings {
    pub kind: ProviderKind,
    /// Overrides the public endpoint (required for Apsara Stack). Scheme, host
    /// and port are used; a path is a prefix for every request path. Plain
    /// `http://127.0.0.1:PORT` works, for the fake cloud.
    pub endpoint: Option<Url>,
    /// Region of calls whose rule names none; also picks the default endpoint.
    pub region: String,
    /// Alibaba only; Apsara Stack always signs with V2.
    pub signature_version: SignatureVersion,
    pub apsara: ApsaraSettings,
    pub rate_limit: RateLimit,
    pub timeouts: Timeouts,
    /// PEM certificates trusted besides the system's roots; empty for none.
    pub extra_roots: Vec<u8>,
}

impl ProviderSettings {
    /// Defaults for everything but the kind and the region.
    pub fn new(kind: ProviderKind, region: impl Into<String>) -> Self {
        Self {
            kind,
            endpoint: None,
            region: region.into(),
            signature_version: SignatureVersion::default(),
            apsara: ApsaraSettings::default(),
            rate_limit: RateLimit::default(),
            timeouts: Timeouts::default(),
            extra_roots: Vec::new(),
        }
    }
}

/// Alibaba request signature.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SignatureVersion {
    /// `ACS3-HMAC-SHA256`, parameters in the query, action in `x-acs-action`.
    #[default]
    V3,
    /// RPC HMAC-SHA1 (`SignatureVersion=1.0`), every parameter signed.
    V2,
}

/// How an Apsara Stack gateway wants ECS calls.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApsaraSettings {
    /// Sent as `x-acs-organizationid`.
    pub organization_id: Option<String>,
    /// Sent as `x-acs-resourcegroupid`.
    pub resource_group_id: Option<String>,
    pub path: ApsaraPath,
    pub body_mode: BodyMode,
    /// The lower-case `version` parameter of the route gateway, when set.
    pub version: Option<String>,
    /// Added to every request's headers.
    pub extra_headers: Vec<(String, String)>,
    /// Added to every request's parameters, and signed.
    pub extra_params: Vec<(String, String)>,
}

/// Where an Apsara Stack gateway serves ECS.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ApsaraPath {
    /// `/`, a POP gateway.
    #[default]
    Root,
    /// `/asapi/v3`, the ASAPI gateway.
    Asapi,
    /// `/apsara/route/Ecs/<Action>`.
    Route,
}

impl ApsaraPath {
    /// The request path for `action`, without any endpoint prefix.
    pub fn path(self, action: &str) -> String {
        match self {
            Self::Root => "/".to_string(),
            Self::Asapi => "/asapi/v3".to_string(),
            Self::Route => format!("/apsara/route/Ecs/{action}"),
        }
    }
}

/// Where RPC parameters travel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BodyMode {
    /// In the query string, with an empty body.
    #[default]
    Query,
    /// In an `application/x-www-form-urlencoded` body.
    Form,
}

/// A token bucket per ProviderConfig: `qps` calls per second on average, `burst` at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub qps: u32,
    pub burst: u32,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self { qps: 10, burst: 20 }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP and TLS connection setup.
    pub connect: Duration,
    /// A whole request, from sending to the last byte of the response.
    pub request: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(5),
            request: Duration::from_secs(30),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apsara_paths_follow_the_configured_mode() {
        assert_eq!(ApsaraPath::Root.path("RevokeSecurityGroup"), "/");
        assert_eq!(ApsaraPath::Asapi.path("RevokeSecurityGroup"), "/asapi/v3");
        assert_eq!(
            ApsaraPath::Route.path("RevokeSecurityGroup"),
            "/apsara/route/Ecs/RevokeSecurityGroup"
        );
    }
}
