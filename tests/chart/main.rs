//! The Helm chart: what it renders (`render`), and the chart installed into
//! the test control plane with the operator running under the chart's
//! ServiceAccount (`install`). Needs helm and, for `install`, the test
//! cluster: tests/e2e.sh runs it; `cargo test` alone leaves this target out.

mod helm;
mod install;
mod render;
mod uninstall;

// Shared with the end-to-end suite: process handling, the fake cloud, waits.
#[allow(dead_code)]
#[path = "../e2e/support.rs"]
mod support;
