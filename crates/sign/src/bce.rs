//! Baidu `bce-auth-v1` (HMAC-SHA256 with a derived signing key).
//!
//! The signing key is the hex HMAC of the auth-string prefix under the secret;
//! the signature is the hex HMAC of the canonical request under that hex
//! string. Header values are percent-encoded too (`:` in `x-bce-date` becomes
//! `%3A`), and the query is sorted as encoded `k=v` strings, not by key.

use super::{
    MalformedAuthorization, Pairs, SignedRequest, encode, header_names, hmac_sha256_hex,
    lower_trimmed_headers,
};

pub const VERSION: &str = "bce-auth-v1";
/// Headers signed when the signed-header list is empty; `x-bce-*` are always added.
pub const DEFAULT_SIGNED_HEADERS: [&str; 4] =
    ["host", "content-length", "content-type", "content-md5"];
/// The one `x-bce-*` header that is never signed (the Go SDK's rule).
const UNSIGNED_BCE_HEADER: &str = "x-bce-request-id";

/// Who signs, when, and for how long the signature is valid.
#[derive(Clone, Copy, Debug)]
pub struct AuthContext<'a> {
    pub access_key_id: &'a str,
    /// UTC `yyyy-mm-ddThh:mm:ssZ`; also sent as `x-bce-date`.
    pub timestamp: &'a str,
    pub expiration_seconds: u64,
}

/// What a `bce-auth-v1` `Authorization` header declares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BceAuthorization {
    pub access_key_id: String,
    pub timestamp: String,
    pub expiration_seconds: u64,
    /// Lower-case names, sorted; empty means the default set.
    pub signed_headers: Vec<String>,
    pub signature: String,
}

impl BceAuthorization {
    pub fn context(&self) -> AuthContext<'_> {
        AuthContext {
            access_key_id: &self.access_key_id,
            timestamp: &self.timestamp,
            expiration_seconds: self.expiration_seconds,
        }
    }
}

/// `bce-auth-v1/{accessKeyId}/{timestamp}/{expirationPeriodInSeconds}`.
pub fn auth_string_prefix(context: &AuthContext<'_>) -> String {
    format!(
        "{VERSION}/{}/{}/{}",
        context.access_key_id, context.timestamp, context.expiration_seconds
    )
}

/// Hex HMAC-SHA256 of the auth-string prefix under the secret.
pub fn signing_key(secret: &str, context: &AuthContext<'_>) -> String {
    hmac_sha256_hex(secret.as_bytes(), auth_string_prefix(context).as_bytes())
}

/// The path with everything but `/` encoded; never empty.
pub fn canonical_uri(path: &str) -> String {
    if path.starts_with('/') {
        encode::uri_encode_except_slash(path)
    } else {
        format!("/{}", encode::uri_encode_except_slash(path))
    }
}

/// Every parameter but `authorization` as encoded `k=v`, sorted as strings.
pub fn canonical_query_string(query: &Pairs) -> String {
    let mut encoded: Vec<String> = query
        .iter()
        .filter(|(name, _)| !name.eq_ignore_ascii_case("authorization"))
        .map(|(name, value)| {
            format!(
                "{}={}",
                encode::percent_encode(name),
                encode::percent_encode(value)
            )
        })
        .collect();
    encoded.sort();
    encoded.join("&")
}

/// Whether a (lower-case) header is signed under the given explicit list.
fn is_signed(name: &str, explicit: &[String]) -> bool {
    let listed = if explicit.is_empty() {
        DEFAULT_SIGNED_HEADERS.contains(&name)
    } else {
        explicit.iter().any(|listed| listed == name)
    };
    listed || (name.starts_with("x-bce-") && name != UNSIGNED_BCE_HEADER)
}

/// Encoded `name:value` lines for the signed headers with a non-empty value,
/// sorted and joined with `\n` (no trailing newline).
pub fn canonical_headers(headers: &Pairs, signed_headers: &[String]) -> String {
    let explicit = header_names(signed_headers.iter().map(String::as_str));
    let mut lines: Vec<String> = lower_trimmed_headers(headers, |name| is_signed(name, &explicit))
        .filter(|(_, value)| !value.is_empty())
        .map(|(name, value)| {
            format!(
                "{}:{}",
                encode::percent_encode(&name),
                encode::percent_encode(value)
            )
        })
        .collect();
    lines.sort();
    lines.join("\n")
}

pub fn canonical_request(request: &SignedRequest<'_>) -> String {
    format!(
        "{}\n{}\n{}\n{}",
        request.method.to_ascii_uppercase(),
        canonical_uri(request.path),
        canonical_query_string(request.query),
        canonical_headers(request.headers, request.signed_headers),
    )
}

/// Hex HMAC-SHA256 of the canonical request under the (hex) signing key.
pub fn signature(signing_key: &str, request: &SignedRequest<'_>) -> String {
    hmac_sha256_hex(
        signing_key.as_bytes(),
        canonical_request(request).as_bytes(),
    )
}

/// `{prefix}/{signedHeaders}/{signature}`; signedHeaders is empty for the default set.
pub fn authorization(
    secret: &str,
    context: &AuthContext<'_>,
    request: &SignedRequest<'_>,
) -> String {
    format!(
        "{}/{}/{}",
        auth_string_prefix(context),
        header_names(request.signed_headers.iter().map(String::as_str)).join(";"),
        signature(&signing_key(secret, context), request)
    )
}

/// Reads `bce-auth-v1/{ak}/{timestamp}/{expiration}/{signedHeaders}/{signature}`.
pub fn parse_authorization(header: &str) -> Result<BceAuthorization, MalformedAuthorization> {
    let parts: Vec<&str> = header.trim().split('/').collect();
    let [
        version,
        access_key_id,
        timestamp,
        expiration,
        signed_headers,
        signature,
    ] = parts[..]
    else {
        return Err(MalformedAuthorization("expected six '/'-separated fields"));
    };
    if version != VERSION {
        return Err(MalformedAuthorization("expected bce-auth-v1"));
    }
    if access_key_id.is_empty() || timestamp.is_empty() || signature.is_empty() {
        return Err(MalformedAuthorization(
            "empty access key, timestamp or signature",
        ));
    }
    Ok(BceAuthorization {
        access_key_id: access_key_id.to_string(),
        timestamp: timestamp.to_string(),
        expiration_seconds: expiration
            .parse()
            .map_err(|_| MalformedAuthorization("expiration is not a number"))?,
        signed_headers: header_names(signed_headers.split(';')),
        signature: signature.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vectors::{self, Vector, pairs, strings};

    fn context(v: &Vector) -> AuthContext<'static> {
        AuthContext {
            access_key_id: v.str("access_key_id"),
            timestamp: v.str("timestamp"),
            expiration_seconds: v.json["expiration_seconds"].as_u64().expect("expiration"),
        }
    }

    fn sign(v: &Vector, signed_headers: &[String]) -> String {
        authorization(
            v.str("secret"),
            &context(v),
            &v.request_signing(signed_headers),
        )
    }

    /// C1, the documentation's worked example: key, canonical request, and both
    /// forms of the auth string (default and explicit header list).
    #[test]
    fn the_documentation_example_signs_as_the_sdk_does() {
        let c1 = Vector::load("C1");
        assert_eq!(
            signing_key(c1.str("secret"), &context(&c1)),
            c1.json["signing_key"]
        );
        assert_eq!(
            canonical_request(&c1.request()),
            c1.json["canonical_request"]
        );
        assert_eq!(sign(&c1, &[]), c1.json["authorization_default"]);
        let explicit = strings(&c1.json["explicit_signed_headers"]);
        assert_eq!(
            canonical_request(&c1.request_signing(&explicit)),
            c1.json["canonical_request"]
        );
        assert_eq!(sign(&c1, &explicit), c1.json["authorization_explicit"]);
    }

    /// C2: revokeRule exactly as the Python SDK sends it (no content-type).
    #[test]
    fn a_python_sdk_revoke_signs_as_the_sdk_does() {
        let c2 = Vector::load("C2");
        let key = signing_key(c2.str("secret"), &context(&c2));
        assert_eq!(key, c2.json["signing_key"]);
        assert_eq!(
            canonical_request(&c2.request()),
            c2.json["canonical_request"]
        );
        assert_eq!(signature(&key, &c2.request()), c2.json["signature"]);
        assert_eq!(sign(&c2, &[]), c2.json["authorization"]);
    }

    /// C3: the Go SDK's header set, with a JSON content type to encode.
    #[test]
    fn a_go_sdk_style_revoke_signs_as_the_sdk_does() {
        let c3 = Vector::load("C3");
        assert_eq!(
            canonical_request(&c3.request()),
            c3.json["canonical_request"]
        );
        assert_eq!(sign(&c3, &[]), c3.json["authorization"]);
    }

    /// The documentation's sort example: encoded `k=v` strings sort as strings.
    #[test]
    fn the_query_sorts_encoded_pairs_so_text10_precedes_text1_and_text() {
        let sort = vectors::get("bce_query_sort");
        assert_eq!(
            canonical_query_string(&pairs(&sort["query"])),
            sort["canonical_query"]
        );
        assert_eq!(
            sort["canonical_query"],
            "text10=test&text1=%E6%B5%8B%E8%AF%95&text="
        );
    }

    /// A verifier parses the header, rebuilds the context and recomputes.
    #[test]
    fn a_parsed_authorization_verifies_with_its_own_context() {
        let c1 = Vector::load("C1");
        let parsed = parse_authorization(c1.str("authorization_explicit")).expect("well formed");
        assert_eq!(parsed.access_key_id, c1.str("access_key_id"));
        assert_eq!(
            parsed.signed_headers,
            strings(&c1.json["explicit_signed_headers"])
        );
        let key = signing_key(c1.str("secret"), &parsed.context());
        assert_eq!(
            signature(&key, &c1.request_signing(&parsed.signed_headers)),
            parsed.signature
        );
        assert!(
            parse_authorization(c1.str("authorization_default"))
                .expect("ok")
                .signed_headers
                .is_empty()
        );
    }

    /// `x-bce-*` headers are signed even when an explicit list omits them,
    /// and empty header values are left out.
    #[test]
    fn bce_headers_are_always_signed_and_empty_values_are_not() {
        let headers = vec![
            ("Host".to_string(), "h".to_string()),
            ("x-bce-date".to_string(), "2025-01-02T03:04:05Z".to_string()),
            ("x-bce-request-id".to_string(), "r".to_string()),
            ("Content-Type".to_string(), "  ".to_string()),
            ("User-Agent".to_string(), "ua".to_string()),
        ];
        assert_eq!(
            canonical_headers(&headers, &["Host".to_string()]),
            "host:h\nx-bce-date:2025-01-02T03%3A04%3A05Z"
        );
        assert_eq!(
            canonical_headers(&headers, &[]),
            "host:h\nx-bce-date:2025-01-02T03%3A04%3A05Z"
        );
    }

    #[test]
    fn the_canonical_uri_encodes_non_ascii_and_keeps_slashes() {
        assert_eq!(
            canonical_uri("/example/测试"),
            "/example/%E6%B5%8B%E8%AF%95"
        );
        assert_eq!(canonical_uri(""), "/");
    }

    #[test]
    fn an_authorization_query_parameter_is_never_signed() {
        let query = vec![
            ("Authorization".to_string(), "x".to_string()),
            ("a".to_string(), "1".to_string()),
        ];
        assert_eq!(canonical_query_string(&query), "a=1");
    }

    #[test]
    fn malformed_authorization_headers_are_refused() {
        for header in [
            "",
            "bce-auth-v2/ak/2025-01-02T03:04:05Z/1800//sig",
            "bce-auth-v1/ak/2025-01-02T03:04:05Z/soon//sig",
            "bce-auth-v1/ak/2025-01-02T03:04:05Z/1800/sig",
            "bce-auth-v1//2025-01-02T03:04:05Z/1800//sig",
        ] {
            assert!(
                parse_authorization(header).is_err(),
                "{header:?} was accepted"
            );
        }
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    fn context(id: &str) -> AuthContext<'_> {
        AuthContext {
            access_key_id: id,
            timestamp: "2025-01-02T03:04:05Z",
            expiration_seconds: 1800,
        }
    }

    proptest! {
        /// Query and header order, and header name case, do not change what is signed.
        #[test]
        fn order_and_case_do_not_matter(
            query in prop::collection::vec(("\\PC{1,8}", "\\PC{0,12}"), 0..5),
            headers in prop::collection::vec(("x-bce-[a-z]{1,8}|host|content-type", "[!-~]{1,20}"), 0..5),
        ) {
            let request = SignedRequest { method: "PUT", path: "/v2/securityGroup/g-1", query: &query, headers: &headers, signed_headers: &[] };
            let (mut q, mut h) = (query.clone(), headers.iter().map(|(n, v)| (n.to_ascii_uppercase(), v.clone())).collect::<Vec<_>>());
            q.reverse();
            h.reverse();
            let again = SignedRequest { method: "put", path: "/v2/securityGroup/g-1", query: &q, headers: &h, signed_headers: &[] };
            prop_assert_eq!(canonical_request(&request), canonical_request(&again));
        }

        /// What `authorization` writes, `parse_authorization` reads back.
        #[test]
        fn an_authorization_header_reads_back(id in "[A-Za-z0-9]{1,30}", signed in prop::collection::vec("[a-z-]{1,12}", 0..4)) {
            let request = SignedRequest { method: "GET", path: "/", query: &[], headers: &[], signed_headers: &signed };
            let header = authorization("secret", &context(&id), &request);
            let parsed = parse_authorization(&header).expect("own header parses");
            prop_assert_eq!(&parsed.access_key_id, &id);
            prop_assert_eq!(parsed.expiration_seconds, 1800);
            prop_assert_eq!(parsed.signed_headers, header_names(signed.iter().map(String::as_str)));
            prop_assert_eq!(parsed.signature, signature(&signing_key("secret", &context(&id)), &request));
        }

        /// Any text as an `Authorization` header is read or refused; never a panic.
        #[test]
        fn any_header_is_read_or_refused(header in "\\PC{0,80}|bce-auth-v1/[ -~]{0,60}") {
            let _ = parse_authorization(&header);
        }
    }
}
