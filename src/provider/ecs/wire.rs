//! Signed HTTP requests for RPC calls, in either signature version. Pure: the
//! nonce and timestamp of the attempt are parameters.

use http::Method;
use url::Url;

use super::api::{API_VERSION, RpcCall};
use crate::{
    provider::{
        credentials::Credentials,
        http::{HttpRequest, host_header},
        settings::BodyMode,
    },
    sign::{SignedRequest, acs3, encode, rpc, sha256_hex},
};

/// What makes each attempt's signature unique; a retry draws new values.
#[derive(Clone, Copy, Debug)]
pub struct Attempt<'a> {
    pub nonce: &'a str,
    /// UTC `yyyy-MM-ddTHH:mm:ssZ`.
    pub timestamp: &'a str,
}

/// V3: business parameters in the query, action and version in `x-acs-*`
/// headers, `host` and every `x-acs-*` header signed.
pub fn v3_request(
    mut url: Url,
    call: &RpcCall,
    credentials: &Credentials,
    attempt: Attempt<'_>,
) -> HttpRequest {
    let mut headers = vec![
        ("host".to_string(), host_header(&url)),
        ("x-acs-action".to_string(), call.action.to_string()),
        ("x-acs-version".to_string(), API_VERSION.to_string()),
        ("x-acs-date".to_string(), attempt.timestamp.to_string()),
        (
            "x-acs-signature-nonce".to_string(),
            attempt.nonce.to_string(),
        ),
        (acs3::CONTENT_SHA256.to_string(), sha256_hex(b"")),
    ];
    if let Some(token) = &credentials.security_token {
        headers.push((
            "x-acs-security-token".to_string(),
            token.expose().to_string(),
        ));
    }
    let signed_headers = acs3::required_signed_headers(&headers);
    let authorization = acs3::authorization(
        &credentials.access_key_id,
        credentials.access_key_secret.expose(),
        &SignedRequest {
            method: Method::POST.as_str(),
            path: url.path(),
            query: &call.params,
            headers: &headers,
            signed_headers: &signed_headers,
        },
    );
    headers.push(("authorization".to_string(), authorization));
    headers.push(("accept".to_string(), "application/json".to_string()));
    url.set_query(
        Some(&encode::query_string(&call.params))
            .filter(|q| !q.is_empty())
            .map(String::as_str),
    );
    HttpRequest {
        method: Method::POST,
        url,
        headers,
        body: Vec::new(),
    }
}

/// V2 (RPC HMAC-SHA1): the common parameters join the business ones, all are
/// signed, and `Signature` travels with them in the query or a form body.
pub fn v2_request(
    mut url: Url,
    call: &RpcCall,
    credentials: &Credentials,
    attempt: Attempt<'_>,
    body_mode: BodyMode,
    mut headers: Vec<(String, String)>,
) -> HttpRequest {
    let mut params = call.params.clone();
    params.extend(
        [
            ("Action", call.action),
            ("Version", API_VERSION),
            ("Format", "JSON"),
            ("AccessKeyId", credentials.access_key_id.as_str()),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureVersion", "1.0"),
            ("SignatureNonce", attempt.nonce),
            ("Timestamp", attempt.timestamp),
        ]
        .map(|(name, value)| (name.to_string(), value.to_string())),
    );
    if let Some(token) = &credentials.security_token {
        params.push(("SecurityToken".to_string(), token.expose().to_string()));
    }
    let signature = rpc::signature(
        credentials.access_key_secret.expose(),
        Method::POST.as_str(),
        &params,
    );
    params.push((rpc::SIGNATURE_PARAM.to_string(), signature));
    let encoded = encode::query_string(&params);
    headers.push(("accept".to_string(), "application/json".to_string()));
    let body = match body_mode {
        BodyMode::Query => {
            url.set_query(Some(&encoded));
            Vec::new()
        }
        BodyMode::Form => {
            url.set_query(None);
            headers.push((
                "content-type".to_string(),
                "application/x-www-form-urlencoded; charset=UTF-8".to_string(),
            ));
            encoded.into_bytes()
        }
    };
    HttpRequest {
        method: Method::POST,
        url,
        headers,
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sign::{acs3::parse_authorization, vectors};

    const ATTEMPT: Attempt<'static> = Attempt {
        nonce: "3a0a3b1c5d6e7f8091a2b3c4d5e6f708",
        timestamp: "2025-01-02T03:04:05Z",
    };

    fn b2_call() -> RpcCall {
        RpcCall {
            action: "RevokeSecurityGroup",
            params: vectors::pairs(&vectors::get("B2")["query"]),
        }
    }

    /// The request we send for B2's call is vector B3: the minimal signed header set.
    #[test]
    fn a_v3_request_is_signed_exactly_like_vector_b3() {
        let request = v3_request(
            Url::parse("https://ecs.cn-hangzhou.aliyuncs.com/").expect("url"),
            &b2_call(),
            &Credentials::new("testid", "testsecret", None),
            ATTEMPT,
        );
        assert_eq!(
            request.header("authorization"),
            vectors::get("B3")["authorization"].as_str()
        );
        assert_eq!(request.method, Method::POST);
        assert!(request.body.is_empty());
        let query = request.url.query().expect("query");
        assert!(
            query.contains("Permissions.1.Description=managed%20by%20sg-operator"),
            "{query}"
        );
        assert!(
            query.contains("Permissions.1.SourceCidrIp=10.0.0.0%2F8"),
            "{query}"
        );
    }

    /// An STS token is sent and signed as `x-acs-security-token`.
    #[test]
    fn a_v3_security_token_is_a_signed_header() {
        let request = v3_request(
            Url::parse("http://127.0.0.1:9000/").expect("url"),
            &b2_call(),
            &Credentials::new("testid", "testsecret", Some("sts".into())),
            ATTEMPT,
        );
        assert_eq!(request.header("host"), Some("127.0.0.1:9000"));
        let auth =
            parse_authorization(request.header("authorization").expect("auth")).expect("parses");
        assert!(
            auth.signed_headers
                .contains(&"x-acs-security-token".to_string())
        );
        assert!(!auth.signed_headers.contains(&"accept".to_string()));
    }

    /// With vector A2's parameters, nonce and timestamp, V2 produces A2's signature.
    #[test]
    fn a_v2_request_carries_vector_a2_s_signature() {
        let a2 = vectors::get("A2");
        let business: Vec<_> = vectors::pairs(&a2["params"])
            .into_iter()
            .filter(|(k, _)| {
                ["SecurityGroupId", "ClientToken", "RegionId"].contains(&k.as_str())
                    || k.starts_with("Permissions.")
            })
            .collect();
        let call = RpcCall {
            action: "RevokeSecurityGroup",
            params: business,
        };
        let request = v2_request(
            Url::parse("https://ecs.cn-hangzhou.aliyuncs.com/").expect("url"),
            &call,
            &Credentials::new("testid", "testsecret", None),
            ATTEMPT,
            BodyMode::Query,
            Vec::new(),
        );
        assert_eq!(request.url.path(), "/");
        request.assert_v2_signed("testsecret");
        let wire = request.sent_params();
        // The legacy SDK also signs an empty `SignatureType`; with it, the sets are identical.
        let mut as_sdk = wire;
        as_sdk.push(("SignatureType".into(), String::new()));
        assert_eq!(rpc::string_to_sign("POST", &as_sdk), a2["string_to_sign"]);
        assert_eq!(
            rpc::signature("testsecret", "POST", &as_sdk),
            a2["signature"]
        );
    }

    /// Form mode moves every parameter, the signature included, into the body.
    #[test]
    fn a_v2_form_request_has_an_empty_query_and_a_signed_form_body() {
        let request = v2_request(
            Url::parse("http://127.0.0.1:9000/asapi/v3").expect("url"),
            &b2_call(),
            &Credentials::new("testid", "testsecret", Some("sts".into())),
            ATTEMPT,
            BodyMode::Form,
            vec![("x-acs-organizationid".into(), "org-1".into())],
        );
        assert_eq!(request.url.query(), None);
        assert_eq!(
            request.header("content-type"),
            Some("application/x-www-form-urlencoded; charset=UTF-8")
        );
        assert_eq!(request.header("x-acs-organizationid"), Some("org-1"));
        request.assert_v2_signed("testsecret");
        assert_eq!(request.param("SecurityToken").as_deref(), Some("sts"));
        assert_eq!(
            request.param("Action").as_deref(),
            Some("RevokeSecurityGroup")
        );
    }
}
