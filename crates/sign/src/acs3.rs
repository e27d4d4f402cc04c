//! Alibaba signature V3, `ACS3-HMAC-SHA256`.
//!
//! RPC actions carry `Action`/`Version` in `x-acs-*` headers; the business
//! parameters stay in the query. The signed headers are an explicit list that
//! the `Authorization` header declares, so a verifier rebuilds the canonical
//! headers from that list rather than from a fixed set (the official SDK signs
//! `accept` and `user-agent` too).

use super::{
    MalformedAuthorization, Pairs, SignedRequest, encode, header_names, hmac_sha256_hex,
    lower_trimmed_headers, sha256_hex,
};

pub const ALGORITHM: &str = "ACS3-HMAC-SHA256";
/// Header holding the hex SHA-256 of the body; its value is the signed payload hash.
pub const CONTENT_SHA256: &str = "x-acs-content-sha256";

/// What an `ACS3-HMAC-SHA256` `Authorization` header declares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acs3Authorization {
    pub credential: String,
    /// Lower-case names, sorted.
    pub signed_headers: Vec<String>,
    pub signature: String,
}

/// The headers V3 requires to be signed when present: `host`, `content-type`
/// and every `x-acs-*` header. Lower case, sorted, without duplicates.
pub fn required_signed_headers(headers: &Pairs) -> Vec<String> {
    let required = lower_trimmed_headers(headers, |name| {
        name == "host" || name == "content-type" || name.starts_with("x-acs-")
    })
    .map(|(name, _)| name)
    .collect::<Vec<_>>();
    header_names(required.iter().map(String::as_str))
}

/// Query parameters encoded, sorted by name then value, `name=value` joined with `&`.
pub fn canonical_query_string(query: &Pairs) -> String {
    let mut encoded: Vec<(String, String)> = query
        .iter()
        .map(|(name, value)| (encode::percent_encode(name), encode::percent_encode(value)))
        .collect();
    encoded.sort();
    encoded
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// One `name:value\n` line per signed header, sorted by name; repeated headers
/// have their trimmed values sorted and joined with `,`.
pub fn canonical_headers(headers: &Pairs, signed_headers: &[String]) -> String {
    header_names(signed_headers.iter().map(String::as_str))
        .iter()
        .map(|signed| {
            let mut values: Vec<&str> = lower_trimmed_headers(headers, |name| name == signed)
                .map(|(_, value)| value)
                .collect();
            values.sort_unstable();
            format!("{signed}:{}\n", values.join(","))
        })
        .collect()
}

/// The value of `x-acs-content-sha256`, which V3 signs as the payload hash.
/// (A verifier separately checks it against the body it received.)
fn payload_sha256(headers: &Pairs) -> &str {
    lower_trimmed_headers(headers, |name| name == CONTENT_SHA256)
        .map(|(_, value)| value)
        .next()
        .unwrap_or_default()
}

pub fn canonical_request(request: &SignedRequest<'_>) -> String {
    format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        request.method.to_ascii_uppercase(),
        encode::uri_encode_except_slash(request.path),
        canonical_query_string(request.query),
        canonical_headers(request.headers, request.signed_headers),
        header_names(request.signed_headers.iter().map(String::as_str)).join(";"),
        payload_sha256(request.headers),
    )
}

pub fn string_to_sign(canonical_request: &str) -> String {
    format!("{ALGORITHM}\n{}", sha256_hex(canonical_request.as_bytes()))
}

/// Hex HMAC-SHA256 of the string to sign, keyed with the raw secret.
pub fn signature(secret: &str, request: &SignedRequest<'_>) -> String {
    hmac_sha256_hex(
        secret.as_bytes(),
        string_to_sign(&canonical_request(request)).as_bytes(),
    )
}

/// The `Authorization` header value for `request`.
pub fn authorization(access_key_id: &str, secret: &str, request: &SignedRequest<'_>) -> String {
    format!(
        "{ALGORITHM} Credential={access_key_id},SignedHeaders={},Signature={}",
        header_names(request.signed_headers.iter().map(String::as_str)).join(";"),
        signature(secret, request)
    )
}

/// Reads `ACS3-HMAC-SHA256 Credential=…,SignedHeaders=a;b,Signature=…`.
pub fn parse_authorization(header: &str) -> Result<Acs3Authorization, MalformedAuthorization> {
    let rest = header
        .trim()
        .strip_prefix(ALGORITHM)
        .and_then(|rest| rest.strip_prefix(' '))
        .ok_or(MalformedAuthorization(
            "expected the ACS3-HMAC-SHA256 scheme",
        ))?;
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for field in rest.split(',') {
        let (name, value) = field
            .trim()
            .split_once('=')
            .ok_or(MalformedAuthorization("expected name=value fields"))?;
        match name {
            "Credential" => credential = Some(value.to_string()),
            "SignedHeaders" => signed_headers = Some(value),
            "Signature" => signature = Some(value.to_string()),
            _ => return Err(MalformedAuthorization("unknown field")),
        }
    }
    let signed_headers = signed_headers.ok_or(MalformedAuthorization("missing SignedHeaders"))?;
    Ok(Acs3Authorization {
        credential: credential
            .filter(|c| !c.is_empty())
            .ok_or(MalformedAuthorization("missing Credential"))?,
        signed_headers: header_names(signed_headers.split(';')),
        signature: signature
            .filter(|s| !s.is_empty())
            .ok_or(MalformedAuthorization("missing Signature"))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vectors::Vector;

    fn sign(v: &Vector) -> String {
        authorization(v.str("access_key_id"), v.str("secret"), &v.request())
    }

    /// B1, the documentation's RunInstances example: every intermediate string.
    #[test]
    fn the_documentation_example_signs_as_the_sdk_does() {
        let b1 = Vector::load("B1");
        let canonical = canonical_request(&b1.request());
        assert_eq!(canonical, b1.json["canonical_request"]);
        assert_eq!(string_to_sign(&canonical), b1.json["string_to_sign"]);
        assert_eq!(sign(&b1), b1.json["authorization"]);
    }

    /// B2: the full header set the official SDK signs (accept, user-agent,
    /// x-acs-credentials-provider) reproduces its signature.
    #[test]
    fn the_sdk_header_set_signs_as_the_sdk_does() {
        let b2 = Vector::load("B2");
        let canonical = canonical_request(&b2.request());
        assert_eq!(canonical, b2.json["canonical_request"]);
        assert_eq!(string_to_sign(&canonical), b2.json["string_to_sign"]);
        assert_eq!(
            signature(b2.str("secret"), &b2.request()),
            b2.json["signature"]
        );
        assert_eq!(sign(&b2), b2.json["authorization"]);
    }

    /// B3: only host and x-acs-* signed, which is what our client sends.
    #[test]
    fn the_minimal_header_set_signs_as_the_sdk_does() {
        let b3 = Vector::load("B3");
        assert_eq!(required_signed_headers(&b3.headers), b3.signed_headers);
        assert_eq!(sign(&b3), b3.json["authorization"]);
    }

    /// B4: revoke by rule ids, flattened as `SecurityGroupRuleId.N`.
    #[test]
    fn a_revoke_by_rule_ids_signs_as_the_sdk_does() {
        let b4 = Vector::load("B4");
        assert_eq!(sign(&b4), b4.json["authorization"]);
    }

    /// The verifier's path: parse what the client declared, then recompute.
    #[test]
    fn a_parsed_authorization_verifies_against_its_declared_headers() {
        let b2 = Vector::load("B2");
        let parsed = parse_authorization(b2.str("authorization")).expect("well formed");
        assert_eq!(parsed.credential, "testid");
        assert_eq!(parsed.signed_headers, b2.signed_headers);
        let declared = SignedRequest {
            signed_headers: &parsed.signed_headers,
            ..b2.request()
        };
        assert_eq!(signature(b2.str("secret"), &declared), parsed.signature);
    }

    /// Changing a signed header after signing changes the signature.
    #[test]
    fn altering_a_signed_header_breaks_the_signature() {
        let mut b3 = Vector::load("B3");
        let expected = b3.str("authorization");
        for (name, value) in &mut b3.headers {
            if name == "x-acs-action" {
                *value = "AuthorizeSecurityGroup".into();
            }
        }
        assert_ne!(sign(&b3), expected);
    }

    #[test]
    fn headers_are_matched_case_insensitively_and_repeated_values_are_joined_sorted() {
        let headers = vec![
            ("X-Acs-B".to_string(), " 2 ".to_string()),
            ("x-acs-b".to_string(), "1".to_string()),
            ("Host".to_string(), "h".to_string()),
            ("User-Agent".to_string(), "ua".to_string()),
        ];
        let signed = required_signed_headers(&headers);
        assert_eq!(signed, ["host", "x-acs-b"]);
        assert_eq!(
            canonical_headers(&headers, &signed),
            "host:h\nx-acs-b:1,2\n"
        );
    }

    /// Query values are sorted by name, then by value, after RFC 3986 encoding.
    #[test]
    fn the_canonical_query_encodes_and_sorts_names_then_values() {
        let query = vec![
            ("b".to_string(), "x y".to_string()),
            ("a".to_string(), "2".to_string()),
            ("a".to_string(), "1*".to_string()),
            ("c".to_string(), String::new()),
        ];
        assert_eq!(canonical_query_string(&query), "a=1%2A&a=2&b=x%20y&c=");
    }

    #[test]
    fn malformed_authorization_headers_are_refused() {
        for header in [
            "",
            "ACS3-HMAC-SHA1 Credential=a,SignedHeaders=host,Signature=x",
            "ACS3-HMAC-SHA256 Credential=a,SignedHeaders=host",
            "ACS3-HMAC-SHA256 Credential=,SignedHeaders=host,Signature=x",
            "ACS3-HMAC-SHA256 Credential=a;SignedHeaders=host;Signature=x",
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

    fn pairs() -> impl Strategy<Value = Vec<(String, String)>> {
        prop::collection::vec(("x-acs-[a-z]{1,10}", "[ -~]{0,20}"), 0..6)
    }

    proptest! {
        /// Header order, name case and surrounding blanks do not change what is signed.
        #[test]
        fn header_order_and_case_do_not_matter(headers in pairs(), query in prop::collection::vec(("\\PC{1,8}", "\\PC{0,12}"), 0..5)) {
            let names = required_signed_headers(&headers);
            let request = SignedRequest { method: "POST", path: "/", query: &query, headers: &headers, signed_headers: &names };
            let shuffled: Vec<(String, String)> = headers.iter().rev()
                .map(|(n, v)| (format!(" {} ", n.to_ascii_uppercase()), format!("  {v}")))
                .collect();
            let mut reversed_query = query.clone();
            reversed_query.reverse();
            let again = SignedRequest { method: "post", path: "/", query: &reversed_query, headers: &shuffled, signed_headers: &names };
            prop_assert_eq!(canonical_request(&request), canonical_request(&again));
        }

        /// What `authorization` writes, `parse_authorization` reads back.
        #[test]
        fn an_authorization_header_reads_back(id in "[A-Za-z0-9]{1,30}", headers in pairs()) {
            let names = required_signed_headers(&headers);
            let request = SignedRequest { method: "POST", path: "/", query: &[], headers: &headers, signed_headers: &names };
            let header = authorization(&id, "secret", &request);
            let parsed = parse_authorization(&header).expect("own header parses");
            prop_assert_eq!(parsed.credential, id);
            prop_assert_eq!(&parsed.signed_headers, &names);
            prop_assert_eq!(parsed.signature, signature("secret", &request));
        }

        /// Any text as an `Authorization` header is read or refused; never a panic.
        #[test]
        fn any_header_is_read_or_refused(header in "\\PC{0,80}|ACS3-HMAC-SHA256 [ -~]{0,60}") {
            if let Ok(parsed) = parse_authorization(&header) {
                prop_assert!(!parsed.credential.is_empty() && !parsed.signature.is_empty());
            }
        }
    }
}
