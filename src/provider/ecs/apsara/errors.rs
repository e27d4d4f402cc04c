//! Apsara Stack answers: the POP error JSON of public ECS, and the gateway
//! envelopes some deployments wrap around it — `{resultCode, resultMsg,
//! result}` and ASAPI's `{asapiSuccess, asapiErrorCode, asapiErrorMessage}` —
//! which may arrive with HTTP 200.
//!
//! Codes are the ECS codes, so classification is Alibaba's table; only the
//! numeric result codes of the envelope need a rule of their own.
//!
//! A 2xx answer is a success only with a positive marker: a request id, or a
//! successful `asapiSuccess`, `resultCode` or `success`. A login page, an empty
//! body or an unknown envelope from a gateway in front would otherwise read as
//! "revoked", and the finalizer would come off a rule still in place.

use serde::Deserialize;
use serde_json::Value;

use crate::provider::{
    ecs::errors::{self as ecs, PopEnvelope},
    error::{ErrorKind, Operation, ProviderError},
    http::HttpResponse,
};

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct GatewayEnvelope {
    result_code: Option<Value>,
    result_msg: Option<String>,
    asapi_success: Option<bool>,
    asapi_error_code: Option<String>,
    asapi_error_message: Option<String>,
    asapi_request_id: Option<String>,
    /// ASCM style: `{"success": false, "code": …, "message": …}`.
    success: Option<bool>,
    code: Option<Value>,
    message: Option<String>,
}

fn text(value: Value) -> String {
    match value {
        Value::String(s) => s,
        other => other.to_string(),
    }
}

/// The code of a 2xx answer that says neither success nor failure.
const UNRECOGNIZED: &str = "UnrecognizedResponse";

/// Result codes that mean success in a `{resultCode, …}` envelope.
fn is_success_result(code: &Value) -> bool {
    match code {
        Value::Number(n) => matches!(n.as_i64(), Some(0 | 200)),
        Value::String(s) => matches!(s.as_str(), "0" | "200" | "OK" | "Success"),
        Value::Null => true,
        _ => false,
    }
}

/// The failure in an answer, if any, classified.
pub fn failure(operation: Operation, response: &HttpResponse) -> Option<ProviderError> {
    let gateway: GatewayEnvelope = serde_json::from_slice(&response.body).unwrap_or_default();
    let (code, message, request_id) = if gateway.asapi_success == Some(false) {
        (
            gateway.asapi_error_code,
            gateway.asapi_error_message,
            gateway.asapi_request_id,
        )
    } else if let Some(result) = gateway
        .result_code
        .clone()
        .filter(|code| !is_success_result(code))
    {
        (Some(text(result)), gateway.result_msg, None)
    } else if gateway.success == Some(false) {
        (gateway.code.map(text), gateway.message, None)
    } else {
        let pop = PopEnvelope::parse(&response.body);
        let pop_code = pop.code.as_ref().is_some_and(|c| !c.is_empty());
        if !response.is_success() || pop_code {
            (pop.code, pop.message, pop.request_id)
        } else if pop.request_id.is_some()
            || gateway.asapi_success == Some(true)
            || gateway.result_code.is_some()
            || gateway.success == Some(true)
        {
            return None;
        } else {
            let message = format!(
                "HTTP {} without a success marker (RequestId, asapiSuccess, resultCode or \
                 success): is the endpoint the ECS gateway?",
                response.status
            );
            (Some(UNRECOGNIZED.to_owned()), Some(message), None)
        }
    };
    Some(ecs::classified(
        operation, response, code, message, request_id, classify,
    ))
}

/// ECS codes as on public Alibaba Cloud. A numeric envelope code with a 2xx
/// status falls outside that table: negative ones are the gateway's own
/// "system error" (retry), others refuse the request.
pub fn classify(operation: Operation, status: u16, code: &str) -> ErrorKind {
    if code == UNRECOGNIZED {
        return ErrorKind::Transient;
    }
    let numeric = code.parse::<i64>().ok();
    match numeric {
        Some(n) if (200..300).contains(&status) => {
            if n < 0 {
                ErrorKind::Transient
            } else {
                ErrorKind::Invalid
            }
        }
        _ => ecs::classify(operation, status, code),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::fixtures;

    fn response(status: u16, body: &str) -> HttpResponse {
        fixtures::response(status, body, &[])
    }

    #[test]
    fn a_plain_success_is_no_failure() {
        for body in [
            r#"{"RequestID":"1E3D5A1E0"}"#,
            r#"{"RequestId":"r"}"#,
            r#"{"resultCode":0,"result":{}}"#,
            r#"{"asapiSuccess":true,"asapiRequestId":"a"}"#,
            r#"{"success":true,"data":{}}"#,
        ] {
            assert!(
                failure(Operation::Revoke, &response(200, body)).is_none(),
                "{body}"
            );
        }
    }

    /// A 200 that does not say "success" is no success: retried, never
    /// recorded as revoked.
    #[test]
    fn a_200_without_a_success_marker_is_transient() {
        for body in [
            "",
            "<html><body>Sign in</body></html>",
            "{}",
            r#"{"result":null}"#,
        ] {
            let err = failure(Operation::Revoke, &response(200, body)).expect(body);
            assert_eq!(
                (err.kind, err.code.as_str()),
                (ErrorKind::Transient, "UnrecognizedResponse"),
                "{body}"
            );
        }
    }

    /// ASCM's lower-case envelope and a POP code arriving with HTTP 200 are failures.
    #[test]
    fn failures_inside_a_200_are_read_from_every_envelope() {
        let ascm = failure(
            Operation::Authorize,
            &response(
                200,
                r#"{"success":false,"code":"Forbidden.RAM","message":"no"}"#,
            ),
        )
        .expect("a failure");
        assert_eq!(ascm.code, "Forbidden.RAM");
        let pop = failure(
            Operation::Revoke,
            &response(
                200,
                r#"{"RequestId":"r-2","Code":"InvalidGroupAuthItem.NotFound","Message":"gone"}"#,
            ),
        )
        .expect("a failure");
        assert_eq!(
            (pop.kind, pop.request_id.as_deref()),
            (ErrorKind::AlreadyGone, Some("r-2"))
        );
    }

    /// The vendor page's failure example, which arrives as HTTP 200.
    #[test]
    fn the_result_code_envelope_is_a_failure_even_with_http_200() {
        let err = failure(
            Operation::Revoke,
            &response(
                200,
                r#"{"resultCode":-1,"resultMsg":"system error","result":null}"#,
            ),
        )
        .expect("a failure");
        assert_eq!(
            (err.kind, err.code.as_str(), err.message.as_str()),
            (ErrorKind::Transient, "-1", "system error")
        );
        let refused = failure(
            Operation::Authorize,
            &response(200, r#"{"resultCode":1001,"resultMsg":"denied"}"#),
        )
        .expect("a failure");
        assert_eq!(refused.kind, ErrorKind::Invalid);
    }

    /// POP codes classify as on public ECS: a missing rule is gone for a revoke.
    #[test]
    fn pop_errors_use_the_ecs_table() {
        let err = failure(
            Operation::Revoke,
            &response(400, r#"{"RequestId":"r-1","Code":"InvalidSecurityGroupRule.RuleNotExist","Message":"The specified rule does not exist."}"#),
        )
        .expect("a failure");
        assert_eq!(
            (err.kind, err.request_id.as_deref()),
            (ErrorKind::AlreadyGone, Some("r-1"))
        );
        let mismatch = failure(
            Operation::Authorize,
            &response(400, r#"{"Code":"IdempotentParameterMismatch"}"#),
        )
        .expect("a failure");
        assert_eq!(mismatch.kind, ErrorKind::Invalid);
    }

    #[test]
    fn an_asapi_failure_reads_its_own_fields() {
        let err = failure(
            Operation::Authorize,
            &response(
                200,
                r#"{"asapiSuccess":false,"asapiErrorCode":"Throttling.User","asapiErrorMessage":"slow down","asapiRequestId":"a-1"}"#,
            ),
        )
        .expect("a failure");
        assert_eq!(
            (err.kind, err.code.as_str(), err.request_id.as_deref()),
            (ErrorKind::Throttled, "Throttling.User", Some("a-1"))
        );
    }

    #[test]
    fn an_unreadable_5xx_is_transient() {
        let err = failure(Operation::Describe, &response(503, "gateway down")).expect("a failure");
        assert_eq!(err.kind, ErrorKind::Transient);
    }
}
