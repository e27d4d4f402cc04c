//! Alibaba Apsara Stack: the ECS 2014-05-26 RPC API behind a private gateway.
//!
//! The client is [`EcsClient`](super::EcsClient) with the Apsara gateway; this
//! module only knows what differs, and uses the ECS client's request building
//! and error tables, never the client itself: V2 (HMAC-SHA1) signing
//! always, the legacy flat rule parameters (no rule ids, so a revoke always
//! matches on attributes), organisation headers, and the configurable path and
//! body mode. The endpoint is required: there is no public default.

pub mod errors;

use url::Url;

use super::{api::RpcCall, wire};
use crate::provider::{
    credentials::Credentials,
    endpoint::endpoint_url,
    error::ProviderError,
    http::HttpRequest,
    settings::{ApsaraPath, ApsaraSettings},
};

/// The signed request for `call` on the Apsara gateway at `endpoint`.
pub(crate) fn request(
    settings: &ApsaraSettings,
    endpoint: Option<&Url>,
    region: &str,
    call: &RpcCall,
    credentials: &Credentials,
    attempt: wire::Attempt<'_>,
) -> Result<HttpRequest, ProviderError> {
    // No default host: `connect` refuses Apsara settings without an endpoint.
    let url = endpoint_url(endpoint, "", &settings.path.path(call.action))?;
    let mut headers = vec![("x-acs-regionid".to_string(), region.to_string())];
    if let Some(organization) = &settings.organization_id {
        headers.push(("x-acs-organizationid".to_string(), organization.clone()));
    }
    if let Some(resource_group) = &settings.resource_group_id {
        headers.push(("x-acs-resourcegroupid".to_string(), resource_group.clone()));
    }
    // ASAPI routes by product and API version headers, as Alibaba's own
    // Apsara Stack client sends them.
    if settings.path == ApsaraPath::Asapi {
        headers.push(("x-acs-asapi-product".to_string(), "Ecs".to_string()));
        headers.push(("x-acs-request-version".to_string(), "v1".to_string()));
    }
    headers.extend(settings.extra_headers.iter().cloned());
    let mut call = call.clone();
    if settings.path == ApsaraPath::Route {
        // The route gateway requires the region as `regionId` too (seed 000).
        call.params
            .push(("regionId".to_string(), region.to_string()));
    }
    if let Some(version) = &settings.version {
        call.params.push(("version".to_string(), version.clone()));
    }
    call.params.extend(settings.extra_params.iter().cloned());
    Ok(wire::v2_request(
        url,
        &call,
        credentials,
        attempt,
        settings.body_mode,
        headers,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::{
        GroupRef, PortRange, Revoke, RevokeTarget, Rule,
        ecs::api::{RuleForm, revoke_call},
        fixtures::ssh_from_ten,
        settings::BodyMode,
    };

    /// The rule of the vendor reference page (seed): tcp 1/200 from 10.0.0.0/8.
    fn revoke() -> RpcCall {
        let rule = Rule {
            ports: Some(PortRange { from: 1, to: 200 }),
            description: String::new(),
            ..ssh_from_ten()
        };
        revoke_call(
            &Revoke {
                group: GroupRef {
                    region: "cn-qingdao-env17-d01".into(),
                    security_group_id: "sg-1".into(),
                },
                target: RevokeTarget::Id {
                    rule_id: "sgr-known".into(),
                    rule,
                },
                client_token: "123e4567-e89b-12d3-a456-426655440000".into(),
            },
            "cn-qingdao-env17-d01",
            RuleForm::Flat,
        )
    }

    /// The signed request for `revoke()` through `settings` at `endpoint`.
    fn revoke_request(settings: &ApsaraSettings, endpoint: &str, region: &str) -> HttpRequest {
        let endpoint = Url::parse(endpoint).expect("url");
        let attempt = wire::Attempt {
            nonce: "n-1",
            timestamp: "2025-01-02T03:04:05Z",
        };
        let credentials = Credentials::new("ak", "sk", None);
        request(
            settings,
            Some(&endpoint),
            region,
            &revoke(),
            &credentials,
            attempt,
        )
        .expect("request")
    }

    /// `/apsara/route/Ecs/<Action>` with every parameter in the form body, as the vendor page documents.
    #[test]
    fn the_route_path_with_a_form_body_carries_legacy_flat_parameters() {
        let settings = ApsaraSettings {
            organization_id: Some("org-7".into()),
            resource_group_id: Some("rg-9".into()),
            path: ApsaraPath::Route,
            body_mode: BodyMode::Form,
            ..ApsaraSettings::default()
        };
        let request = revoke_request(&settings, "http://127.0.0.1:8080", "cn-qingdao-env17-d01");
        assert_eq!(
            request.url.as_str(),
            "http://127.0.0.1:8080/apsara/route/Ecs/RevokeSecurityGroup"
        );
        assert_eq!(request.header("x-acs-organizationid"), Some("org-7"));
        assert_eq!(request.header("x-acs-resourcegroupid"), Some("rg-9"));
        assert_eq!(
            request.header("x-acs-regionid"),
            Some("cn-qingdao-env17-d01")
        );
        assert_eq!(
            request.param("Action").as_deref(),
            Some("RevokeSecurityGroup")
        );
        assert_eq!(request.param("IpProtocol").as_deref(), Some("tcp"));
        assert_eq!(request.param("PortRange").as_deref(), Some("1/200"));
        assert_eq!(
            request.param("regionId").as_deref(),
            Some("cn-qingdao-env17-d01"),
            "the seed's lower-case region too"
        );
        assert_eq!(
            request.param("RegionId").as_deref(),
            Some("cn-qingdao-env17-d01")
        );
        assert_eq!(request.param("SourceCidrIp").as_deref(), Some("10.0.0.0/8"));
        assert_eq!(
            request.param("ClientToken").as_deref(),
            Some("123e4567-e89b-12d3-a456-426655440000")
        );
        assert_eq!(
            request.param("SecurityGroupRuleId.1").as_deref(),
            None,
            "Apsara has no rule ids"
        );
        assert_eq!(
            request.param("SignatureMethod").as_deref(),
            Some("HMAC-SHA1")
        );
        request.assert_v2_signed("sk");
    }

    /// `/asapi/v3` in query mode leaves the body empty and omits unset organisation headers.
    #[test]
    fn the_asapi_path_in_query_mode_signs_the_query() {
        let settings = ApsaraSettings {
            path: ApsaraPath::Asapi,
            ..ApsaraSettings::default()
        };
        let request = revoke_request(&settings, "https://asapi.example", "r1");
        assert_eq!(request.url.path(), "/asapi/v3");
        assert!(request.body.is_empty());
        assert_eq!(request.header("x-acs-organizationid"), None);
        assert_eq!(request.param("IpProtocol").as_deref(), Some("tcp"));
        assert_eq!(
            request.param("regionId"),
            None,
            "only the route gateway wants it"
        );
        assert_eq!(request.header("x-acs-asapi-product"), Some("Ecs"));
        assert_eq!(request.header("x-acs-request-version"), Some("v1"));
        request.assert_v2_signed("sk");
    }

    /// Configured extra headers travel as given; extra parameters and the
    /// lower-case `version` are signed with the rest.
    #[test]
    fn extra_headers_parameters_and_version_are_sent_and_signed() {
        let settings = ApsaraSettings {
            path: ApsaraPath::Route,
            body_mode: BodyMode::Form,
            version: Some("2016-01-01".into()),
            extra_headers: vec![("x-ascm-product-name".into(), "ecs".into())],
            extra_params: vec![("Department".into(), "12".into())],
            ..ApsaraSettings::default()
        };
        let request = revoke_request(&settings, "https://gw.example", "r1");
        assert_eq!(request.header("x-ascm-product-name"), Some("ecs"));
        assert_eq!(request.header("x-acs-asapi-product"), None, "route mode");
        assert_eq!(request.param("Department").as_deref(), Some("12"));
        assert_eq!(request.param("version").as_deref(), Some("2016-01-01"));
        assert_eq!(request.param("Version").as_deref(), Some("2014-05-26"));
        request.assert_v2_signed("sk");
    }
}
