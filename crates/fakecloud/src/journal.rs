//! Every provider call the fake cloud answered, for tests to assert on.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::cloud::Cloud;

/// Older calls are forgotten beyond this many, so long benchmarks stay bounded.
const CAPACITY: usize = 100_000;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallRecord {
    pub seq: u64,
    /// When the call was answered, RFC 3339 UTC with milliseconds, so
    /// benchmarks can time what led to a call.
    pub time: String,
    pub provider: Cloud,
    pub action: String,
    pub region: Option<String>,
    pub group: Option<String>,
    pub client_token: Option<String>,
    pub access_key_id: Option<String>,
    pub request_id: String,
    /// Business parameters (signing parameters left out); Baidu adds `body`.
    pub parameters: BTreeMap<String, String>,
    /// Provider headers worth asserting on (Apsara's `x-acs-organizationid`, ...).
    pub headers: BTreeMap<String, String>,
    pub status: u16,
    /// `OK` on success, else the provider's error code; `Dropped` for a closed connection.
    pub code: String,
    /// Whether the call changed the cloud.
    pub effect: bool,
    /// Answered from an earlier call with the same ClientToken.
    pub replayed: bool,
    /// The injected fault that answered the call, if any.
    pub fault: Option<String>,
}

impl CallRecord {
    /// Whether the call asked for a change (authorize, revoke, modify), not a read.
    pub fn is_mutation(&self) -> bool {
        !self.action.starts_with("Describe") && self.action != "GetSecurityGroup"
    }

    /// When the call was answered, `None` if `time` does not parse.
    pub fn timestamp(&self) -> Option<jiff::Timestamp> {
        self.time.parse().ok()
    }

    /// Whether the call was refused as throttled, by an injected fault or a rate limit.
    pub fn throttled(&self) -> bool {
        self.fault.as_deref() == Some("throttle") || self.code.contains("Throttling")
    }
}

/// The current time as a call record carries it: `2024-05-01T10:00:00.123Z`.
pub fn now_millis() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

#[derive(Debug, Default)]
pub struct Journal {
    next_seq: u64,
    calls: VecDeque<CallRecord>,
}

impl Journal {
    pub fn push(&mut self, mut call: CallRecord) {
        self.next_seq += 1;
        call.seq = self.next_seq;
        if self.calls.len() == CAPACITY {
            self.calls.pop_front();
        }
        self.calls.push_back(call);
    }

    pub fn calls(&self) -> impl Iterator<Item = &CallRecord> {
        self.calls.iter()
    }

    pub fn clear(&mut self) {
        self.calls.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_times_carry_milliseconds_and_parse_as_rfc3339() {
        let text = now_millis();
        let (_, fraction) = text.split_once('.').expect("a fraction");
        assert_eq!(fraction.len(), 4, "{text}");
        assert!(fraction.ends_with('Z'), "{text}");
        text.parse::<jiff::Timestamp>().expect("RFC 3339");
    }
}
