//! Connects ProviderConfigs to the real provider clients.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;

use super::resolve::Connector;
use crate::{api::ProviderConfig, provider::Provider};

/// The production connector.
pub struct Clients;

impl Connector for Clients {
    fn connect(
        &self,
        _config: &ProviderConfig,
        _secret: &Secret,
    ) -> Result<Arc<dyn Provider>, String> {
        Err("provider clients are not linked in".into())
    }
}
