//! Where requests go: the checks on a configured endpoint, and the URL of a
//! request path on it or on the provider's public regional host.

use url::Url;

use super::error::{ConnectError, ErrorKind, ProviderError};

/// Refuses an endpoint that is not a plain http(s) URL with a host; the error
/// shows it without any user name or password.
pub(crate) fn check_endpoint(endpoint: &Url) -> Result<(), ConnectError> {
    // Credentials in the URL would be sent in every Authorization header
    // reqwest derives from them, and shown wherever the endpoint is.
    let userinfo = !endpoint.username().is_empty() || endpoint.password().is_some();
    let usable = matches!(endpoint.scheme(), "http" | "https")
        && endpoint.host_str().is_some()
        && endpoint.query().is_none()
        && !userinfo;
    if usable {
        Ok(())
    } else {
        let mut shown = endpoint.clone();
        // Best effort: a URL that cannot carry a user name has none to hide.
        let _ = shown.set_username("");
        let _ = shown.set_password(None);
        Err(ConnectError::InvalidEndpoint(shown.to_string()))
    }
}

/// The URL of `path` on `endpoint`, or on `https://{default_host}` without one.
///
/// The default host is built from a region, so it must look like a host name:
/// a region such as `x@evil.example/` must not pick another server.
pub(crate) fn endpoint_url(
    endpoint: Option<&Url>,
    default_host: &str,
    path: &str,
) -> Result<Url, ProviderError> {
    let mut url = match endpoint {
        Some(url) => url.clone(),
        None if is_host_name(default_host) => {
            Url::parse(&format!("https://{default_host}/")).map_err(|_| bad_region(default_host))?
        }
        None => return Err(bad_region(default_host)),
    };
    let prefix = url.path().trim_end_matches('/').to_string();
    url.set_path(&format!("{prefix}{path}"));
    Ok(url)
}

fn is_host_name(host: &str) -> bool {
    !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}

fn bad_region(host: &str) -> ProviderError {
    ProviderError::new(
        ErrorKind::Invalid,
        "InvalidRegion",
        format!("{host:?} is not a valid endpoint host: check the region"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).expect("valid URL")
    }

    #[test]
    fn the_default_endpoint_is_https_on_the_regional_host() {
        assert_eq!(
            endpoint_url(None, "ecs.cn-hangzhou.aliyuncs.com", "/")
                .expect("valid")
                .as_str(),
            "https://ecs.cn-hangzhou.aliyuncs.com/"
        );
    }

    /// The fake cloud listens on plain HTTP on loopback with a port.
    #[test]
    fn an_override_keeps_scheme_port_and_path_prefix() {
        let fake = url("http://127.0.0.1:8081");
        assert_eq!(
            endpoint_url(Some(&fake), "ignored", "/v2/securityGroup/g-1")
                .expect("valid")
                .as_str(),
            "http://127.0.0.1:8081/v2/securityGroup/g-1"
        );
        let prefixed = url("https://gw.example/ecs/");
        assert_eq!(
            endpoint_url(Some(&prefixed), "ignored", "/asapi/v3")
                .expect("valid")
                .as_str(),
            "https://gw.example/ecs/asapi/v3"
        );
    }

    /// A region is spliced into a host name, so it may not smuggle in another host.
    #[test]
    fn a_region_that_is_not_a_host_label_is_refused() {
        for host in [
            "ecs.x@evil.example/.aliyuncs.com",
            "ecs.a b.aliyuncs.com",
            "ecs..aliyuncs.com/x",
            "",
        ] {
            let err = endpoint_url(None, host, "/").expect_err(host);
            assert_eq!(err.kind, ErrorKind::Invalid, "{host}");
        }
    }
}
