//! Every provider call the fake cloud answered, for tests to assert on.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::provider::ProviderKind;

/// Older calls are forgotten beyond this many, so long benchmarks stay bounded.
const CAPACITY: usize = 100_000;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallRecord {
    pub seq: u64,
    pub time: String,
    #[serde(with = "super::state::provider_name")]
    pub provider: ProviderKind,
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
