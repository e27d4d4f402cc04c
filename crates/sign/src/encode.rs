//! The RFC 3986 percent-encoding both clouds sign with.
//!
//! Unreserved characters (`A-Z a-z 0-9 - _ . ~`) stay as they are; every other
//! UTF-8 byte becomes `%XY` with upper-case hex. So a space is `%20` (never
//! `+`), `*` is `%2A` and `~` stays literal, unlike form encoding.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// Everything but the RFC 3986 unreserved set.
const RESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// [`RESERVED`] without `/`, for Baidu's canonical URI.
const RESERVED_EXCEPT_SLASH: &AsciiSet = &RESERVED.remove(b'/');

/// Alibaba `percentEncode` and Baidu `UriEncode`.
pub fn percent_encode(s: &str) -> String {
    utf8_percent_encode(s, RESERVED).to_string()
}

/// Baidu `UriEncodeExceptSlash`: as [`percent_encode`], but `/` stays.
pub fn uri_encode_except_slash(s: &str) -> String {
    utf8_percent_encode(s, RESERVED_EXCEPT_SLASH).to_string()
}

/// `name=value` pairs joined with `&`, both sides [`percent_encode`]d: the
/// query strings and form bodies the clients send (never `+` for a space).
pub fn query_string(pairs: &super::Pairs) -> String {
    pairs
        .iter()
        .map(|(name, value)| format!("{}={}", percent_encode(name), percent_encode(value)))
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vectors;

    /// Space must never become `+`: both clouds would reject the signature.
    #[test]
    fn a_space_is_percent_twenty() {
        assert_eq!(percent_encode("managed by sg"), "managed%20by%20sg");
    }

    /// Java/Python form encoders leave `*` alone; RFC 3986 does not.
    #[test]
    fn an_asterisk_is_encoded_and_a_tilde_is_kept() {
        assert_eq!(percent_encode("a*b~c"), "a%2Ab~c");
    }

    #[test]
    fn slash_plus_and_equals_are_encoded() {
        assert_eq!(percent_encode("10.0.0.0/8"), "10.0.0.0%2F8");
        assert_eq!(percent_encode("a+b=c"), "a%2Bb%3Dc");
    }

    #[test]
    fn unreserved_characters_pass_through() {
        let unreserved = "AZaz09-_.~";
        assert_eq!(percent_encode(unreserved), unreserved);
    }

    /// Non-ASCII text is encoded byte by byte from its UTF-8 form, in upper-case hex.
    #[test]
    fn non_ascii_text_is_encoded_as_upper_case_utf8_bytes() {
        assert_eq!(percent_encode("测试"), "%E6%B5%8B%E8%AF%95");
        assert_eq!(percent_encode("é"), "%C3%A9");
    }

    #[test]
    fn an_empty_value_stays_empty() {
        assert_eq!(percent_encode(""), "");
        assert_eq!(uri_encode_except_slash(""), "");
    }

    /// Baidu's canonical URI keeps path separators but encodes everything else.
    #[test]
    fn the_baidu_uri_encoding_keeps_slashes_only() {
        assert_eq!(
            uri_encode_except_slash("/example/测试 a*b"),
            "/example/%E6%B5%8B%E8%AF%95%20a%2Ab"
        );
        assert_eq!(
            uri_encode_except_slash("/v2/securityGroup/g-1"),
            "/v2/securityGroup/g-1"
        );
    }

    #[test]
    fn a_query_string_keeps_order_and_empty_values() {
        let pairs = vec![
            ("revokeRule".to_string(), String::new()),
            ("clientToken".to_string(), "a b/c".to_string()),
        ];
        assert_eq!(query_string(&pairs), "revokeRule=&clientToken=a%20b%2Fc");
    }

    /// Every edge case, as both official SDKs encode it.
    #[test]
    fn every_edge_case_encodes_as_both_sdks_do() {
        for case in vectors::get("encoding").as_array().expect("cases") {
            let input = case["input"].as_str().expect("input");
            assert_eq!(percent_encode(input), case["alibaba"], "alibaba {input:?}");
            assert_eq!(percent_encode(input), case["baidu"], "baidu {input:?}");
            assert_eq!(
                uri_encode_except_slash(input),
                case["baidu_except_slash"],
                "{input:?}"
            );
        }
    }
}

#[cfg(test)]
mod properties {
    use percent_encoding::percent_decode_str;
    use proptest::prelude::*;

    use super::*;

    /// Only unreserved characters and `%XY` escapes with upper-case hex.
    fn well_formed(encoded: &str, keep: &[u8]) -> bool {
        let bytes = encoded.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            if b == b'%' {
                let hex = |c: u8| c.is_ascii_digit() || (b'A'..=b'F').contains(&c);
                if i + 2 >= bytes.len() || !hex(bytes[i + 1]) || !hex(bytes[i + 2]) {
                    return false;
                }
                i += 3;
            } else if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) || keep.contains(&b) {
                i += 1;
            } else {
                return false;
            }
        }
        true
    }

    proptest! {
        /// Any text encodes to the RFC 3986 form and decodes back to itself.
        #[test]
        fn any_text_encodes_and_decodes_back(text in "\\PC{0,60}|[ -~]{0,60}") {
            for (encoded, keep) in [(percent_encode(&text), &b""[..]), (uri_encode_except_slash(&text), &b"/"[..])] {
                prop_assert!(well_formed(&encoded, keep), "{encoded}");
                prop_assert_eq!(percent_decode_str(&encoded).decode_utf8().expect("UTF-8"), text.as_str());
            }
        }
    }
}
