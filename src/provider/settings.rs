//! What the operator reads from a `ProviderConfig`, in the providers' terms,
//! and [`connect`], which turns it and the credentials into a client.

use std::{sync::Arc, time::Duration};

use url::Url;

use super::{
    Provider, ProviderKind,
    alibaba::EcsClient,
    baidu::BaiduClient,
    credentials::Credentials,
    error::{ErrorKind, ProviderError},
    http::Transport,
};

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

/// Why no client could be built from a `ProviderConfig`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    #[error("an endpoint is required for {0}")]
    MissingEndpoint(ProviderKind),
    #[error(
        "endpoint {0:?} must be an http or https URL with a host, no user name or password, and no query"
    )]
    InvalidEndpoint(String),
    #[error("the CA bundle holds no usable PEM certificate: {0}")]
    InvalidCaBundle(String),
    #[error("rate limit qps and burst must be at least 1")]
    InvalidRateLimit,
    #[error("cannot build the HTTP client: {0}")]
    Transport(String),
}

/// Builds the client for `settings.kind`, with its own rate limiter.
pub fn connect(
    settings: &ProviderSettings,
    credentials: Credentials,
) -> Result<Arc<dyn Provider>, ConnectError> {
    if let Some(endpoint) = &settings.endpoint {
        check_endpoint(endpoint)?;
    }
    let transport = Transport::new(
        settings.rate_limit,
        settings.timeouts,
        &settings.extra_roots,
    )?;
    Ok(match settings.kind {
        ProviderKind::Alibaba | ProviderKind::Apsara => {
            Arc::new(EcsClient::new(settings, credentials, transport)?)
        }
        ProviderKind::Baidu => Arc::new(BaiduClient::new(settings, credentials, transport)),
    })
}

fn check_endpoint(endpoint: &Url) -> Result<(), ConnectError> {
    // Credentials in the URL would be sent in every Authorization header
    // reqwest derives from them, and shown wherever the endpoint is.
    let userinfo = !endpoint.username().is_empty() || endpoint.password().is_some();
    let usable = matches!(endpoint.scheme(), "http" | "https")
        && endpoint.host_str().is_some()
        && endpoint.query().is_none()
        && !userinfo;
    if usable {
        Ok(())
    } else {
        let mut shown = endpoint.clone();
        // Best effort: a URL that cannot carry a user name has none to hide.
        let _ = shown.set_username("");
        let _ = shown.set_password(None);
        Err(ConnectError::InvalidEndpoint(shown.to_string()))
    }
}

/// The URL of `path` on `endpoint`, or on `https://{default_host}` without one.
///
/// The default host is built from a region, so it must look like a host name:
/// a region such as `x@evil.example/` must not pick another server.
pub(crate) fn endpoint_url(
    endpoint: Option<&Url>,
    default_host: &str,
    path: &str,
) -> Result<Url, ProviderError> {
    let mut url = match endpoint {
        Some(url) => url.clone(),
        None if is_host_name(default_host) => {
            Url::parse(&format!("https://{default_host}/")).map_err(|_| bad_region(default_host))?
        }
        None => return Err(bad_region(default_host)),
    };
    let prefix = url.path().trim_end_matches('/').to_string();
    url.set_path(&format!("{prefix}{path}"));
    Ok(url)
}

fn is_host_name(host: &str) -> bool {
    !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}

fn bad_region(host: &str) -> ProviderError {
    ProviderError::new(
        ErrorKind::Invalid,
        "InvalidRegion",
        format!("{host:?} is not a valid endpoint host: check the region"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).expect("valid URL")
    }

    #[test]
    fn the_default_endpoint_is_https_on_the_regional_host() {
        assert_eq!(
            endpoint_url(None, "ecs.cn-hangzhou.aliyuncs.com", "/")
                .expect("valid")
                .as_str(),
            "https://ecs.cn-hangzhou.aliyuncs.com/"
        );
    }

    /// The fake cloud listens on plain HTTP on loopback with a port.
    #[test]
    fn an_override_keeps_scheme_port_and_path_prefix() {
        let fake = url("http://127.0.0.1:8081");
        assert_eq!(
            endpoint_url(Some(&fake), "ignored", "/v2/securityGroup/g-1")
                .expect("valid")
                .as_str(),
            "http://127.0.0.1:8081/v2/securityGroup/g-1"
        );
        let prefixed = url("https://gw.example/ecs/");
        assert_eq!(
            endpoint_url(Some(&prefixed), "ignored", "/asapi/v3")
                .expect("valid")
                .as_str(),
            "https://gw.example/ecs/asapi/v3"
        );
    }

    /// A region is spliced into a host name, so it may not smuggle in another host.
    #[test]
    fn a_region_that_is_not_a_host_label_is_refused() {
        for host in [
            "ecs.x@evil.example/.aliyuncs.com",
            "ecs.a b.aliyuncs.com",
            "ecs..aliyuncs.com/x",
            "",
        ] {
            let err = endpoint_url(None, host, "/").expect_err(host);
            assert_eq!(err.kind, ErrorKind::Invalid, "{host}");
        }
    }

    #[test]
    fn apsara_paths_follow_the_configured_mode() {
        assert_eq!(ApsaraPath::Root.path("RevokeSecurityGroup"), "/");
        assert_eq!(ApsaraPath::Asapi.path("RevokeSecurityGroup"), "/asapi/v3");
        assert_eq!(
            ApsaraPath::Route.path("RevokeSecurityGroup"),
            "/apsara/route/Ecs/RevokeSecurityGroup"
        );
    }

    #[test]
    fn apsara_needs_an_endpoint_and_endpoints_must_be_http_urls() {
        let credentials = Credentials::new("ak", "sk", None);
        let apsara = ProviderSettings::new(ProviderKind::Apsara, "cn-1");
        assert_eq!(
            connect(&apsara, credentials.clone()).err(),
            Some(ConnectError::MissingEndpoint(ProviderKind::Apsara))
        );
        let mut bad = ProviderSettings::new(ProviderKind::Alibaba, "cn-1");
        bad.endpoint = Some(url("ftp://127.0.0.1/"));
        assert!(matches!(
            connect(&bad, credentials.clone()),
            Err(ConnectError::InvalidEndpoint(_))
        ));
        let mut userinfo = ProviderSettings::new(ProviderKind::Alibaba, "cn-1");
        userinfo.endpoint = Some(url("https://ak:hunter2@gw.example/"));
        match connect(&userinfo, credentials.clone()) {
            Err(ConnectError::InvalidEndpoint(shown)) => {
                assert!(!shown.contains("hunter2"), "{shown}");
            }
            other => panic!("userinfo accepted: {:?}", other.err()),
        }
        let mut garbage = ProviderSettings::new(ProviderKind::Alibaba, "cn-1");
        garbage.extra_roots = b"not a certificate".to_vec();
        assert!(matches!(
            connect(&garbage, credentials.clone()),
            Err(ConnectError::InvalidCaBundle(_))
        ));
        let mut zero = ProviderSettings::new(ProviderKind::Baidu, "bj");
        zero.rate_limit.qps = 0;
        assert_eq!(
            connect(&zero, credentials.clone()).err(),
            Some(ConnectError::InvalidRateLimit)
        );
        let fake = ProviderSettings {
            endpoint: Some(url("http://127.0.0.1:1")),
            ..apsara
        };
        assert_eq!(
            connect(&fake, credentials).expect("connects").kind(),
            ProviderKind::Apsara
        );
    }
}
