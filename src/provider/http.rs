//! The one HTTP transport every client shares.
//!
//! It waits on the ProviderConfig's token bucket before each request, applies
//! the connect and request timeouts, follows no redirects (a redirect would
//! replay signed headers elsewhere), and turns transport failures into
//! `Transient` errors whose messages name neither URLs (which may carry a V2
//! signature) nor headers.

use std::{num::NonZeroU32, time::Duration};

use bytes::Bytes;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use http::{HeaderMap, Method};
use url::Url;

use super::{
    error::{ConnectError, ErrorKind, ProviderError},
    settings::{RateLimit, Timeouts},
};

/// A fully signed request, ready to send.
#[derive(Clone, Debug)]
pub struct HttpRequest {
    pub method: Method,
    pub url: Url,
    /// Sent exactly as given; `Host` among them must match the URL.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// What came back, whatever the status.
#[derive(Clone, Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// The `Host` header a URL implies: the host, and the port unless it is the scheme's default.
pub fn host_header(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    }
}

pub struct Transport {
    client: reqwest::Client,
    limiter: DefaultDirectRateLimiter,
}

/// The largest answer read: a describe page of 1000 rules is about 0.5 MiB,
/// and a gateway (or something posing as one) must not fill the memory.
pub const MAX_RESPONSE_BYTES: usize = 8 << 20;

impl Transport {
    /// `extra_roots`: PEM certificates trusted besides the system's roots
    /// (the image's CA store) and the bundled Mozilla roots.
    pub fn new(
        rate_limit: RateLimit,
        timeouts: Timeouts,
        extra_roots: &[u8],
    ) -> Result<Self, ConnectError> {
        let (Some(qps), Some(burst)) = (
            NonZeroU32::new(rate_limit.qps),
            NonZeroU32::new(rate_limit.burst),
        ) else {
            return Err(ConnectError::InvalidRateLimit);
        };
        let mut builder = reqwest::Client::builder();
        if !extra_roots.is_empty() {
            let roots = reqwest::Certificate::from_pem_bundle(extra_roots)
                .map_err(|e| ConnectError::InvalidCaBundle(describe(&e)))?;
            if roots.is_empty() {
                return Err(ConnectError::InvalidCaBundle(
                    "no CERTIFICATE block".to_owned(),
                ));
            }
            for root in roots {
                builder = builder.add_root_certificate(root);
            }
        }
        let client = builder
            .connect_timeout(timeouts.connect)
            .timeout(timeouts.request)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("secgroup-operator/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|err| ConnectError::Transport(describe(&err.without_url())))?;
        Ok(Self {
            client,
            limiter: RateLimiter::direct(Quota::per_second(qps).allow_burst(burst)),
        })
    }

    /// Waits for the rate limiter, then sends one attempt.
    pub async fn send(&self, request: HttpRequest) -> Result<HttpResponse, ProviderError> {
        self.limiter.until_ready().await;
        let started = std::time::Instant::now();
        let (method, path) = (request.method.clone(), request.url.path().to_string());
        let mut builder = self.client.request(request.method, request.url);
        for (name, value) in &request.headers {
            builder = builder.header(name, value);
        }
        if !request.body.is_empty() {
            builder = builder.body(request.body);
        }
        let mut response = builder.send().await.map_err(transport_error)?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(ProviderError::new(
                    ErrorKind::Transient,
                    "ResponseTooLarge",
                    format!("the answer exceeds {MAX_RESPONSE_BYTES} bytes"),
                )
                .with_status(status));
            }
            body.extend_from_slice(&chunk);
        }
        let body = Bytes::from(body);
        // Path only: the query of a V2 request carries its signature.
        tracing::debug!(%method, %path, status, elapsed_ms = elapsed_ms(started), "provider request");
        Ok(HttpResponse {
            status,
            headers,
            body,
        })
    }
}

fn elapsed_ms(started: std::time::Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// A transport failure as a `Transient` error, without the URL.
fn transport_error(err: reqwest::Error) -> ProviderError {
    let err = err.without_url();
    let code = if err.is_timeout() {
        "RequestTimeout"
    } else if err.is_connect() {
        "ConnectionFailed"
    } else {
        "TransportError"
    };
    ProviderError::new(ErrorKind::Transient, code, describe(&err))
}

/// The error and its sources, joined: "error sending request: … : connection refused".
fn describe(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![err.to_string()];
    let mut source = err.source();
    while let Some(inner) = source {
        let text = inner.to_string();
        if !parts.iter().any(|seen| seen.contains(&text)) {
            parts.push(text);
        }
        source = inner.source();
    }
    parts.join(": ")
}

/// A fresh nonce for one attempt (32 hex characters).
pub fn attempt_nonce() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// The current time for one attempt, UTC `yyyy-MM-ddTHH:mm:ssZ`, as both clouds sign it.
pub fn attempt_timestamp() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// The longest wait a throttled answer is honoured with: a gateway asking
/// for hours (or years, as a `Retry-After` in seconds can) would otherwise
/// park the rule as "Throttled" for that long.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// `Retry-After`-style header value as a duration, in the unit the provider
/// uses or as an HTTP date (RFC 9110), at most [`MAX_RETRY_AFTER`].
pub fn retry_after(response: &HttpResponse, header: &str, unit: Duration) -> Option<Duration> {
    let text = response.header(header)?.trim();
    let wait = match text.parse::<u32>() {
        Ok(value) => unit * value,
        Err(_) => {
            let at = jiff::fmt::rfc2822::DateTimeParser::new()
                .parse_timestamp(text)
                .ok()?;
            let seconds = at.as_second() - jiff::Timestamp::now().as_second();
            Duration::from_secs(u64::try_from(seconds).unwrap_or(0))
        }
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn transport(qps: u32, burst: u32, request_timeout: Duration) -> Transport {
        Transport::new(
            RateLimit { qps, burst },
            Timeouts {
                connect: Duration::from_secs(2),
                request: request_timeout,
            },
            &[],
        )
        .expect("transport")
    }

    fn get(url: &str) -> HttpRequest {
        HttpRequest {
            method: Method::GET,
            url: Url::parse(url).expect("url"),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A loopback server that answers every request with 200, counting them.
    async fn ok_server() -> Url {
        let app = axum::Router::new().fallback(|| async { "ok" });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        Url::parse(&format!("http://{addr}/")).expect("url")
    }

    /// Retries must never replay a nonce: every attempt draws a new one.
    #[test]
    fn every_attempt_gets_a_new_nonce_and_a_utc_timestamp() {
        assert_ne!(attempt_nonce(), attempt_nonce());
        assert_eq!(attempt_nonce().len(), 32);
        let timestamp = attempt_timestamp();
        assert_eq!(timestamp.len(), 20, "{timestamp}");
        assert!(
            timestamp.ends_with('Z') && timestamp.as_bytes()[10] == b'T',
            "{timestamp}"
        );
    }

    #[test]
    fn the_host_header_carries_only_non_default_ports() {
        let with_port = Url::parse("http://127.0.0.1:8081/x").expect("url");
        let default = Url::parse("https://ecs.cn-hangzhou.aliyuncs.com:443/").expect("url");
        assert_eq!(host_header(&with_port), "127.0.0.1:8081");
        assert_eq!(host_header(&default), "ecs.cn-hangzhou.aliyuncs.com");
    }

    /// With burst 1 at 5 qps, the third request cannot start before ~400 ms.
    #[tokio::test]
    async fn the_token_bucket_holds_requests_to_the_configured_rate() {
        let url = ok_server().await;
        let transport = transport(5, 1, Duration::from_secs(5));
        let started = Instant::now();
        for _ in 0..3 {
            let response = transport.send(get(url.as_str())).await.expect("ok");
            assert_eq!(response.status, 200);
        }
        assert!(
            started.elapsed() >= Duration::from_millis(350),
            "{:?}",
            started.elapsed()
        );
    }

    /// An endless answer is cut at the cap instead of filling the memory.
    #[tokio::test]
    async fn an_oversized_answer_is_refused_as_transient() {
        let huge = "x".repeat(MAX_RESPONSE_BYTES + 1);
        let app = axum::Router::new().fallback(move || {
            let huge = huge.clone();
            async move { huge }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        let err = transport(10, 10, Duration::from_secs(5))
            .send(get(&format!("http://{addr}/")))
            .await
            .expect_err("too large");
        assert_eq!(
            (err.kind, err.code.as_str()),
            (ErrorKind::Transient, "ResponseTooLarge")
        );
    }

    /// A refused connection is Transient, and the message keeps the signed query out.
    #[tokio::test]
    async fn a_refused_connection_is_transient_and_names_no_url() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        drop(listener);
        let url = format!("http://127.0.0.1:{port}/?Signature=SIGNATURE-VALUE&AccessKeyId=ak");
        let err = transport(10, 10, Duration::from_secs(5))
            .send(get(&url))
            .await
            .expect_err("refused");
        assert_eq!(err.kind, ErrorKind::Transient);
        assert_eq!(err.code, "ConnectionFailed");
        let shown = format!("{err} {err:?}");
        assert!(
            !shown.contains("SIGNATURE-VALUE") && !shown.contains("127.0.0.1"),
            "{shown}"
        );
    }

    /// A server that never answers hits the request timeout, which is Transient.
    #[tokio::test]
    async fn a_silent_server_times_out_as_transient() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let hold = tokio::spawn(async move {
            let (_socket, _) = listener.accept().await.expect("accept");
            std::future::pending::<()>().await;
        });
        let err = transport(10, 10, Duration::from_millis(200))
            .send(get(&format!("http://{addr}/")))
            .await
            .expect_err("timeout");
        assert_eq!(
            (err.kind, err.code.as_str()),
            (ErrorKind::Transient, "RequestTimeout")
        );
        hold.abort();
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;
    use crate::provider::fixtures::response;

    /// A `Retry-After: 99999999` (seconds, as Baidu sends it) asked for three
    /// years of waiting; the rule would have sat "Throttled" all that time.
    #[test]
    fn an_absurd_retry_after_is_cut_to_the_cap() {
        let answer = response(429, "", &[("retry-after", "99999999")]);
        let wait = retry_after(&answer, "retry-after", Duration::from_secs(1));
        assert_eq!(wait, Some(MAX_RETRY_AFTER));
    }

    /// RFC 9110 allows a date instead of seconds.
    #[test]
    fn a_retry_after_date_waits_until_then() {
        let at = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(120);
        let date = jiff::fmt::rfc2822::DateTimePrinter::new()
            .timestamp_to_rfc9110_string(&at)
            .expect("printable");
        let answer = response(429, "", &[("retry-after", date.as_str())]);
        let wait = retry_after(&answer, "retry-after", Duration::from_secs(1)).expect("a wait");
        assert!(
            (Duration::from_secs(110)..=Duration::from_secs(120)).contains(&wait),
            "{wait:?} for {date}"
        );
        let past = response(429, "", &[("retry-after", "Sun, 06 Nov 1994 08:49:37 GMT")]);
        assert_eq!(
            retry_after(&past, "retry-after", Duration::from_secs(1)),
            Some(Duration::ZERO)
        );
    }

    proptest! {
        /// Whatever a server puts in the header, the wait is either absent or at most the cap.
        #[test]
        fn a_retry_after_never_exceeds_the_cap(
            value in "[0-9]{1,12}|[ -~]{0,16}",
            unit_ms in 1..=1000_u64,
        ) {
            let answer = response(429, "", &[("retry-after", value.as_str())]);
            let wait = retry_after(&answer, "retry-after", Duration::from_millis(unit_ms));
            prop_assert!(wait.is_none_or(|w| w <= MAX_RETRY_AFTER), "{wait:?}");
        }
    }
}
