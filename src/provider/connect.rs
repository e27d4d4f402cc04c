//! The factory: a `ProviderConfig`'s settings and credentials become the
//! client of its kind, with its own transport and rate limiter.

use std::sync::Arc;

use super::{
    Provider, baidu::BaiduClient, credentials::Credentials, ecs::EcsClient,
    endpoint::check_endpoint, error::ConnectError, http::Transport, model::ProviderKind,
    settings::ProviderSettings,
};

/// Builds the client for `settings.kind`, with its own rate limiter.
pub fn connect(
    settings: &ProviderSettings,
    credentials: Credentials,
) -> Result<Arc<dyn Provider>, ConnectError> {
    if let Some(endpoint) = &settings.endpoint {
        check_endpoint(endpoint)?;
    }
    let transport = Transport::new(
        settings.rate_limit,
        settings.timeouts,
        &settings.extra_roots,
    )?;
    Ok(match settings.kind {
        ProviderKind::Alibaba | ProviderKind::Apsara => {
            Arc::new(EcsClient::new(settings, credentials, transport)?)
        }
        ProviderKind::Baidu => Arc::new(BaiduClient::new(settings, credentials, transport)),
    })
}

#[cfg(test)]
mod tests {
    use url::Url;

    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).expect("valid URL")
    }

    #[test]
    fn apsara_needs_an_endpoint_and_endpoints_must_be_http_urls() {
        let credentials = Credentials::new("ak", "sk", None);
        let apsara = ProviderSettings::new(ProviderKind::Apsara, "cn-1");
        assert_eq!(
            connect(&apsara, credentials.clone()).err(),
            Some(ConnectError::MissingEndpoint(ProviderKind::Apsara))
        );
        let mut bad = ProviderSettings::new(ProviderKind::Alibaba, "cn-1");
        bad.endpoint = Some(url("ftp://127.0.0.1/"));
        assert!(matches!(
            connect(&bad, credentials.clone()),
            Err(ConnectError::InvalidEndpoint(_))
        ));
        let mut userinfo = ProviderSettings::new(ProviderKind::Alibaba, "cn-1");
        userinfo.endpoint = Some(url("https://ak:hunter2@gw.example/"));
        match connect(&userinfo, credentials.clone()) {
            Err(ConnectError::InvalidEndpoint(shown)) => {
                assert!(!shown.contains("hunter2"), "{shown}");
            }
            other => panic!("userinfo accepted: {:?}", other.err()),
        }
        let mut garbage = ProviderSettings::new(ProviderKind::Alibaba, "cn-1");
        garbage.extra_roots = b"not a certificate".to_vec();
        assert!(matches!(
            connect(&garbage, credentials.clone()),
            Err(ConnectError::InvalidCaBundle(_))
        ));
        let mut zero = ProviderSettings::new(ProviderKind::Baidu, "bj");
        zero.rate_limit.qps = 0;
        assert_eq!(
            connect(&zero, credentials.clone()).err(),
            Some(ConnectError::InvalidRateLimit)
        );
        let fake = ProviderSettings {
            endpoint: Some(url("http://127.0.0.1:1")),
            ..apsara
        };
        assert_eq!(
            connect(&fake, credentials).expect("connects").kind(),
            ProviderKind::Apsara
        );
    }
}
