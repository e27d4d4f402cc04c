//! ECS error codes → [`ErrorKind`], and the POP error envelope
//! `{"RequestId", "HostId", "Code", "Message"}`.
//!
//! Match on `Code`, not on the HTTP status: Alibaba answers the same code with
//! different statuses on different pages (`InvalidSecurityGroupId.NotFound` is
//! 400 and 404). The status only decides codes the tables do not know.

use std::time::Duration;

use serde::Deserialize;

use crate::provider::{
    error::{ErrorKind, Operation, ProviderError, classify_unknown},
    http::{HttpResponse, retry_after},
};

/// Response header with the wait, in milliseconds, that a throttled call should honour.
pub const RETRY_AFTER_HEADER: &str = "x-acs-retry-after";
const REQUEST_ID_HEADER: &str = "x-acs-request-id";

/// A RAM policy denies the call; it may cover some groups only (see `denials`).
pub const DENIAL: &str = "Forbidden.RAM";

/// The whole security group is missing.
const GROUP_GONE: &str = "InvalidSecurityGroupId.NotFound";

/// The rule is missing. Alibaba's pages disagree on the code (and a revoke by
/// attributes may even succeed), so a revoke accepts every one of them.
/// `InvalidGroupAuthItem.NotFound` (403) is RevokeSecurityGroup's answer to a
/// revoke by attributes that matches no rule.
const RULE_GONE: [&str; 4] = [
    "InvalidSecurityGroupRuleId.NotFound",
    "InvalidParam.SecurityGroupRuleId",
    "InvalidSecurityGroupRule.RuleNotExist",
    "InvalidGroupAuthItem.NotFound",
];

/// Every other documented code (ECS reference pages and the common codes).
const TABLE: &[(&str, ErrorKind)] = &[
    // Malformed or conflicting requests: fix the spec.
    (
        "InvalidParam.SecurityGroupRuleIdRepeated",
        ErrorKind::Invalid,
    ),
    ("InvalidParam.Permissions", ErrorKind::Invalid),
    ("InvalidParam.DuplicatePermissions", ErrorKind::Invalid),
    ("MissingParameter.Source", ErrorKind::Invalid),
    ("MissingParameter.Dest", ErrorKind::Invalid),
    ("MissingParameter", ErrorKind::Invalid),
    ("InvalidIpProtocol.ValueNotSupported", ErrorKind::Invalid),
    ("InvalidParam.PortRange", ErrorKind::Invalid),
    ("InvalidIpPortRange.Malformed", ErrorKind::Invalid),
    ("InvalidPortRange.Malformed", ErrorKind::Invalid),
    ("InvalidSourcePortRange.Malformed", ErrorKind::Invalid),
    ("InvalidPolicy.Malformed", ErrorKind::Invalid),
    ("InvalidPriority.Malformed", ErrorKind::Invalid),
    ("InvalidPriority.ValueNotSupported", ErrorKind::Invalid),
    ("InvalidNicType.ValueNotSupported", ErrorKind::Invalid),
    ("InvalidSourceCidrIp.Malformed", ErrorKind::Invalid),
    ("InvalidDestCidrIp.Malformed", ErrorKind::Invalid),
    ("InvalidParam.SourceCidrIp", ErrorKind::Invalid),
    ("InvalidParam.DestCidrIp", ErrorKind::Invalid),
    ("InvalidParam.Ipv6SourceCidrIp", ErrorKind::Invalid),
    ("InvalidParam.Ipv6DestCidrIp", ErrorKind::Invalid),
    ("InvalidParam.SourceIp", ErrorKind::Invalid),
    ("InvalidParam.DestIp", ErrorKind::Invalid),
    (
        "InvalidSecurityGroupDiscription.Malformed",
        ErrorKind::Invalid,
    ),
    // Restrictions of the group or the account: retrying changes nothing.
    ("InvalidGroupParameter.OperationDenied", ErrorKind::Invalid),
    (
        "InvalidGroupAuthParameter.OperationDenied",
        ErrorKind::Invalid,
    ),
    ("AuthorizedGroupRule.LimitExceed", ErrorKind::Invalid),
    ("AuthorizationLimitExceed", ErrorKind::Invalid),
    (
        "InvalidOperation.ResourceManagedByCloudProduct",
        ErrorKind::Invalid,
    ),
    // Permission on this one group, not a rejected key: stall this rule only.
    (
        "InvalidOperation.SecurityGroupNotAuthorized",
        ErrorKind::Invalid,
    ),
    ("InvalidNicType.Mismatch", ErrorKind::Invalid),
    ("InvalidDestGroupId.Mismatch", ErrorKind::Invalid),
    ("InvalidNetworkType.Conflict", ErrorKind::Invalid),
    ("InvalidSecurityGroup.IsSame", ErrorKind::Invalid),
    ("InvalidParamter.Conflict", ErrorKind::Invalid),
    // Referenced objects that are missing.
    ("InvalidSourceGroupId.NotFound", ErrorKind::Invalid),
    ("InvalidDestGroupId.NotFound", ErrorKind::Invalid),
    ("InvalidPrefixListId.NotFound", ErrorKind::Invalid),
    ("InvalidPortRangeListId.NotFound", ErrorKind::Invalid),
    ("InvalidRegionId.NotFound", ErrorKind::Invalid),
    // Same token, different parameters: a bug in token derivation, never success.
    ("IdempotentParameterMismatch", ErrorKind::Invalid),
    // Server trouble: retry with the same ClientToken.
    ("InternalError", ErrorKind::Transient),
    ("ServiceUnavailable", ErrorKind::Transient),
    ("SystemBusy", ErrorKind::Transient),
    // The same token still in flight, or another change to the group at the
    // same time: the first request may yet take effect, so the retry must
    // carry the same ClientToken, not a new one.
    ("LastTokenProcessing", ErrorKind::Transient),
    ("OperationConflict", ErrorKind::Transient),
    // A nonce seen before: the next attempt draws a fresh one.
    ("SignatureNonceUsed", ErrorKind::Transient),
    // Credentials or clock rejected: back off every rule of the ProviderConfig.
    ("IncompleteSignature", ErrorKind::Unauthorized),
    ("IllegalTimestamp", ErrorKind::Unauthorized),
    ("InvalidTimeStamp.Expired", ErrorKind::Unauthorized),
    ("InvalidAccessKeyId.NotFound", ErrorKind::Unauthorized),
    ("SignatureDoesNotMatch", ErrorKind::Unauthorized),
    ("MissingAccessKeyId", ErrorKind::Unauthorized),
    ("InvalidAccessKeyId.Inactive", ErrorKind::Unauthorized),
    ("Forbidden.AccessKeyDisabled", ErrorKind::Unauthorized),
    // STS tokens expire routinely: a credentials problem, not a rule's.
    ("InvalidSecurityToken.Expired", ErrorKind::Unauthorized),
    ("InvalidSecurityToken.Malformed", ErrorKind::Unauthorized),
    (
        "InvalidSecurityToken.MismatchWithAccessKey",
        ErrorKind::Unauthorized,
    ),
    ("MissingSecurityToken", ErrorKind::Unauthorized),
    ("Forbidden.RAM", ErrorKind::Unauthorized),
];

/// What an error code means for `operation`, falling back on the HTTP status.
pub fn classify(operation: Operation, status: u16, code: &str) -> ErrorKind {
    if let Some(kind) = classify_missing(operation, code) {
        return kind;
    }
    if let Some((_, kind)) = TABLE.iter().find(|(known, _)| *known == code) {
        return *kind;
    }
    classify_unknown(status, code)
}

/// "Missing" codes: success for a revoke; for a describe only the missing
/// group is final (its rules are gone too); an authorize into a missing group
/// cannot succeed.
fn classify_missing(operation: Operation, code: &str) -> Option<ErrorKind> {
    let group = code == GROUP_GONE;
    let rule = RULE_GONE.contains(&code);
    Some(match operation {
        Operation::Revoke if group || rule => ErrorKind::AlreadyGone,
        Operation::Describe if group => ErrorKind::AlreadyGone,
        _ if group || rule => ErrorKind::Invalid,
        _ => return None,
    })
}

/// The POP error envelope; every field optional so a partial body still reads.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PopEnvelope {
    #[serde(alias = "RequestID")]
    pub request_id: Option<String>,
    pub code: Option<String>,
    pub message: Option<String>,
}

impl PopEnvelope {
    pub fn parse(body: &[u8]) -> Self {
        serde_json::from_slice(body).unwrap_or_default()
    }
}

/// The request id of any answer: from the body, else the response header.
pub fn request_id(response: &HttpResponse) -> Option<String> {
    PopEnvelope::parse(&response.body)
        .request_id
        .or_else(|| response.header(REQUEST_ID_HEADER).map(str::to_string))
}

/// A non-2xx answer as a classified error.
pub fn error_from_response(operation: Operation, response: &HttpResponse) -> ProviderError {
    let envelope = PopEnvelope::parse(&response.body);
    classified(
        operation,
        response,
        envelope.code,
        envelope.message,
        envelope.request_id,
        classify,
    )
}

/// Builds the error once the provider's envelope has been read; shared with
/// Apsara Stack, whose gateways wrap errors differently.
pub fn classified(
    operation: Operation,
    response: &HttpResponse,
    code: Option<String>,
    message: Option<String>,
    request_id: Option<String>,
    classify: fn(Operation, u16, &str) -> ErrorKind,
) -> ProviderError {
    let code = code
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| format!("HTTP{}", response.status));
    let message = message
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| format!("HTTP {} without a readable error body", response.status));
    let kind = classify(operation, response.status, &code);
    let wait = (kind == ErrorKind::Throttled)
        .then(|| retry_after(response, RETRY_AFTER_HEADER, Duration::from_millis(1)))
        .flatten();
    ProviderError::new(kind, code, message)
        .with_status(response.status)
        .with_request_id(
            request_id.or_else(|| response.header(REQUEST_ID_HEADER).map(str::to_string)),
        )
        .with_retry_after(wait)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::fixtures::response;

    /// Every documented code, with the kind it must produce for a revoke.
    #[test]
    fn every_documented_code_classifies_as_its_table_says() {
        let cases: Vec<(&str, u16, ErrorKind)> = RULE_GONE
            .iter()
            .chain(&[GROUP_GONE])
            .map(|code| (*code, 404, ErrorKind::AlreadyGone))
            .chain(TABLE.iter().map(|(code, kind)| (*code, 400, *kind)))
            .collect();
        assert_eq!(cases.len(), 5 + TABLE.len());
        for (code, status, kind) in cases {
            assert_eq!(classify(Operation::Revoke, status, code), kind, "{code}");
        }
    }

    /// A sample of the table, spelled out, so a wrong row cannot hide in the table itself.
    #[test]
    fn key_codes_map_to_the_kinds_the_reconciler_needs() {
        use ErrorKind::*;
        for (operation, status, code, kind) in [
            (
                Operation::Revoke,
                400,
                "InvalidSecurityGroupRule.RuleNotExist",
                AlreadyGone,
            ),
            (
                Operation::Revoke,
                400,
                "InvalidParam.SecurityGroupRuleId",
                AlreadyGone,
            ),
            (
                Operation::Revoke,
                404,
                "InvalidSecurityGroupRuleId.NotFound",
                AlreadyGone,
            ),
            (
                Operation::Revoke,
                400,
                "InvalidSecurityGroupId.NotFound",
                AlreadyGone,
            ),
            (
                Operation::Describe,
                404,
                "InvalidSecurityGroupId.NotFound",
                AlreadyGone,
            ),
            (
                Operation::Authorize,
                404,
                "InvalidSecurityGroupId.NotFound",
                Invalid,
            ),
            (
                Operation::Describe,
                400,
                "InvalidParam.SecurityGroupRuleId",
                Invalid,
            ),
            (
                Operation::Authorize,
                400,
                "IdempotentParameterMismatch",
                Invalid,
            ),
            (
                Operation::Authorize,
                403,
                "AuthorizationLimitExceed",
                Invalid,
            ),
            (Operation::Authorize, 500, "InternalError", Transient),
            (Operation::Authorize, 503, "ServiceUnavailable", Transient),
            (
                Operation::Revoke,
                403,
                "SignatureDoesNotMatch",
                Unauthorized,
            ),
            (
                Operation::Revoke,
                404,
                "InvalidAccessKeyId.NotFound",
                Unauthorized,
            ),
            (
                Operation::Revoke,
                400,
                "InvalidTimeStamp.Expired",
                Unauthorized,
            ),
            (Operation::Revoke, 403, "Forbidden.RAM", Unauthorized),
            // The rule a revoke by attributes names is not there: done.
            (
                Operation::Revoke,
                403,
                "InvalidGroupAuthItem.NotFound",
                AlreadyGone,
            ),
            (
                Operation::Authorize,
                403,
                "InvalidGroupAuthItem.NotFound",
                Invalid,
            ),
            (
                Operation::Authorize,
                400,
                "InvalidSecurityToken.Expired",
                Unauthorized,
            ),
            (Operation::Revoke, 400, "MissingSecurityToken", Unauthorized),
            (
                Operation::Describe,
                403,
                "Forbidden.AccessKeyDisabled",
                Unauthorized,
            ),
            (
                Operation::Authorize,
                400,
                "InvalidAccessKeyId.Inactive",
                Unauthorized,
            ),
            (
                Operation::Authorize,
                400,
                "MissingAccessKeyId",
                Unauthorized,
            ),
            (Operation::Authorize, 403, "LastTokenProcessing", Transient),
            (Operation::Revoke, 409, "OperationConflict", Transient),
        ] {
            assert_eq!(
                classify(operation, status, code),
                kind,
                "{operation:?} {code}"
            );
        }
    }

    #[test]
    fn unknown_codes_fall_back_on_throttling_text_then_status() {
        use ErrorKind::*;
        for (status, code, kind) in [
            (400, "Throttling", Throttled),
            (400, "Throttling.User", Throttled),
            (400, "Rejected.Throttling", Throttled),
            (429, "TooMany", Throttled),
            (502, "BadGateway", Transient),
            (500, "SomethingNew", Transient),
            (400, "SomethingNew", Invalid),
            (404, "SomethingNew", Invalid),
        ] {
            assert_eq!(classify(Operation::Authorize, status, code), kind, "{code}");
        }
    }

    /// Throttling waits as long as `x-acs-retry-after` says, in milliseconds.
    #[test]
    fn a_throttled_answer_carries_the_retry_after_in_milliseconds() {
        let answer = response(
            400,
            r#"{"RequestId":"req-1","HostId":"ecs.aliyuncs.com","Code":"Throttling.User","Message":"Request was denied due to user flow control."}"#,
            &[("x-acs-retry-after", "1500")],
        );
        let err = error_from_response(Operation::Authorize, &answer);
        assert_eq!(err.kind, ErrorKind::Throttled);
        assert_eq!(err.code, "Throttling.User");
        assert_eq!(err.request_id.as_deref(), Some("req-1"));
        assert_eq!(err.http_status, Some(400));
        assert_eq!(err.retry_after, Some(Duration::from_millis(1500)));
    }

    #[test]
    fn an_unreadable_body_still_classifies_by_status() {
        let err = error_from_response(
            Operation::Revoke,
            &response(
                502,
                "<html>bad gateway</html>",
                &[("x-acs-request-id", "hdr-1")],
            ),
        );
        assert_eq!(
            (err.kind, err.code.as_str()),
            (ErrorKind::Transient, "HTTP502")
        );
        assert_eq!(err.request_id.as_deref(), Some("hdr-1"));
        assert_eq!(err.retry_after, None);
    }
}
