//! Alibaba Cloud ECS (API 2014-05-26, RPC style), and the client that Apsara
//! Stack shares: the same actions, behind a different gateway.
//!
//! [`EcsClient`] makes one attempt per trait call; the reconciler retries with
//! the same ClientToken, and every attempt is signed with a fresh nonce and
//! timestamp.

pub mod api;
pub mod errors;
pub mod wire;

use async_trait::async_trait;
use url::Url;

use self::{
    api::{RpcCall, RuleForm},
    wire::Attempt,
};
use super::{
    Authorize, DescribedRule, GroupRef, Provider, ProviderKind, Receipt, Revoke, apsara,
    credentials::Credentials,
    denials::Denials,
    error::{ErrorKind, Operation, ProviderError},
    http::{HttpRequest, HttpResponse, Transport, attempt_nonce, attempt_timestamp},
    settings::{
        ApsaraSettings, BodyMode, ConnectError, ProviderSettings, SignatureVersion, endpoint_url,
    },
};

/// Which gateway serves the ECS API, and so how requests are built and answers read.
#[derive(Clone, Debug)]
enum Gateway {
    /// Public Alibaba Cloud: `Permissions.N` and rule ids, V3 or V2 signing.
    Public(SignatureVersion),
    /// Apsara Stack: legacy flat parameters, V2 signing, organisation headers.
    Apsara(ApsaraSettings),
}

pub struct EcsClient {
    transport: Transport,
    credentials: Credentials,
    endpoint: Option<Url>,
    region: String,
    gateway: Gateway,
    denials: Denials,
}

impl EcsClient {
    /// A client for `settings.kind`, which must be Alibaba or Apsara Stack.
    pub fn new(
        settings: &ProviderSettings,
        credentials: Credentials,
        transport: Transport,
    ) -> Result<Self, ConnectError> {
        let gateway = match settings.kind {
            ProviderKind::Apsara if settings.endpoint.is_none() => {
                return Err(ConnectError::MissingEndpoint(ProviderKind::Apsara));
            }
            ProviderKind::Apsara => Gateway::Apsara(settings.apsara.clone()),
            _ => Gateway::Public(settings.signature_version),
        };
        Ok(Self {
            transport,
            credentials,
            endpoint: settings.endpoint.clone(),
            region: settings.region.clone(),
            gateway,
            denials: Denials::default(),
        })
    }

    fn rule_form(&self) -> RuleForm {
        match self.gateway {
            Gateway::Public(_) => RuleForm::Permissions,
            Gateway::Apsara(_) => RuleForm::Flat,
        }
    }

    /// The group's region, or the ProviderConfig's when the rule names none.
    fn region<'a>(&'a self, group: &'a GroupRef) -> &'a str {
        if group.region.is_empty() {
            &self.region
        } else {
            &group.region
        }
    }

    /// Builds this attempt's signed request.
    fn request(&self, region: &str, call: &RpcCall) -> Result<HttpRequest, ProviderError> {
        let (nonce, timestamp) = (attempt_nonce(), attempt_timestamp());
        let attempt = Attempt {
            nonce: &nonce,
            timestamp: &timestamp,
        };
        Ok(match &self.gateway {
            Gateway::Public(version) => {
                let url = endpoint_url(
                    self.endpoint.as_ref(),
                    &format!("ecs.{region}.aliyuncs.com"),
                    "/",
                )?;
                match version {
                    SignatureVersion::V3 => wire::v3_request(url, call, &self.credentials, attempt),
                    SignatureVersion::V2 => wire::v2_request(
                        url,
                        call,
                        &self.credentials,
                        attempt,
                        BodyMode::Query,
                        Vec::new(),
                    ),
                }
            }
            Gateway::Apsara(settings) => apsara::request(
                settings,
                self.endpoint.as_ref(),
                region,
                call,
                &self.credentials,
                attempt,
            )?,
        })
    }

    /// One attempt: sign, send, and classify any failure. Nothing the provider
    /// says reaches the caller before the credentials are redacted from it.
    async fn call(
        &self,
        operation: Operation,
        region: &str,
        call: &RpcCall,
    ) -> Result<HttpResponse, ProviderError> {
        let request = self.request(region, call)?;
        let outcome = match self.transport.send(request).await {
            Ok(response) => match self.failure(operation, &response) {
                None => Ok(response),
                Some(err) => Err(err),
            },
            Err(err) => Err(err),
        };
        outcome.map_err(|err| self.credentials.redact_error(err))
    }

    fn failure(&self, operation: Operation, response: &HttpResponse) -> Option<ProviderError> {
        match self.gateway {
            Gateway::Public(_) => {
                (!response.is_success()).then(|| errors::error_from_response(operation, response))
            }
            Gateway::Apsara(_) => apsara::errors::failure(operation, response),
        }
    }

    /// A permission denial counts against this group, not the credentials, at first.
    fn judged(&self, group: &GroupRef, err: ProviderError) -> ProviderError {
        self.denials
            .judge(&group.security_group_id, errors::DENIAL, err)
    }

    async fn mutate(
        &self,
        operation: Operation,
        group: &GroupRef,
        call: RpcCall,
    ) -> Result<Receipt, ProviderError> {
        let response = self
            .call(operation, self.region(group), &call)
            .await
            .map_err(|e| self.judged(group, e))?;
        Ok(Receipt {
            request_id: errors::request_id(&response),
        })
    }
}

/// Pages are capped so a gateway that keeps returning tokens cannot loop forever.
const MAX_DESCRIBE_PAGES: usize = 1000;

#[async_trait]
impl Provider for EcsClient {
    fn kind(&self) -> ProviderKind {
        match self.gateway {
            Gateway::Public(_) => ProviderKind::Alibaba,
            Gateway::Apsara(_) => ProviderKind::Apsara,
        }
    }

    async fn authorize(&self, call: &Authorize) -> Result<Receipt, ProviderError> {
        let rpc = api::authorize_call(call, self.region(&call.group), self.rule_form());
        self.mutate(Operation::Authorize, &call.group, rpc).await
    }

    async fn revoke(&self, call: &Revoke) -> Result<Receipt, ProviderError> {
        let rpc = api::revoke_call(call, self.region(&call.group), self.rule_form());
        self.mutate(Operation::Revoke, &call.group, rpc).await
    }

    async fn describe(&self, group: &GroupRef) -> Result<Vec<DescribedRule>, ProviderError> {
        let region = self.region(group);
        let mut rules = Vec::new();
        let mut next_token: Option<String> = None;
        for _ in 0..MAX_DESCRIBE_PAGES {
            let call = api::describe_call(group, region, next_token.as_deref());
            let response = self
                .call(Operation::Describe, region, &call)
                .await
                .map_err(|e| self.judged(group, e))?;
            let page = api::parse_describe(&response.body).map_err(|err| {
                ProviderError::new(
                    ErrorKind::Transient,
                    "MalformedResponse",
                    format!("describe answer: {err}"),
                )
                .with_request_id(errors::request_id(&response))
            })?;
            rules.extend(page.rules);
            match page.next_token {
                Some(token) if Some(&token) != next_token.as_ref() => next_token = Some(token),
                _ => return Ok(rules),
            }
        }
        Err(ProviderError::new(
            ErrorKind::Transient,
            "TooManyPages",
            format!("describe returned more than {MAX_DESCRIBE_PAGES} pages"),
        ))
    }
}
