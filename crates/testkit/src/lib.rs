//! What the suites under `tests/` (e2e, chart, soak, bench) share: one
//! wrapper for the child processes they start ([`Tied`]), where the built
//! binaries are ([`binary`]), free loopback ports and readiness waits
//! ([`net`]), a log directory per run ([`LogDir`]), the fake cloud as a
//! process with its admin client ([`FakeCloud`]), and ProviderConfigs for it
//! ([`manifests`]).

mod fakecloud;
pub mod manifests;
pub mod net;
mod paths;
mod process;

pub use fakecloud::FakeCloud;
pub use paths::{LogDir, binary};
pub use process::{Output, Tied, with_input};
pub use secgroup_fakecloud::{
    RuleView, TokenView, client::Admin, faults::FaultPlan, journal::CallRecord,
};
