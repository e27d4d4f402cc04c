//! The Helm chart: what it renders (`render`), the chart installed into
//! the test control plane with the operator running under the chart's
//! ServiceAccount (`install`), and the operator image (`make image`) against
//! the Dockerfile (`oci`) and booted with runc as the chart's pod (`image`).
//! Needs helm, the built images and, for `install` and `image`, the test
//! cluster: tests/e2e.sh runs it; `cargo test` alone leaves this target out.

mod admission;
mod helm;
mod image;
mod install;
mod oci;
mod render;
mod uninstall;

// Shared with the end-to-end suite: process handling, the fake cloud, waits.
#[allow(dead_code)]
#[path = "../e2e/support.rs"]
mod support;
