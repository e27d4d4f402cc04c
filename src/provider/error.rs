//! Provider errors, classified once per provider into the kinds the
//! reconciler acts on, and [`ConnectError`], why no client could be built.

use std::{fmt, time::Duration};

use super::model::ProviderKind;

/// What the reconciler does about a provider answer. Every provider maps its
/// own error codes onto these in its `errors` module; nothing else inspects codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The rule, or its whole security group, no longer exists: a revoke succeeded.
    AlreadyGone,
    /// The rule exists already: an authorize succeeded.
    AlreadyExists,
    /// The provider asked us to slow down; retry after `retry_after` if given.
    Throttled,
    /// 5xx, timeouts, dropped connections: retry with exponential backoff and the same ClientToken.
    Transient,
    /// Credentials were rejected: back off every rule of the ProviderConfig.
    Unauthorized,
    /// Retrying cannot help until someone changes the spec or the cloud: Stalled.
    Invalid,
}

impl ErrorKind {
    /// Stable label for metrics, condition reasons and events.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AlreadyGone => "AlreadyGone",
            Self::AlreadyExists => "AlreadyExists",
            Self::Throttled => "Throttled",
            Self::Transient => "Transient",
            Self::Unauthorized => "Unauthorized",
            Self::Invalid => "Invalid",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kind of an error code no provider table names: anything about
/// throttling (`Throttling`, `Throttling.User`, `Rejected.Throttling`,
/// `…Throttled`) or HTTP 429 is Throttled, other 5xx Transient, other 4xx Invalid.
pub fn classify_unknown(status: u16, code: &str) -> ErrorKind {
    if code.contains("Throttl") || status == 429 {
        ErrorKind::Throttled
    } else if status >= 500 {
        ErrorKind::Transient
    } else {
        ErrorKind::Invalid
    }
}

/// Which trait call an answer belongs to: the same code can mean different
/// things (a missing group is "already gone" for a revoke, a mistake for an authorize).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    Authorize,
    Revoke,
    Describe,
    /// A change in place (Alibaba `ModifySecurityGroupRule`).
    Modify,
}

impl Operation {
    /// Stable label for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Authorize => "authorize",
            Self::Revoke => "revoke",
            Self::Describe => "describe",
            Self::Modify => "modify",
        }
    }
}

/// The code of a modify that the endpoint does not offer: the caller
/// falls back to revoke and authorize.
pub const MODIFY_UNSUPPORTED: &str = "ModifyUnsupported";

/// A failed (or "successfully failed") provider call.
///
/// `code` and `message` come from the provider's error envelope, or name the
/// transport failure. They never contain credentials or signatures: clients
/// build them only from response bodies and from errors they redact.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {code}: {message}")]
pub struct ProviderError {
    pub kind: ErrorKind,
    pub code: String,
    pub message: String,
    pub request_id: Option<String>,
    pub http_status: Option<u16>,
    pub retry_after: Option<Duration>,
}

impl ProviderError {
    pub fn new(kind: ErrorKind, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            kind,
            code: code.into(),
            message: message.into(),
            request_id: None,
            http_status: None,
            retry_after: None,
        }
    }

    pub fn with_request_id(mut self, request_id: Option<String>) -> Self {
        self.request_id = request_id;
        self
    }

    pub fn with_status(mut self, status: u16) -> Self {
        self.http_status = Some(status);
        self
    }

    pub fn with_retry_after(mut self, retry_after: Option<Duration>) -> Self {
        self.retry_after = retry_after;
        self
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
