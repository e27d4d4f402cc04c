//! ClientToken replay: the same token with the same parameters gets the
//! first answer again and changes nothing; with other parameters it gets
//! `IdempotentParameterMismatch`.
//!
//! Only successful answers are remembered: a call that failed had no effect,
//! so retrying it with its token must be allowed to act. Tokens live for 24
//! hours after they were last seen (Baidu's documented window; Alibaba
//! documents none).

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::cloud::Cloud;

const RETENTION: SignedDuration = SignedDuration::from_hours(24);

/// Whose token it is: tokens are per account (access key) and, on Alibaba, per action.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenKey {
    pub provider: Cloud,
    pub access_key_id: String,
    /// Alibaba scopes tokens by action; Baidu by the token alone (empty here).
    pub scope: String,
    pub token: String,
}

/// A response exactly as first sent, to be sent again on replay.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedResponse {
    pub status: u16,
    pub body: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenRecord {
    pub key: TokenKey,
    pub action: String,
    pub fingerprint: String,
    pub response: CachedResponse,
    /// Calls that presented this token and were answered from it (first one included).
    pub calls: u64,
    /// Calls under this token that changed the cloud. More than one is a bug in the fake.
    pub effects: u64,
    pub last_seen: Timestamp,
}

pub enum Lookup {
    New,
    Replay(CachedResponse),
    Mismatch,
}

#[derive(Debug, Default)]
pub struct Tokens {
    records: HashMap<TokenKey, TokenRecord>,
}

impl Tokens {
    pub fn lookup(&mut self, key: &TokenKey, fingerprint: &str, now: Timestamp) -> Lookup {
        self.records
            .retain(|_, r| now.duration_since(r.last_seen) < RETENTION);
        let Some(record) = self.records.get_mut(key) else {
            return Lookup::New;
        };
        record.last_seen = now;
        if record.fingerprint != fingerprint {
            return Lookup::Mismatch;
        }
        record.calls += 1;
        Lookup::Replay(record.response.clone())
    }

    pub fn remember(
        &mut self,
        key: TokenKey,
        action: &str,
        fingerprint: String,
        response: CachedResponse,
        effect: bool,
        now: Timestamp,
    ) {
        let record = TokenRecord {
            key: key.clone(),
            action: action.to_owned(),
            fingerprint,
            response,
            calls: 1,
            effects: u64::from(effect),
            last_seen: now,
        };
        self.records.insert(key, record);
    }

    pub fn records(&self) -> impl Iterator<Item = &TokenRecord> {
        self.records.values()
    }

    pub fn from_records(records: Vec<TokenRecord>) -> Self {
        let records = records.into_iter().map(|r| (r.key.clone(), r)).collect();
        Self { records }
    }
}

/// ClientTokens of calls not answered yet, kept outside the world lock.
pub type InFlightTokens = Arc<Mutex<HashSet<TokenKey>>>;

/// A ClientToken marked in flight; the mark goes when this drops.
pub struct InFlight {
    tokens: InFlightTokens,
    key: TokenKey,
}

fn marks(tokens: &InFlightTokens) -> MutexGuard<'_, HashSet<TokenKey>> {
    tokens.lock().unwrap_or_else(PoisonError::into_inner)
}

impl InFlight {
    /// Marks `key`; `None` when it is marked already.
    pub fn enter(tokens: InFlightTokens, key: TokenKey) -> Option<Self> {
        let fresh = marks(&tokens).insert(key.clone());
        fresh.then_some(Self { tokens, key })
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        marks(&self.tokens).remove(&self.key);
    }
}

/// A stable digest of the parameters that make up a request's intent.
pub fn fingerprint<'a>(parts: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut hash = Sha256::new();
    for (name, value) in parts {
        // Length prefixes keep ("ab","c") and ("a","bc") apart.
        for part in [name, value] {
            hash.update((part.len() as u64).to_be_bytes());
            hash.update(part.as_bytes());
        }
    }
    hex::encode(hash.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(token: &str) -> TokenKey {
        TokenKey {
            provider: Cloud::Alibaba,
            access_key_id: "ak".into(),
            scope: "RevokeSecurityGroup".into(),
            token: token.into(),
        }
    }

    fn ok() -> CachedResponse {
        CachedResponse {
            status: 200,
            body: r#"{"RequestId":"A"}"#.into(),
        }
    }

    #[test]
    fn same_token_same_parameters_replays_and_different_parameters_mismatch() {
        let now = Timestamp::UNIX_EPOCH;
        let mut tokens = Tokens::default();
        let fp = fingerprint([("PortRange", "22/22")]);
        assert!(matches!(tokens.lookup(&key("t"), &fp, now), Lookup::New));
        tokens.remember(key("t"), "Revoke", fp.clone(), ok(), true, now);
        assert!(matches!(tokens.lookup(&key("t"), &fp, now), Lookup::Replay(r) if r == ok()));
        let other = fingerprint([("PortRange", "23/23")]);
        assert!(matches!(
            tokens.lookup(&key("t"), &other, now),
            Lookup::Mismatch
        ));
        assert!(matches!(tokens.lookup(&key("u"), &fp, now), Lookup::New));
        let record = tokens.records().next().expect("one record");
        assert_eq!((record.calls, record.effects), (2, 1));
    }

    #[test]
    fn tokens_expire_a_day_after_they_were_last_seen() {
        let start = Timestamp::UNIX_EPOCH;
        let mut tokens = Tokens::default();
        let fp = fingerprint([]);
        tokens.remember(key("t"), "Revoke", fp.clone(), ok(), true, start);
        let later = start + SignedDuration::from_hours(23);
        assert!(matches!(
            tokens.lookup(&key("t"), &fp, later),
            Lookup::Replay(_)
        ));
        let much_later = later + SignedDuration::from_hours(23);
        assert!(matches!(
            tokens.lookup(&key("t"), &fp, much_later),
            Lookup::Replay(_)
        ));
        let too_late = much_later + SignedDuration::from_hours(25);
        assert!(matches!(
            tokens.lookup(&key("t"), &fp, too_late),
            Lookup::New
        ));
    }

    #[test]
    fn fingerprints_separate_names_from_values() {
        assert_ne!(fingerprint([("ab", "c")]), fingerprint([("a", "bc")]));
    }
}
