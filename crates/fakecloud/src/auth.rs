//! Signature checks for every scheme the fake cloud accepts, built on the
//! project's one implementation of each algorithm in [`secgroup_sign`].
//!
//! The verifiers rebuild the signature from what the request declares
//! (Alibaba V3 `SignedHeaders`, Baidu's listed-or-default headers), enforce
//! the time windows and Alibaba's nonce uniqueness, and say what was wrong in
//! terms each dialect turns into its provider's error code.

use std::collections::{HashMap, VecDeque};

use jiff::{SignedDuration, Timestamp};

use secgroup_sign::{self as sign, Pairs, SignedRequest, acs3, bce, rpc};

/// Alibaba accepts a request timestamp up to 15 minutes off the server clock
/// and remembers nonces at least that long.
const ALIBABA_WINDOW: SignedDuration = SignedDuration::from_mins(15);

#[derive(Debug, Default)]
pub struct AccessKeys {
    secrets: HashMap<String, String>,
}

impl AccessKeys {
    pub fn add(&mut self, id: String, secret: String) {
        self.secrets.insert(id, secret);
    }

    fn secret(&self, id: &str) -> Result<&str, AuthError> {
        self.secrets
            .get(id)
            .map(String::as_str)
            .ok_or(AuthError::UnknownAccessKey)
    }
}

/// Nonces seen in the last window, per access key.
#[derive(Debug, Default)]
pub struct NonceCache {
    seen: HashMap<(String, String), Timestamp>,
    order: VecDeque<(Timestamp, (String, String))>,
}

impl NonceCache {
    /// Records the nonce; `false` if it was used within the window.
    fn fresh(&mut self, access_key_id: &str, nonce: &str, now: Timestamp) -> bool {
        while let Some((at, _)) = self.order.front() {
            if now.duration_since(*at) < ALIBABA_WINDOW * 2 {
                break;
            }
            if let Some((_, key)) = self.order.pop_front() {
                self.seen.remove(&key);
            }
        }
        let key = (access_key_id.to_owned(), nonce.to_owned());
        if self.seen.contains_key(&key) {
            return false;
        }
        self.seen.insert(key.clone(), now);
        self.order.push_back((now, key));
        true
    }
}

/// Why a request's credentials were refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthError {
    /// No credentials at all.
    Missing,
    /// Credentials present but incomplete or unreadable.
    Malformed(String),
    UnknownAccessKey,
    /// The recomputed signature differs; carries the server's string to sign.
    Mismatch(String),
    /// The timestamp is missing or unreadable.
    BadTimestamp,
    /// The timestamp is outside the accepted window.
    Expired,
    NonceUsed,
}

/// Request parts the verifiers read, with names as received.
pub struct Received<'a> {
    pub method: &'a str,
    pub path: &'a str,
    /// Decoded query parameters.
    pub query: &'a Pairs,
    /// Every RPC parameter: query ∪ form body.
    pub params: &'a Pairs,
    pub headers: &'a Pairs,
    pub body: &'a [u8],
}

fn header<'a>(headers: &'a Pairs, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
}

fn param<'a>(params: &'a Pairs, name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// Which Alibaba scheme a request uses, if any.
pub fn uses_acs3(headers: &Pairs) -> bool {
    header(headers, "authorization").is_some_and(|v| v.starts_with(acs3::ALGORITHM))
}

/// The access key a request claims, before anything is verified.
pub fn claimed_alibaba_key(received: &Received<'_>) -> Option<String> {
    if uses_acs3(received.headers) {
        let auth = acs3::parse_authorization(header(received.headers, "authorization")?).ok()?;
        return Some(auth.credential);
    }
    param(received.params, "AccessKeyId").map(str::to_owned)
}

pub fn claimed_baidu_key(headers: &Pairs) -> Option<String> {
    let auth = bce::parse_authorization(header(headers, "authorization")?).ok()?;
    Some(auth.access_key_id)
}

fn parse_alibaba_time(text: &str) -> Result<Timestamp, AuthError> {
    text.parse::<Timestamp>()
        .map_err(|_| AuthError::BadTimestamp)
}

fn within_alibaba_window(at: Timestamp, now: Timestamp) -> Result<(), AuthError> {
    if now.duration_since(at).abs() > ALIBABA_WINDOW {
        return Err(AuthError::Expired);
    }
    Ok(())
}

/// RPC `SignatureVersion=1.0`, HMAC-SHA1 over query ∪ form body, key `secret&`.
pub fn verify_rpc(
    keys: &AccessKeys,
    nonces: &mut NonceCache,
    received: &Received<'_>,
    now: Timestamp,
) -> Result<String, AuthError> {
    let params = received.params;
    let Some(access_key_id) = param(params, "AccessKeyId") else {
        return Err(AuthError::Missing);
    };
    let given = param(params, rpc::SIGNATURE_PARAM)
        .ok_or_else(|| AuthError::Malformed("Signature is missing".into()))?;
    let method = param(params, "SignatureMethod").unwrap_or_default();
    if method != "HMAC-SHA1" {
        return Err(AuthError::Malformed(format!(
            "SignatureMethod {method:?} is not supported"
        )));
    }
    if param(params, "SignatureVersion") != Some("1.0") {
        return Err(AuthError::Malformed("SignatureVersion must be 1.0".into()));
    }
    let nonce = param(params, "SignatureNonce")
        .filter(|n| !n.is_empty())
        .ok_or_else(|| AuthError::Malformed("SignatureNonce is missing".into()))?;
    let timestamp = parse_alibaba_time(param(params, "Timestamp").unwrap_or_default())?;
    within_alibaba_window(timestamp, now)?;
    let secret = keys.secret(access_key_id)?;
    if rpc::signature(secret, received.method, params) != given {
        return Err(AuthError::Mismatch(rpc::string_to_sign(
            received.method,
            params,
        )));
    }
    if !nonces.fresh(access_key_id, nonce, now) {
        return Err(AuthError::NonceUsed);
    }
    Ok(access_key_id.to_owned())
}

/// `ACS3-HMAC-SHA256` over the headers the request declares as signed.
pub fn verify_acs3(
    keys: &AccessKeys,
    nonces: &mut NonceCache,
    received: &Received<'_>,
    now: Timestamp,
) -> Result<String, AuthError> {
    let headers = received.headers;
    let value = header(headers, "authorization").ok_or(AuthError::Missing)?;
    let auth = acs3::parse_authorization(value).map_err(|e| AuthError::Malformed(e.to_string()))?;
    let unsigned: Vec<String> = acs3::required_signed_headers(headers)
        .into_iter()
        .filter(|required| !auth.signed_headers.contains(required))
        .collect();
    if !unsigned.is_empty() {
        return Err(AuthError::Malformed(format!(
            "headers {} must be signed",
            unsigned.join(";")
        )));
    }
    let date = header(headers, "x-acs-date").ok_or(AuthError::BadTimestamp)?;
    within_alibaba_window(parse_alibaba_time(date)?, now)?;
    let nonce = header(headers, "x-acs-signature-nonce")
        .filter(|n| !n.is_empty())
        .ok_or_else(|| AuthError::Malformed("x-acs-signature-nonce is missing".into()))?;
    let payload_sha256 = header(headers, acs3::CONTENT_SHA256)
        .ok_or_else(|| AuthError::Malformed(format!("{} is missing", acs3::CONTENT_SHA256)))?;
    let secret = keys.secret(&auth.credential)?;
    let request = SignedRequest {
        method: received.method,
        path: received.path,
        query: received.query,
        headers,
        signed_headers: &auth.signed_headers,
    };
    if sign::sha256_hex(received.body) != payload_sha256
        || acs3::signature(secret, &request) != auth.signature
    {
        let canonical = acs3::canonical_request(&request);
        return Err(AuthError::Mismatch(acs3::string_to_sign(&canonical)));
    }
    if !nonces.fresh(&auth.credential, nonce, now) {
        return Err(AuthError::NonceUsed);
    }
    Ok(auth.credential)
}

/// `bce-auth-v1`, valid from its timestamp for its expiration period.
pub fn verify_bce(
    keys: &AccessKeys,
    received: &Received<'_>,
    now: Timestamp,
) -> Result<String, AuthError> {
    let value = header(received.headers, "authorization").ok_or(AuthError::Missing)?;
    let auth = bce::parse_authorization(value).map_err(|e| AuthError::Malformed(e.to_string()))?;
    let secret = keys.secret(&auth.access_key_id)?;
    let from = auth
        .timestamp
        .parse::<Timestamp>()
        .map_err(|_| AuthError::BadTimestamp)?;
    let period = i64::try_from(auth.expiration_seconds).unwrap_or(i64::MAX);
    let until = from.saturating_add(SignedDuration::from_secs(period));
    if now < from || until.is_ok_and(|until| now > until) {
        return Err(AuthError::Expired);
    }
    let request = SignedRequest {
        method: received.method,
        path: received.path,
        query: received.query,
        headers: received.headers,
        signed_headers: &auth.signed_headers,
    };
    let key = bce::signing_key(secret, &auth.context());
    if bce::signature(&key, &request) != auth.signature {
        return Err(AuthError::Mismatch(bce::canonical_request(&request)));
    }
    Ok(auth.access_key_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nonce_is_refused_the_second_time_and_forgotten_after_the_window() {
        let mut nonces = NonceCache::default();
        let start = Timestamp::UNIX_EPOCH;
        assert!(nonces.fresh("ak", "n1", start));
        assert!(!nonces.fresh("ak", "n1", start + SignedDuration::from_mins(10)));
        assert!(nonces.fresh("other-ak", "n1", start));
        assert!(nonces.fresh("ak", "n1", start + SignedDuration::from_mins(31)));
    }

    #[test]
    fn alibaba_timestamps_may_be_fifteen_minutes_off_either_way() {
        let now: Timestamp = "2025-01-02T03:04:05Z".parse().expect("valid");
        let at = |text: &str| within_alibaba_window(parse_alibaba_time(text)?, now);
        assert_eq!(at("2025-01-02T02:50:05Z"), Ok(()));
        assert_eq!(at("2025-01-02T03:19:05Z"), Ok(()));
        assert_eq!(at("2025-01-02T02:49:04Z"), Err(AuthError::Expired));
        assert_eq!(at("2025-01-02T03:19:06Z"), Err(AuthError::Expired));
        assert_eq!(at("yesterday"), Err(AuthError::BadTimestamp));
    }
}
