//! Connects ProviderConfigs to the real provider clients: maps the API types
//! onto `ProviderSettings` and the Secret onto `Credentials`.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;

use super::resolve::{ConnectFailure, Connected, Connector, kind_of};
use crate::{
    api::{
        ProviderConfig,
        provider_config::{self as api, ProviderConfigSpec},
    },
    provider::{
        connect,
        credentials::Credentials,
        settings::{self, ProviderSettings},
    },
};

/// The production connector.
pub struct Clients;

impl Connector for Clients {
    fn connect(
        &self,
        config: &ProviderConfig,
        secret: &Secret,
        extra_roots: &[u8],
    ) -> Result<Connected, ConnectFailure> {
        let mut settings = settings_of(&config.spec).map_err(ConnectFailure::Config)?;
        settings.extra_roots = extra_roots.to_vec();
        let credentials = credentials_of(secret).map_err(ConnectFailure::Secret)?;
        let access_key_id = credentials.access_key_id.clone();
        let provider =
            connect(&settings, credentials).map_err(|e| ConnectFailure::Config(e.to_string()))?;
        Ok(Connected {
            provider,
            access_key_id,
        })
    }
}

pub fn settings_of(spec: &ProviderConfigSpec) -> Result<ProviderSettings, String> {
    let mut settings = ProviderSettings::new(kind_of(spec.type_), spec.region.clone());
    // Admission refuses this too; a config stored before that rule existed
    // must not send credentials in clear either.
    if spec.plaintext_endpoint() && spec.allow_insecure_http != Some(true) {
        return Err(
            "spec.endpoint is http://: use https://, or set spec.allowInsecureHttp: true"
                .to_owned(),
        );
    }
    if let Some(endpoint) = &spec.endpoint {
        settings.endpoint = Some(
            endpoint
                .parse()
                .map_err(|e| format!("spec.endpoint '{endpoint}' is not a URL: {e}"))?,
        );
    }
    settings.signature_version = match (spec.type_, spec.signature_version) {
        (api::ProviderType::Apsarastack, _) | (_, Some(api::SignatureVersion::V2)) => {
            settings::SignatureVersion::V2
        }
        _ => settings::SignatureVersion::V3,
    };
    if let Some(apsara) = &spec.apsara {
        settings.apsara = settings::ApsaraSettings {
            organization_id: apsara.organization_id.clone(),
            resource_group_id: apsara.resource_group_id.clone(),
            path: match apsara.path {
                api::ApsaraPath::Root => settings::ApsaraPath::Root,
                api::ApsaraPath::Asapi => settings::ApsaraPath::Asapi,
                api::ApsaraPath::Route => settings::ApsaraPath::Route,
            },
            body_mode: match (apsara.body_mode, apsara.path) {
                (Some(api::ApsaraBodyMode::Query), _) => settings::BodyMode::Query,
                (Some(api::ApsaraBodyMode::Form), _) | (None, api::ApsaraPath::Route) => {
                    settings::BodyMode::Form
                }
                (None, _) => settings::BodyMode::Query,
            },
            version: apsara.version.clone(),
            extra_headers: apsara.extra_headers.clone().into_iter().collect(),
            extra_params: apsara.extra_params.clone().into_iter().collect(),
        };
    }
    let timeouts = spec.timeouts.unwrap_or_default();
    let seconds = |s: Option<u32>, default| s.map_or(default, |s| Duration::from_secs(s.into()));
    settings.timeouts = settings::Timeouts {
        connect: seconds(timeouts.connect_seconds, settings.timeouts.connect),
        request: seconds(timeouts.request_seconds, settings.timeouts.request),
    };
    let rate = spec.rate_limit.unwrap_or_default();
    // Calls are metered at (qps, burst) by the config's Share in front
    // (`share.rs`), which serves namespaces in turn. This bucket behind it
    // gets one burst of slack: at the same rate and burst, scheduling jitter
    // would build a queue here that never drains, and its waiters are not
    // served in order. A describe's extra pages use the slack.
    settings.rate_limit = settings::RateLimit {
        qps: rate.qps,
        burst: rate.burst.saturating_mul(2),
    };
    Ok(settings)
}

/// Reads the credentials keys; errors name the key, never a value.
pub fn credentials_of(secret: &Secret) -> Result<Credentials, String> {
    let text = |key: &str| -> Result<Option<String>, String> {
        let from_data =
            secret.data.as_ref().and_then(|d| d.get(key)).map(|v| {
                String::from_utf8(v.0.clone()).map_err(|_| format!("key {key} is not UTF-8"))
            });
        let from_string = secret
            .string_data
            .as_ref()
            .and_then(|d| d.get(key))
            .cloned()
            .map(Ok);
        from_data
            .or(from_string)
            .transpose()
            .map(|v| v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()))
    };
    let id = text("accessKeyId")?.ok_or("key accessKeyId is missing or empty")?;
    let secret_key = text("accessKeySecret")?.ok_or("key accessKeySecret is missing or empty")?;
    Ok(Credentials::new(id, secret_key, text("securityToken")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(pairs: &[(&str, &str)]) -> Secret {
        let data = pairs
            .iter()
            .map(|(k, v)| {
                (
                    (*k).to_owned(),
                    k8s_openapi::ByteString(v.as_bytes().to_vec()),
                )
            })
            .collect();
        Secret {
            data: Some(data),
            ..Secret::default()
        }
    }

    #[test]
    fn a_missing_key_is_named_and_no_value_is_shown() {
        let err = credentials_of(&secret(&[("accessKeyId", "AKID"), ("wrong", "TOPSECRET")]))
            .expect_err("incomplete");
        assert!(err.contains("accessKeySecret"), "{err}");
        assert!(!err.contains("TOPSECRET") && !err.contains("AKID"), "{err}");
    }

    #[test]
    fn credentials_are_read_and_trimmed() {
        let creds = credentials_of(&secret(&[
            ("accessKeyId", "AKID\n"),
            ("accessKeySecret", "s3cret"),
        ]))
        .expect("complete");
        assert_eq!(creds.access_key_id, "AKID");
        assert_eq!(creds.access_key_secret.expose(), "s3cret");
        assert!(creds.security_token.is_none());
    }

    #[test]
    fn plain_http_needs_the_opt_in() {
        let mut spec: ProviderConfigSpec = serde_json::from_value(serde_json::json!({
            "type": "alibaba", "region": "r1", "endpoint": "http://127.0.0.1:9",
            "credentialsSecretRef": {"namespace": "n", "name": "s"},
        }))
        .expect("valid");
        let err = settings_of(&spec).expect_err("plain http");
        assert!(err.contains("allowInsecureHttp"), "{err}");
        spec.allow_insecure_http = Some(true);
        assert!(settings_of(&spec).is_ok());
    }

    #[test]
    fn timeouts_are_taken_from_the_spec_or_default() {
        let spec: ProviderConfigSpec = serde_json::from_value(serde_json::json!({
            "type": "alibaba", "region": "r1",
            "credentialsSecretRef": {"namespace": "n", "name": "s"},
            "timeouts": {"requestSeconds": 120}
        }))
        .expect("valid");
        let timeouts = settings_of(&spec).expect("valid").timeouts;
        assert_eq!(timeouts.request, Duration::from_secs(120));
        assert_eq!(timeouts.connect, settings::Timeouts::default().connect);
    }

    /// The route gateway's reference puts every parameter in the body.
    #[test]
    fn the_route_path_defaults_to_a_form_body() {
        let spec = |apsara: serde_json::Value| -> ProviderConfigSpec {
            serde_json::from_value(serde_json::json!({
                "type": "apsarastack", "region": "r1", "endpoint": "https://gw.example",
                "credentialsSecretRef": {"namespace": "n", "name": "s"}, "apsara": apsara
            }))
            .expect("valid")
        };
        let mode = |apsara| settings_of(&spec(apsara)).expect("valid").apsara.body_mode;
        assert_eq!(
            mode(serde_json::json!({"path": "Route"})),
            settings::BodyMode::Form
        );
        assert_eq!(
            mode(serde_json::json!({"path": "Asapi"})),
            settings::BodyMode::Query
        );
        assert_eq!(
            mode(serde_json::json!({"path": "Route", "bodyMode": "Query"})),
            settings::BodyMode::Query
        );
    }

    #[test]
    fn apsara_always_signs_with_v2() {
        let spec: ProviderConfigSpec = serde_json::from_value(serde_json::json!({
            "type": "apsarastack", "region": "r1", "endpoint": "http://127.0.0.1:9",
            "allowInsecureHttp": true,
            "credentialsSecretRef": {"namespace": "n", "name": "s"},
            "apsara": {"path": "Route", "bodyMode": "Form"}
        }))
        .expect("valid");
        let s = settings_of(&spec).expect("valid");
        assert_eq!(s.signature_version, settings::SignatureVersion::V2);
        assert_eq!(s.apsara.path, settings::ApsaraPath::Route);
        assert_eq!(s.apsara.body_mode, settings::BodyMode::Form);
    }
}
