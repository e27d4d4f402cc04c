//! Alibaba Cloud ECS (API 2014-05-26, RPC style), and the client that Apsara
//! Stack shares: the same actions, behind a different gateway. [`apsara`]
//! holds what that gateway does differently; it builds on [`api`], [`wire`]
//! and [`errors`] here, and this client dispatches to it.
//!
//! [`EcsClient`] makes one attempt per trait call; the reconciler retries with
//! the same ClientToken, and every attempt is signed with a fresh nonce and
//! timestamp.

pub mod api;
pub mod apsara;
pub mod errors;
pub mod wire;

use async_trait::async_trait;
use url::Url;

use self::{
    api::{RpcCall, RuleForm},
    wire::Attempt,
};
use super::{
    Authorize, DescribedRule, GroupRef, Modify, NicType, Provider, ProviderKind, Receipt, Revoke,
    credentials::Credentials,
    denials::Denials,
    endpoint::endpoint_url,
    error::{ConnectError, ErrorKind, MODIFY_UNSUPPORTED, Operation, ProviderError},
    http::{HttpRequest, HttpResponse, Transport, attempt_nonce, attempt_timestamp},
    settings::{ApsaraSettings, BodyMode, ProviderSettings, SignatureVersion},
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

impl EcsClient {
    /// All pages of one describe, and whether the group is a classic-network one.
    async fn describe_pages(
        &self,
        group: &GroupRef,
        nic_type: Option<NicType>,
    ) -> Result<(Vec<DescribedRule>, bool), ProviderError> {
        let region = self.region(group);
        let mut rules = Vec::new();
        let mut classic = false;
        let mut next_token: Option<String> = None;
        for page_number in 0..MAX_DESCRIBE_PAGES {
            let call = api::describe_call(group, region, next_token.as_deref(), nic_type);
            let response = self
                .call(Operation::Describe, region, &call)
                .await
                .map_err(|e| self.judged(group, e))?;
            let malformed = |what: String| {
                ProviderError::new(ErrorKind::Transient, "MalformedResponse", what)
                    .with_request_id(errors::request_id(&response))
            };
            let page = api::parse_describe(&response.body)
                .map_err(|err| malformed(format!("describe answer: {err}")))?;
            // An answer about another group, or about none, is not "no rules".
            if page.security_group_id.as_deref() != Some(group.security_group_id.as_str()) {
                return Err(malformed(format!(
                    "describe answer names security group {:?}, not {}",
                    page.security_group_id, group.security_group_id
                )));
            }
            classic |= page_number == 0 && page.classic;
            rules.extend(page.rules);
            match page.next_token {
                None => return Ok((rules, classic)),
                Some(token) if Some(&token) == next_token.as_ref() => {
                    return Err(ProviderError::new(
                        ErrorKind::Transient,
                        "RepeatedNextToken",
                        "describe answered the same NextToken twice: the rules read so far may be incomplete",
                    ));
                }
                Some(token) => next_token = Some(token),
            }
        }
        Err(ProviderError::new(
            ErrorKind::Transient,
            "TooManyPages",
            format!("describe returned more than {MAX_DESCRIBE_PAGES} pages"),
        ))
    }
}

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

    /// An endpoint without the action (an Alibaba-compatible cloud) says
    /// so as `ModifyUnsupported`, and the rule is replaced instead.
    async fn modify(&self, call: &Modify) -> Result<Receipt, ProviderError> {
        let rpc = api::modify_call(call, self.region(&call.group));
        self.mutate(Operation::Modify, &call.group, rpc)
            .await
            .map_err(|e| {
                if e.code == "InvalidAction.NotFound" {
                    ProviderError {
                        code: MODIFY_UNSUPPORTED.to_owned(),
                        ..e
                    }
                } else {
                    e
                }
            })
    }

    /// Every rule of the group. A classic-network group shows one NIC type
    /// per call, `internet` by default: its `intranet` rules (the operator's
    /// default) take a second round.
    async fn describe(&self, group: &GroupRef) -> Result<Vec<DescribedRule>, ProviderError> {
        let (mut rules, classic) = self.describe_pages(group, None).await?;
        if classic {
            let (intranet, _) = self.describe_pages(group, Some(NicType::Intranet)).await?;
            for rule in intranet {
                if !rules.contains(&rule) {
                    rules.push(rule);
                }
            }
        }
        Ok(rules)
    }
}

#[cfg(test)]
mod tests {
    use std::{
        collections::HashMap,
        sync::{Arc, Mutex},
    };

    use axum::extract::Query;
    use serde_json::{Value, json};

    use super::*;
    use crate::provider::{Credentials, connect};

    /// A gateway that answers every describe with `answer(query)`, keeping the queries.
    async fn gateway(
        answer: impl Fn(&HashMap<String, String>) -> Value + Send + Sync + 'static,
    ) -> (Arc<dyn Provider>, Arc<Mutex<Vec<HashMap<String, String>>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let answer = Arc::new(answer);
        let app =
            axum::Router::new().fallback(move |Query(query): Query<HashMap<String, String>>| {
                let (log, answer) = (log.clone(), answer.clone());
                async move {
                    let body = answer(&query);
                    log.lock().expect("log").push(query);
                    axum::Json(body)
                }
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        let mut config = ProviderSettings::new(ProviderKind::Alibaba, "cn-hangzhou");
        config.endpoint = Some(Url::parse(&format!("http://{addr}/")).expect("url"));
        let client = connect(&config, Credentials::new("ak", "sk", None)).expect("client");
        (client, seen)
    }

    fn permission(id: &str, nic_type: &str) -> Value {
        json!({"SecurityGroupRuleId": id, "Direction": "ingress", "IpProtocol": "TCP",
               "PortRange": "22/22", "SourceCidrIp": "10.0.0.0/8", "NicType": nic_type,
               "Policy": "Accept", "Priority": "1"})
    }

    fn group() -> GroupRef {
        GroupRef {
            region: "cn-hangzhou".into(),
            security_group_id: "sg-1".into(),
        }
    }

    /// A classic-network group shows `internet` rules by default; the
    /// `intranet` ones need their own call, and are found.
    #[tokio::test]
    async fn a_classic_group_is_described_for_both_nic_types() {
        let (client, seen) = gateway(|query| {
            let rule = match query.get("NicType").map(String::as_str) {
                Some("intranet") => permission("sgr-intranet", "intranet"),
                _ => permission("sgr-internet", "internet"),
            };
            json!({"RequestId": "r", "SecurityGroupId": "sg-1", "VpcId": "",
                   "Permissions": {"Permission": [rule]}})
        })
        .await;
        let rules = client.describe(&group()).await.expect("described");
        let ids: Vec<_> = rules.iter().map(|r| r.rule_id.as_str()).collect();
        assert_eq!(ids, ["sgr-internet", "sgr-intranet"]);
        let nic_types: Vec<_> = seen
            .lock()
            .expect("log")
            .iter()
            .map(|q| q.get("NicType").cloned())
            .collect();
        assert_eq!(nic_types, [None, Some("intranet".to_owned())]);
    }

    /// A VPC group shows every rule at once: one call.
    #[tokio::test]
    async fn a_vpc_group_is_described_once() {
        let (client, seen) = gateway(|_| {
            json!({"RequestId": "r", "SecurityGroupId": "sg-1", "VpcId": "vpc-1",
                   "Permissions": {"Permission": [permission("sgr-1", "intranet")]}})
        })
        .await;
        assert_eq!(client.describe(&group()).await.expect("described").len(), 1);
        assert_eq!(seen.lock().expect("log").len(), 1);
    }

    /// An answer about no group, or another, is no proof that there are no rules.
    #[tokio::test]
    async fn an_answer_about_another_group_is_not_an_empty_group() {
        for body in [
            json!({"RequestId": "r", "Permissions": {"Permission": []}}),
            json!({"RequestId": "r", "SecurityGroupId": "sg-2", "Permissions": {"Permission": []}}),
        ] {
            let (client, _) = gateway(move |_| body.clone()).await;
            let err = client.describe(&group()).await.expect_err("refused");
            assert_eq!(
                (err.kind, err.code.as_str()),
                (ErrorKind::Transient, "MalformedResponse")
            );
        }
    }

    /// A gateway repeating its NextToken would have ended the listing early.
    #[tokio::test]
    async fn a_repeated_next_token_is_not_the_end() {
        let (client, _) = gateway(|_| {
            json!({"RequestId": "r", "SecurityGroupId": "sg-1", "VpcId": "vpc-1", "NextToken": "same",
                   "Permissions": {"Permission": [permission("sgr-1", "intranet")]}})
        })
        .await;
        let err = client.describe(&group()).await.expect_err("refused");
        assert_eq!(
            (err.kind, err.code.as_str()),
            (ErrorKind::Transient, "RepeatedNextToken")
        );
    }
}
