//! Starts the fake cloud in-process on 127.0.0.1:0 and signs requests to it
//! by hand with the project's signers, as a provider SDK would.

use std::path::PathBuf;

use reqwest::{Method, StatusCode, header::HeaderMap};
use secgroup_fakecloud::{Config, FakeCloud, client::Admin, serve};
use secgroup_sign::{self as sign, SignedRequest, acs3, bce, encode::percent_encode, rpc};
use serde_json::Value;

pub const AK: &str = "testid";
pub const SECRET: &str = "testsecret";
pub const REGION: &str = "cn-hangzhou";

pub struct Fake {
    pub host: String,
    http: reqwest::Client,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A provider answer: status, headers and the JSON body (`Null` when empty).
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Answer {
    /// Asserts a refusal with this status and provider error code.
    pub fn assert_error(&self, status: StatusCode, code: &str) {
        assert_eq!((self.status, self.code()), (status, code), "{}", self.body);
    }

    pub fn code(&self) -> &str {
        self.body
            .get("Code")
            .or_else(|| self.body.get("code"))
            .and_then(Value::as_str)
            .unwrap_or("")
    }
}

pub async fn start() -> Fake {
    start_with(None).await
}

pub async fn start_with(state_file: Option<PathBuf>) -> Fake {
    let cloud = FakeCloud::new(Config {
        access_keys: vec![(AK.into(), SECRET.into())],
        state_file,
        seed: Some(1),
        auto_create_groups: false,
    })
    .expect("fake cloud starts");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("loopback port");
    let host = listener.local_addr().expect("bound").to_string();
    let server = tokio::spawn(serve(listener, cloud));
    Fake {
        host,
        http: reqwest::Client::new(),
        server,
    }
}

/// The current UTC time as both clouds sign it.
pub fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

pub fn minutes_ago(minutes: i64) -> String {
    (jiff::Timestamp::now() - jiff::SignedDuration::from_mins(minutes))
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn nonce() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn query_string(params: &[(String, String)]) -> String {
    params
        .iter()
        .map(|(n, v)| format!("{}={}", percent_encode(n), percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

pub fn pairs(params: &[(&str, &str)]) -> Vec<(String, String)> {
    params
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect()
}

/// An Alibaba V3 (ACS3-HMAC-SHA256) request, adjustable before it is sent.
pub struct V3 {
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub signed_headers: Vec<String>,
    pub access_key_id: String,
}

impl V3 {
    pub fn new(fake: &Fake, action: &str, params: &[(&str, &str)]) -> Self {
        let headers = pairs(&[
            ("host", &fake.host),
            ("x-acs-action", action),
            ("x-acs-version", "2014-05-26"),
            ("x-acs-date", &now()),
            ("x-acs-signature-nonce", &nonce()),
            ("x-acs-content-sha256", &sign::sha256_hex(b"")),
        ]);
        let signed_headers = headers.iter().map(|(n, _)| n.clone()).collect();
        Self {
            query: pairs(params),
            headers,
            signed_headers,
            access_key_id: AK.into(),
        }
    }

    pub fn set_header(&mut self, name: &str, value: &str) {
        self.headers.retain(|(n, _)| n != name);
        self.headers.push((name.into(), value.into()));
    }

    /// The `Authorization` value for the request as it stands.
    pub fn authorization(&self) -> String {
        let request = SignedRequest {
            method: "POST",
            path: "/",
            query: &self.query,
            headers: &self.headers,
            signed_headers: &self.signed_headers,
        };
        acs3::authorization(&self.access_key_id, SECRET, &request)
    }

    pub async fn send_signed_as(&self, fake: &Fake, authorization: &str) -> Answer {
        self.try_send_signed_as(fake, authorization)
            .await
            .expect("the fake cloud answers")
    }

    async fn try_send_signed_as(
        &self,
        fake: &Fake,
        authorization: &str,
    ) -> reqwest::Result<Answer> {
        let mut headers = self.headers.clone();
        headers.push(("authorization".into(), authorization.into()));
        let url = format!("/?{}", query_string(&self.query));
        fake.try_send(Method::POST, &url, &headers, Vec::new())
            .await
    }

    pub async fn send(&self, fake: &Fake) -> Answer {
        self.send_signed_as(fake, &self.authorization()).await
    }

    /// Sends the request; an error when the connection closed unanswered.
    pub async fn try_send(&self, fake: &Fake) -> reqwest::Result<Answer> {
        self.try_send_signed_as(fake, &self.authorization()).await
    }
}

/// An Alibaba V3 call with `params`, signed and sent.
pub async fn alibaba(fake: &Fake, action: &str, params: &[(&str, &str)]) -> Answer {
    V3::new(fake, action, params).send(fake).await
}

/// The parameters of an RPC (V2, HMAC-SHA1) request, `Signature` not yet added.
pub fn rpc_params(action: &str, timestamp: &str, params: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut all = pairs(&[
        ("AccessKeyId", AK),
        ("Action", action),
        ("Format", "JSON"),
        ("SignatureMethod", "HMAC-SHA1"),
        ("SignatureNonce", &nonce()),
        ("SignatureVersion", "1.0"),
        ("Timestamp", timestamp),
        ("Version", "2014-05-26"),
    ]);
    all.extend(pairs(params));
    all
}

pub fn with_signature(method: &str, mut params: Vec<(String, String)>) -> Vec<(String, String)> {
    let signature = rpc::signature(SECRET, method, &params);
    params.push((rpc::SIGNATURE_PARAM.into(), signature));
    params
}

/// Sends signed RPC parameters to `path` in the query, with extra headers.
pub async fn send_rpc_query(
    fake: &Fake,
    path: &str,
    params: &[(String, String)],
    headers: &[(&str, &str)],
) -> Answer {
    let url = format!("{path}?{}", query_string(params));
    fake.send(Method::POST, &url, &pairs(headers), Vec::new())
        .await
}

/// Sends signed RPC parameters to `path` as a form body.
pub async fn send_rpc_form(fake: &Fake, path: &str, params: &[(String, String)]) -> Answer {
    let headers = pairs(&[("content-type", "application/x-www-form-urlencoded")]);
    let body = query_string(params).into_bytes();
    fake.send(Method::POST, path, &headers, body).await
}

/// A Baidu request, signed with bce-auth-v1 (default header set) at `timestamp`.
pub async fn baidu_at(
    fake: &Fake,
    method: Method,
    path: &str,
    query: &[(&str, &str)],
    body: Option<&Value>,
    timestamp: &str,
) -> Answer {
    let body = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
    let mut headers = pairs(&[("host", &fake.host), ("x-bce-date", timestamp)]);
    if !body.is_empty() {
        headers.push((
            "content-type".into(),
            "application/json;charset=utf-8".into(),
        ));
        headers.push(("content-length".into(), body.len().to_string()));
    }
    let query = pairs(query);
    let context = bce::AuthContext {
        access_key_id: AK,
        timestamp,
        expiration_seconds: 1800,
    };
    let request = SignedRequest {
        method: method.as_str(),
        path,
        query: &query,
        headers: &headers,
        signed_headers: &[],
    };
    let authorization = bce::authorization(SECRET, &context, &request);
    headers.push(("authorization".into(), authorization));
    // Flags such as `revokeRule` go on the wire without `=`, as the Go SDK sends them.
    let wire_query = query
        .iter()
        .map(|(n, v)| match v.as_str() {
            "" => percent_encode(n),
            v => format!("{}={}", percent_encode(n), percent_encode(v)),
        })
        .collect::<Vec<_>>()
        .join("&");
    let url = if wire_query.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{wire_query}")
    };
    fake.send(method, &url, &headers, body).await
}

pub async fn baidu(
    fake: &Fake,
    method: Method,
    path: &str,
    query: &[(&str, &str)],
    body: Option<&Value>,
) -> Answer {
    baidu_at(fake, method, path, query, body, &now()).await
}

impl Fake {
    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{path_and_query}", self.host)
    }

    pub async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        headers: &[(String, String)],
        body: Vec<u8>,
    ) -> Answer {
        self.try_send(method, path_and_query, headers, body)
            .await
            .expect("the fake cloud answers")
    }

    pub async fn try_send(
        &self,
        method: Method,
        path_and_query: &str,
        headers: &[(String, String)],
        body: Vec<u8>,
    ) -> reqwest::Result<Answer> {
        let mut request = self.http.request(method, self.url(path_and_query));
        for (name, value) in headers {
            // reqwest derives these from the URL and body itself.
            if name != "host" && name != "content-length" {
                request = request.header(name, value);
            }
        }
        let response = request.body(body).send().await?;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await?;
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("the fake cloud answers JSON")
        };
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    pub async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        let headers = match body {
            Some(_) => pairs(&[("content-type", "application/json")]),
            None => Vec::new(),
        };
        let body = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        self.send(method, &format!("/_fake{path}"), &headers, body)
            .await
    }

    /// The admin API's client.
    pub fn client(&self) -> Admin {
        Admin::new(&self.url(""))
    }

    pub async fn create_group(&self, provider: &str, region: &str, id: &str) {
        self.client().create_group(provider, region, id).await;
    }

    pub async fn rules(&self, provider: &str, group: &str) -> Vec<Value> {
        let filter = [("provider", provider), ("group", group)];
        json_of(self.client().rules(&filter).await)
    }

    /// The journal, filtered by a query string such as `action=RevokeSecurityGroup`.
    pub async fn calls(&self, query: &str) -> Vec<Value> {
        let filter: Vec<(&str, &str)> = query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .collect();
        json_of(self.client().calls(&filter).await)
    }

    pub async fn set(&self, path: &str, body: Value) {
        self.client()
            .call(Method::PUT, path, &[], Some(&body))
            .await;
    }
}

fn json_of<T: serde::Serialize>(items: Vec<T>) -> Vec<Value> {
    items
        .into_iter()
        .map(|item| serde_json::to_value(item).expect("JSON"))
        .collect()
}
