//! Baidu AI Cloud BCC security groups (REST/JSON under `/v2`, `bce-auth-v1`).
//!
//! One attempt per trait call; the reconciler retries with the same
//! clientToken, and each attempt signs with the current time.

pub mod api;
pub mod errors;

use async_trait::async_trait;
use url::Url;

use self::api::BaiduCall;
use super::{
    Authorize, DescribedRule, GroupRef, Provider, ProviderKind, Receipt, Revoke,
    credentials::Credentials,
    denials::Denials,
    endpoint::endpoint_url,
    error::{ErrorKind, Operation, ProviderError},
    http::{HttpResponse, Transport, attempt_timestamp},
    settings::ProviderSettings,
};

pub struct BaiduClient {
    transport: Transport,
    credentials: Credentials,
    endpoint: Option<Url>,
    region: String,
    denials: Denials,
}

impl BaiduClient {
    pub fn new(
        settings: &ProviderSettings,
        credentials: Credentials,
        transport: Transport,
    ) -> Self {
        Self {
            transport,
            credentials,
            endpoint: settings.endpoint.clone(),
            region: settings.region.clone(),
            denials: Denials::default(),
        }
    }

    /// One attempt: sign, send, and classify any failure, with credentials
    /// redacted from everything the provider said.
    async fn call(
        &self,
        operation: Operation,
        group: &GroupRef,
        call: &BaiduCall,
    ) -> Result<HttpResponse, ProviderError> {
        let region = if group.region.is_empty() {
            &self.region
        } else {
            &group.region
        };
        // BCC requests carry no region: with an endpoint override every call
        // goes to that endpoint's region. Another region's group would be
        // "not found" there, which a revoke takes for "already gone".
        if self.endpoint.is_some() && *region != self.region {
            return Err(ProviderError::new(
                ErrorKind::Invalid,
                "RegionMismatch",
                format!(
                    "region {region} differs from the ProviderConfig's {}, whose spec.endpoint \
                     serves one region only: use a ProviderConfig for {region}",
                    self.region
                ),
            ));
        }
        let base = endpoint_url(
            self.endpoint.as_ref(),
            &format!("bcc.{region}.baidubce.com"),
            "/",
        )?;
        let request = api::signed_request(base, call, &self.credentials, &attempt_timestamp());
        let outcome = match self.transport.send(request).await {
            Ok(response) if response.is_success() => Ok(response),
            Ok(response) => Err(errors::error_from_response(operation, &response)),
            Err(err) => Err(err),
        };
        outcome.map_err(|err| {
            let err = self.credentials.redact_error(err);
            self.denials
                .judge(&group.security_group_id, errors::DENIAL, err)
        })
    }
}

#[async_trait]
impl Provider for BaiduClient {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Baidu
    }

    async fn authorize(&self, call: &Authorize) -> Result<Receipt, ProviderError> {
        let response = self
            .call(
                Operation::Authorize,
                &call.group,
                &api::authorize_call(call)?,
            )
            .await?;
        Ok(Receipt {
            request_id: errors::request_id(&response),
        })
    }

    async fn revoke(&self, call: &Revoke) -> Result<Receipt, ProviderError> {
        let response = self
            .call(Operation::Revoke, &call.group, &api::revoke_call(call)?)
            .await?;
        Ok(Receipt {
            request_id: errors::request_id(&response),
        })
    }

    async fn describe(&self, group: &GroupRef) -> Result<Vec<DescribedRule>, ProviderError> {
        let response = self
            .call(Operation::Describe, group, &api::describe_call(group))
            .await?;
        api::parse_describe(&response.body).map_err(|err| {
            ProviderError::new(
                ErrorKind::Transient,
                "MalformedResponse",
                format!("group detail answer: {err}"),
            )
            .with_request_id(errors::request_id(&response))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::connect;

    /// With an endpoint override, a group of another region is refused
    /// before any call, instead of being looked up in the wrong region.
    #[tokio::test]
    async fn another_region_is_refused_when_the_endpoint_is_fixed() {
        let mut config = ProviderSettings::new(super::super::ProviderKind::Baidu, "bj");
        config.endpoint = Some(Url::parse("http://127.0.0.1:9/").expect("url"));
        let client = connect(&config, Credentials::new("ak", "sk", None)).expect("client");
        let group = GroupRef {
            region: "gz".into(),
            security_group_id: "g-1".into(),
        };
        let err = client.describe(&group).await.expect_err("refused");
        assert_eq!(
            (err.kind, err.code.as_str()),
            (ErrorKind::Invalid, "RegionMismatch")
        );
        let same = GroupRef {
            region: "bj".into(),
            ..group
        };
        let err = client.describe(&same).await.expect_err("nothing listens");
        assert_eq!(err.code, "ConnectionFailed");
    }
}
