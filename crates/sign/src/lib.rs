//! Request signers for every provider: pure canonicalisation and HMAC.
//!
//! Nothing here does IO, reads the clock or draws randomness: the timestamp
//! and nonce of a request are parameters, so each signer is pinned byte for
//! byte by the official SDKs' vectors in `tests/vectors/expected.json`. The
//! clients and the fake cloud both sign and verify through these functions.

pub mod acs3;
pub mod bce;
pub mod encode;
pub mod rpc;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// Name/value pairs in the order the caller has them (query parameters or headers).
pub type Pairs = [(String, String)];

/// The parts of an HTTP request that the header-signing schemes (ACS3, bce) sign.
#[derive(Clone, Copy, Debug)]
pub struct SignedRequest<'a> {
    pub method: &'a str,
    /// Decoded path (`/` for Alibaba RPC).
    pub path: &'a str,
    /// Decoded query parameters; value-less flags such as `revokeRule` have an empty value.
    pub query: &'a Pairs,
    pub headers: &'a Pairs,
    /// Names of the headers to sign, any case and order. ACS3 signs exactly
    /// these; bce-auth-v1 reads an empty list as its default set.
    pub signed_headers: &'a [String],
}

/// Why an `Authorization` header could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed Authorization header: {0}")]
pub struct MalformedAuthorization(pub &'static str);

/// Lower-case hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Lower-case hex HMAC-SHA256 of `data` under `key`.
fn hmac_sha256_hex(key: &[u8], data: &[u8]) -> String {
    // HMAC accepts keys of any length, so construction cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data);
    hex::encode(mac.finalize().into_bytes())
}

/// Lower-cases header names and keeps the ones `keep` selects, trimmed.
fn lower_trimmed_headers<'a>(
    headers: &'a Pairs,
    keep: impl Fn(&str) -> bool + 'a,
) -> impl Iterator<Item = (String, &'a str)> + 'a {
    headers.iter().filter_map(move |(name, value)| {
        let name = name.trim().to_ascii_lowercase();
        keep(&name).then(|| (name, value.trim()))
    })
}

/// Header names lower-cased, trimmed, sorted, without empties or duplicates:
/// the form both clouds list them in an `Authorization` header.
fn header_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut names: Vec<String> = names
        .into_iter()
        .map(|name| name.trim().to_ascii_lowercase())
        .filter(|name| !name.is_empty())
        .collect();
    names.sort();
    names.dedup();
    names
}

#[cfg(any(test, feature = "vectors"))]
pub mod vectors;
