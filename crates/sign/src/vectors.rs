//! The official SDKs' signing vectors, shared by the signer tests.
//!
//! `tests/vectors/compute_vectors.py` writes `expected.json` from the pinned
//! SDKs and `tests/vectors/check.sh` keeps it honest, so these tests and the
//! SDKs cannot drift apart.

use std::sync::LazyLock;

use serde_json::Value;

use super::SignedRequest;

static VECTORS: LazyLock<Value> = LazyLock::new(|| {
    serde_json::from_str(include_str!("../../../tests/vectors/expected.json"))
        .expect("expected.json is JSON")
});

/// One named vector (`A1`, `B2`, `C3`, …).
pub fn get(name: &str) -> &'static Value {
    let vector = &VECTORS[name];
    assert!(
        vector.is_object() || vector.is_array(),
        "no vector named {name}"
    );
    vector
}

/// `[[name, value], …]` as owned pairs.
pub fn pairs(value: &Value) -> Vec<(String, String)> {
    value
        .as_array()
        .expect("an array of pairs")
        .iter()
        .map(|pair| (str_at(pair, 0), str_at(pair, 1)))
        .collect()
}

/// `["a", "b"]` as owned strings.
pub fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .expect("an array of strings")
        .iter()
        .map(|s| s.as_str().expect("a string").to_string())
        .collect()
}

fn str_at(pair: &Value, index: usize) -> String {
    pair[index].as_str().expect("a string pair").to_string()
}

/// A request vector's inputs, owned so a test can borrow a signer's request view.
pub struct Vector {
    pub json: &'static Value,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    /// The header list the vector's `Authorization` declares (empty when absent).
    pub signed_headers: Vec<String>,
}

impl Vector {
    pub fn load(name: &str) -> Self {
        let json = get(name);
        let signed = &json["signed_headers"];
        Self {
            json,
            query: pairs(&json["query"]),
            headers: pairs(&json["headers"]),
            signed_headers: if signed.is_null() {
                Vec::new()
            } else {
                strings(signed)
            },
        }
    }

    /// A string field of the vector.
    pub fn str(&self, key: &str) -> &'static str {
        self.json[key]
            .as_str()
            .unwrap_or_else(|| panic!("vector field {key} missing"))
    }

    /// The request, signing the headers the vector declares.
    pub fn request(&self) -> SignedRequest<'_> {
        self.request_signing(&self.signed_headers)
    }

    /// The request, signing `signed_headers` instead.
    pub fn request_signing<'a>(&'a self, signed_headers: &'a [String]) -> SignedRequest<'a> {
        SignedRequest {
            method: self.str("method"),
            path: self.str("path"),
            query: &self.query,
            headers: &self.headers,
            signed_headers,
        }
    }
}
