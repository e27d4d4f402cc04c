//! BCC error codes → [`ErrorKind`], and the error body `{requestId, code, message}`.

use std::time::Duration;

use serde::Deserialize;

use crate::provider::{
    error::{ErrorKind, Operation, ProviderError, classify_unknown},
    http::{HttpResponse, retry_after},
};

pub const REQUEST_ID_HEADER: &str = "x-bce-request-id";

/// The group (or, for delete-by-id, the rule) does not exist.
const NO_SUCH_OBJECT: &str = "NoSuchObject";
/// IAM denies the call; it may cover some groups only (see `denials`).
pub const DENIAL: &str = "AccessDenied";
/// A revoke by attributes matched no rule.
const RULE_NOT_EXIST: &str = "SecurityGroup.RuleNotExist";

/// Every other documented code (BCC pages and the BCE common table).
const TABLE: &[(&str, ErrorKind)] = &[
    ("SecurityGroup.RulePortOrderInvalid", ErrorKind::Invalid),
    ("SecurityGroup.RulePortRangeInvalid", ErrorKind::Invalid),
    ("SecurityGroup.RulePortInvalid", ErrorKind::Invalid),
    ("SecurityGroup.RuleCIDRAddressError", ErrorKind::Invalid),
    ("BadRequest", ErrorKind::Invalid),
    ("InvalidHTTPRequest", ErrorKind::Invalid),
    ("InvalidURI", ErrorKind::Invalid),
    ("MalformedJSON", ErrorKind::Invalid),
    ("InappropriateJSON", ErrorKind::Invalid),
    ("InvalidVersion", ErrorKind::Invalid),
    ("PreconditionFailed", ErrorKind::Invalid),
    // Same token, different request: a bug in token derivation, never success.
    ("IdempotentParameterMismatch", ErrorKind::Invalid),
    // Optimistic locking on sgVersion (never sent by this client): re-read and retry.
    ("VersionMismatch", ErrorKind::Transient),
    ("InternalError", ErrorKind::Transient),
    // Signatures are valid for 30 minutes, so an expired one means the
    // node's clock is off: as Alibaba's `InvalidTimeStamp.Expired`, a
    // config-wide pause rather than endless retries.
    ("RequestExpired", ErrorKind::Unauthorized),
    // Credentials or the account rejected: back off every rule of the ProviderConfig.
    ("AccessDenied", ErrorKind::Unauthorized),
    ("InvalidAccessKeyId", ErrorKind::Unauthorized),
    ("InvalidHTTPAuthHeader", ErrorKind::Unauthorized),
    ("SignatureDoesNotMatch", ErrorKind::Unauthorized),
    ("OptInRequired", ErrorKind::Unauthorized),
];

/// What an answer means for `operation`.
pub fn classify(operation: Operation, status: u16, code: &str) -> ErrorKind {
    // The rule already exists (the code name is undocumented; the status is).
    if operation == Operation::Authorize && status == 409 {
        return ErrorKind::AlreadyExists;
    }
    match (operation, code) {
        (Operation::Revoke, NO_SUCH_OBJECT | RULE_NOT_EXIST) => return ErrorKind::AlreadyGone,
        // The whole group is gone, and its rules with it.
        (Operation::Describe, NO_SUCH_OBJECT) => return ErrorKind::AlreadyGone,
        (_, NO_SUCH_OBJECT | RULE_NOT_EXIST) => return ErrorKind::Invalid,
        _ => {}
    }
    TABLE
        .iter()
        .find(|(known, _)| *known == code)
        .map_or_else(|| classify_unknown(status, code), |(_, kind)| *kind)
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct ErrorBody {
    request_id: Option<String>,
    code: Option<String>,
    message: Option<String>,
}

pub fn request_id(response: &HttpResponse) -> Option<String> {
    response.header(REQUEST_ID_HEADER).map(str::to_string)
}

/// A non-2xx answer as a classified error.
pub fn error_from_response(operation: Operation, response: &HttpResponse) -> ProviderError {
    let body: ErrorBody = serde_json::from_slice(&response.body).unwrap_or_default();
    let code = body
        .code
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| format!("HTTP{}", response.status));
    let message = body
        .message
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| format!("HTTP {} without a readable error body", response.status));
    let kind = classify(operation, response.status, &code);
    let wait = (kind == ErrorKind::Throttled)
        .then(|| retry_after(response, "retry-after", Duration::from_secs(1)))
        .flatten();
    ProviderError::new(kind, code, message)
        .with_status(response.status)
        .with_request_id(body.request_id.or_else(|| request_id(response)))
        .with_retry_after(wait)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::fixtures::response;

    /// Every documented code with its status, for the operation where it is documented.
    #[test]
    fn every_documented_code_classifies_as_its_table_says() {
        use ErrorKind::*;
        let documented = [
            (Operation::Revoke, 404, NO_SUCH_OBJECT, AlreadyGone),
            (Operation::Revoke, 404, RULE_NOT_EXIST, AlreadyGone),
            (Operation::Describe, 404, NO_SUCH_OBJECT, AlreadyGone),
            (Operation::Authorize, 404, NO_SUCH_OBJECT, Invalid),
            (Operation::Authorize, 409, "", AlreadyExists),
            (
                Operation::Authorize,
                409,
                "SecurityGroup.RuleExists",
                AlreadyExists,
            ),
        ];
        for (operation, status, code, kind) in documented {
            assert_eq!(
                classify(operation, status, code),
                kind,
                "{operation:?} {status} {code}"
            );
        }
        for (code, kind) in TABLE {
            assert_eq!(classify(Operation::Authorize, 400, code), *kind, "{code}");
            assert_eq!(classify(Operation::Revoke, 403, code), *kind, "{code}");
        }
    }

    /// A sample of the table spelled out, so a wrong row cannot hide in the table itself.
    #[test]
    fn key_codes_map_to_the_kinds_the_reconciler_needs() {
        use ErrorKind::*;
        for (status, code, kind) in [
            (403, "IdempotentParameterMismatch", Invalid),
            (403, "AccessDenied", Unauthorized),
            (400, "SignatureDoesNotMatch", Unauthorized),
            (400, "RequestExpired", Unauthorized),
            (500, "InternalError", Transient),
            (400, "SecurityGroup.RulePortRangeInvalid", Invalid),
            (429, "TooManyRequests", Throttled),
            (400, "RequestThrottled", Throttled),
            (502, "Unknown", Transient),
            (400, "Unknown", Invalid),
        ] {
            assert_eq!(classify(Operation::Revoke, status, code), kind, "{code}");
        }
        assert_eq!(
            classify(Operation::Revoke, 409, "Conflict"),
            Invalid,
            "409 means exists only for authorize"
        );
    }

    #[test]
    fn an_error_body_yields_code_message_request_id_and_retry_after() {
        let response = response(
            429,
            r#"{"requestId":"b-1","code":"RequestLimitExceeded","message":"slow"}"#,
            &[("retry-after", "2")],
        );
        let err = error_from_response(Operation::Authorize, &response);
        assert_eq!(
            (err.kind, err.code.as_str(), err.message.as_str()),
            (ErrorKind::Throttled, "RequestLimitExceeded", "slow")
        );
        assert_eq!(err.request_id.as_deref(), Some("b-1"));
        assert_eq!(err.retry_after, Some(Duration::from_secs(2)));
    }
}
