//! Alibaba RPC signature, `SignatureMethod=HMAC-SHA1`, `SignatureVersion=1.0`
//! (the "V2" RPC mechanism; Apsara Stack gateways accept only this one).
//!
//! Every request parameter is signed, empty ones included (the legacy SDK sends
//! `SignatureType=`), sorted by name and encoded twice: once to build the
//! canonical query, once more as a whole inside the string to sign.

use base64::{Engine, engine::general_purpose::STANDARD};
use hmac::{Hmac, Mac};
use sha1::Sha1;

use super::{Pairs, encode::percent_encode};

/// The parameter that carries the signature itself; never part of the signed set.
pub const SIGNATURE_PARAM: &str = "Signature";

/// `name=value` pairs, encoded, sorted by name (then value), joined with `&`.
pub fn canonicalized_query_string(params: &Pairs) -> String {
    let mut signed: Vec<_> = params
        .iter()
        .filter(|(name, _)| name != SIGNATURE_PARAM)
        .collect();
    signed.sort();
    signed
        .iter()
        .map(|(name, value)| format!("{}={}", percent_encode(name), percent_encode(value)))
        .collect::<Vec<_>>()
        .join("&")
}

/// `METHOD&%2F&percentEncode(canonicalized query string)`.
///
/// A `Signature` parameter in `params` is ignored, so a verifier may pass what it received.
pub fn string_to_sign(method: &str, params: &Pairs) -> String {
    format!(
        "{}&{}&{}",
        method.to_ascii_uppercase(),
        percent_encode("/"),
        percent_encode(&canonicalized_query_string(params))
    )
}

/// Base64 HMAC-SHA1 of the string to sign, keyed with `secret + "&"`.
pub fn signature(secret: &str, method: &str, params: &Pairs) -> String {
    let key = format!("{secret}&");
    // HMAC accepts keys of any length, so construction cannot fail.
    let mut mac =
        Hmac::<Sha1>::new_from_slice(key.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(string_to_sign(method, params).as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vectors::{self, pairs};

    /// The published documentation example (A1), byte for byte.
    #[test]
    fn the_documentation_example_signs_as_the_sdk_does() {
        let a1 = vectors::get("A1");
        let params = pairs(&a1["params"]);
        let method = a1["method"].as_str().expect("method");
        assert_eq!(string_to_sign(method, &params), a1["string_to_sign"]);
        assert_eq!(
            signature(a1["secret"].as_str().expect("secret"), method, &params),
            a1["signature"]
        );
    }

    /// A2: a RevokeSecurityGroup built by the legacy ECS SDK, with `Permissions.1.*`
    /// and the empty `SignatureType`, signed as POST.
    #[test]
    fn a_revoke_with_permissions_and_empty_values_signs_as_the_sdk_does() {
        let a2 = vectors::get("A2");
        let params = pairs(&a2["params"]);
        assert!(
            params
                .iter()
                .any(|(k, v)| k == "SignatureType" && v.is_empty())
        );
        let method = a2["method"].as_str().expect("method");
        assert_eq!(string_to_sign(method, &params), a2["string_to_sign"]);
        assert_eq!(
            signature(a2["secret"].as_str().expect("secret"), method, &params),
            a2["signature"]
        );
    }

    /// A verifier passes the parameters it received, `Signature` included.
    #[test]
    fn a_received_signature_parameter_is_not_signed() {
        let a1 = vectors::get("A1");
        let mut params = pairs(&a1["params"]);
        params.push((SIGNATURE_PARAM.into(), "anything".into()));
        assert_eq!(string_to_sign("GET", &params), a1["string_to_sign"]);
    }

    /// GET and POST sign differently, so a verifier must use the method it saw.
    #[test]
    fn the_method_is_part_of_the_signature() {
        let params = vec![("Action".to_string(), "X".to_string())];
        assert_ne!(
            signature("s", "GET", &params),
            signature("s", "POST", &params)
        );
    }

    /// The inner string is encoded a second time: `:` becomes `%253A`, space `%2520`.
    #[test]
    fn the_canonical_query_is_encoded_twice_in_the_string_to_sign() {
        let params = vec![
            ("Timestamp".to_string(), "2025-01-02T03:04:05Z".to_string()),
            ("Description".to_string(), "a b*".to_string()),
            ("Empty".to_string(), String::new()),
        ];
        assert_eq!(
            string_to_sign("post", &params),
            "POST&%2F&Description%3Da%2520b%252A%26Empty%3D%26Timestamp%3D2025-01-02T03%253A04%253A05Z"
        );
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    fn params() -> impl Strategy<Value = Vec<(String, String)>> {
        prop::collection::vec(("\\PC{1,12}", "\\PC{0,24}"), 1..8)
    }

    proptest! {
        /// The order parameters arrive in never changes the signature, and a
        /// received `Signature` is never part of what is signed.
        #[test]
        fn order_and_a_received_signature_do_not_matter(mut p in params(), seed in any::<u64>(), sig in "\\PC{0,30}") {
            let signed = signature("secret", "POST", &p);
            let len = p.len();
            p.rotate_left(usize::try_from(seed % len as u64).unwrap_or(0));
            p.reverse();
            p.push((SIGNATURE_PARAM.to_owned(), sig));
            prop_assert_eq!(signature("secret", "POST", &p), signed);
        }

        /// Any change to one value changes the string to sign: nothing a
        /// request says can be altered under the same signature.
        #[test]
        fn every_value_is_signed(p in params(), index in any::<prop::sample::Index>(), other in "\\PC{0,24}") {
            let mut changed = p.clone();
            let i = index.index(changed.len());
            prop_assume!(changed[i].1 != other && changed[i].0 != SIGNATURE_PARAM);
            changed[i].1 = other;
            prop_assert_ne!(string_to_sign("POST", &p), string_to_sign("POST", &changed));
        }
    }
}
