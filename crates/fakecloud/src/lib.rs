//! `secgroup-fakecloud`: the three providers' security-group APIs on one
//! loopback port, faithful enough that their official SDKs work against it.
//!
//! Routes: Alibaba ECS RPC at `/` (Apsara too when the request carries
//! Apsara's `x-acs-organizationid`/`x-acs-asapi-product` headers), Apsara
//! Stack at `/asapi/v3` and `/apsara/route/Ecs/<Action>`, Baidu BCC under
//! `/v2/securityGroup`, and the admin API under `/_fake/` (see
//! README.md, "The fake cloud"). Tests run it in-process with [`serve`], and
//! talk to its admin API with [`client::Admin`].
//!
//! It reads each provider's wire format itself, as the providers document
//! it, and shares nothing with the operator but the signers: it is the
//! oracle the operator's clients are tested against.

mod admin;
mod alibaba;
mod apsara;
mod auth;
mod baidu;
mod bcc_rule;
mod cidr;
pub mod client;
pub mod cloud;
mod ecs;
mod ecs_rule;
pub mod faults;
mod idempotency;
pub mod journal;
mod pipeline;
mod pop;
pub mod rule_json;
pub mod state;
pub mod tls;

use std::{
    convert::Infallible,
    path::PathBuf,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use axum::{
    Router,
    body::Body,
    routing::{any, get, post, put},
};
use hyper_util::rt::TokioIo;
use rand::{SeedableRng, rngs::StdRng};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tower::ServiceExt;

pub use self::admin::{RuleView, TokenView};
use self::{
    auth::{AccessKeys, NonceCache},
    faults::Faults,
    idempotency::{InFlightTokens, TokenRecord, Tokens},
    journal::Journal,
    state::{GroupFile, Store},
};

/// How the fake cloud starts.
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// `(AccessKeyId, AccessKeySecret)` pairs every provider accepts.
    pub access_keys: Vec<(String, String)>,
    /// Where groups, rules and ClientTokens persist across restarts (JSON).
    pub state_file: Option<PathBuf>,
    /// Seeds rule ids, request ids and fault draws, for reproducible runs.
    pub seed: Option<u64>,
    /// Whether a call naming an unknown group creates it instead of failing.
    pub auto_create_groups: bool,
}

/// Behaviour switches where the providers' documentation disagrees with itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Settings {
    pub auto_create_groups: bool,
    /// Alibaba revoke by `SecurityGroupRuleId.N` of a missing rule.
    pub alibaba_missing_rule_by_id: MissingRuleById,
    /// Alibaba revoke by attributes of a rule that does not exist.
    pub alibaba_missing_rule_by_attributes: MissingRuleByAttributes,
    /// The same on Apsara Stack, whose gateways may answer otherwise.
    pub apsara_missing_rule_by_attributes: MissingRuleByAttributes,
    /// The envelope Apsara Stack failures come in.
    pub apsara_envelope: ApsaraEnvelope,
    /// Apsara Stack failures answered with HTTP 200, as some gateways do.
    pub apsara_failures_as200: bool,
}

/// The shapes Apsara Stack gateways answer failures in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ApsaraEnvelope {
    /// Public ECS: `{RequestId, Code, Message}`.
    Pop,
    /// The route gateway (seed 000): `{resultCode, resultMsg, result}`.
    ResultCode,
    /// ASAPI: `{asapiSuccess: false, asapiErrorCode, asapiErrorMessage}`.
    Asapi,
    /// ASCM: `{success: false, code, message}`.
    Ascm,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MissingRuleById {
    /// 404 `InvalidSecurityGroupRuleId.NotFound` (the error-code table).
    #[serde(rename = "InvalidSecurityGroupRuleId.NotFound")]
    NotFound,
    /// 400 `InvalidParam.SecurityGroupRuleId` (the 2024-07 change note).
    #[serde(rename = "InvalidParam.SecurityGroupRuleId")]
    InvalidParam,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MissingRuleByAttributes {
    /// 400 `InvalidSecurityGroupRule.RuleNotExist` (observed since 2024-07).
    #[serde(rename = "InvalidSecurityGroupRule.RuleNotExist")]
    RuleNotExist,
    /// 403 `InvalidGroupAuthItem.NotFound` (the RevokeSecurityGroup error table).
    #[serde(rename = "InvalidGroupAuthItem.NotFound")]
    GroupAuthItemNotFound,
    /// 200 and nothing deleted (the older documentation).
    #[serde(rename = "Success")]
    Success,
}

/// Everything the fake cloud knows, behind one lock: calls are tiny and the
/// lock is never held across an await.
struct World {
    store: Store,
    tokens: Tokens,
    journal: Journal,
    faults: Faults,
    keys: AccessKeys,
    nonces: NonceCache,
    settings: Settings,
    rng: StdRng,
    /// The describe lag of the call being carried out (a fault).
    describe_lag: Duration,
}

struct Shared {
    world: Mutex<World>,
    in_flight: InFlightTokens,
    config: Config,
}

/// A running fake cloud's state; cheap to clone.
#[derive(Clone)]
pub struct FakeCloud {
    shared: Arc<Shared>,
}

/// What `--state FILE` holds.
#[derive(Serialize, Deserialize, Default)]
struct StateFile {
    groups: Vec<GroupFile>,
    #[serde(default)]
    tokens: Vec<TokenRecord>,
}

impl FakeCloud {
    /// Builds the fake cloud, loading `config.state_file` if it exists.
    pub fn new(config: Config) -> anyhow::Result<Self> {
        let saved = match &config.state_file {
            Some(path) if path.exists() => {
                let text = std::fs::read_to_string(path)?;
                serde_json::from_str::<StateFile>(&text)?
            }
            _ => StateFile::default(),
        };
        let mut keys = AccessKeys::default();
        for (id, secret) in &config.access_keys {
            keys.add(id.clone(), secret.clone());
        }
        let world = World {
            store: Store::from_file(saved.groups),
            tokens: Tokens::from_records(saved.tokens),
            journal: Journal::default(),
            faults: Faults::default(),
            keys,
            nonces: NonceCache::default(),
            settings: Settings {
                auto_create_groups: config.auto_create_groups,
                alibaba_missing_rule_by_id: MissingRuleById::NotFound,
                alibaba_missing_rule_by_attributes: MissingRuleByAttributes::RuleNotExist,
                apsara_missing_rule_by_attributes: MissingRuleByAttributes::RuleNotExist,
                apsara_envelope: ApsaraEnvelope::Pop,
                apsara_failures_as200: false,
            },
            rng: new_rng(config.seed),
            describe_lag: Duration::ZERO,
        };
        let shared = Shared {
            world: Mutex::new(world),
            in_flight: InFlightTokens::default(),
            config,
        };
        Ok(Self {
            shared: Arc::new(shared),
        })
    }

    /// Every route: the three providers and `/_fake/`.
    pub fn router(&self) -> Router {
        Router::new()
            .nest("/_fake", admin::router())
            .route("/", any(alibaba::rpc_root))
            .route("/asapi/v3", any(apsara::asapi))
            // The route gateway takes POST only (seed 000).
            .route("/apsara/route/Ecs/{action}", post(apsara::route))
            .route("/v2/securityGroup", get(baidu::list_groups))
            .route(
                "/v2/securityGroup/{id}",
                put(baidu::update_group).get(baidu::get_group),
            )
            .route(
                "/v2/securityGroup/rule/{rule_id}",
                axum::routing::delete(baidu::delete_rule),
            )
            .with_state(self.clone())
    }

    fn world(&self) -> MutexGuard<'_, World> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.shared
            .world
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Writes groups, rules and tokens to the state file, if there is one.
    fn persist(&self, world: &World) {
        let Some(path) = &self.shared.config.state_file else {
            return;
        };
        let file = StateFile {
            groups: world.store.to_file(),
            tokens: world.tokens.records().cloned().collect(),
        };
        let result = serde_json::to_vec_pretty(&file)
            .map_err(std::io::Error::other)
            .and_then(|bytes| state::write_atomically(path, &bytes));
        if let Err(error) = result {
            tracing::error!(path = %path.display(), %error, "cannot write the state file");
        }
    }
}

fn new_rng(seed: Option<u64>) -> StdRng {
    match seed {
        Some(seed) => StdRng::seed_from_u64(seed),
        None => StdRng::from_os_rng(),
    }
}

/// Bodies above this size are refused (the APIs here take small forms and JSON).
const MAX_BODY_BYTES: usize = 1 << 20;

/// Splits a request into its head and its whole body, for the provider extractors.
async fn read_request(
    request: axum::extract::Request,
) -> Result<(http::request::Parts, axum::body::Bytes), axum::response::Response> {
    use axum::response::IntoResponse;
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|e| (http::StatusCode::PAYLOAD_TOO_LARGE, e.to_string()).into_response())?;
    Ok((parts, body))
}

/// Header names lower-case (as `http` keeps them), values as text.
fn header_pairs(headers: &http::HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            (name.as_str().to_owned(), value)
        })
        .collect()
}

/// Marks a response whose connection is to be closed without sending it.
#[derive(Clone, Copy, Debug)]
struct DropConnection;

#[derive(Debug, thiserror::Error)]
#[error("connection dropped by fault injection")]
struct DroppedOnPurpose;

/// Serves the fake cloud over plain HTTP on `listener` until the task is dropped.
///
/// Tests bind `127.0.0.1:0`, read the address, and `tokio::spawn` this.
/// Connections are served by hyper directly (not `axum::serve`) so that a
/// "drop" fault can close a connection without writing any response.
pub async fn serve(listener: TcpListener, cloud: FakeCloud) -> std::io::Result<()> {
    accept_loop(listener, cloud.router(), None).await
}

/// Like `serve`, over HTTPS with the certificate of `tls`.
pub async fn serve_tls(
    listener: TcpListener,
    cloud: FakeCloud,
    tls: tls::TlsAcceptor,
) -> std::io::Result<()> {
    accept_loop(listener, cloud.router(), Some(tls)).await
}

async fn accept_loop(
    listener: TcpListener,
    router: Router,
    tls: Option<tls::TlsAcceptor>,
) -> std::io::Result<()> {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Per-connection failures (e.g. a reset during accept) must not stop the server.
                tracing::warn!(%error, "accept failed");
                continue;
            }
        };
        let router = router.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => serve_connection(stream, router).await,
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(stream) => serve_connection(stream, router).await,
                    Err(error) => tracing::debug!(%error, "TLS handshake failed"),
                },
            }
        });
    }
}

async fn serve_connection<S>(stream: S, router: Router)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |request: http::Request<_>| {
        let router = router.clone();
        async move {
            let response = router
                .oneshot(request.map(Body::new))
                .await
                .unwrap_or_else(|never: Infallible| match never {});
            if response.extensions().get::<DropConnection>().is_some() {
                return Err(DroppedOnPurpose);
            }
            Ok(response)
        }
    });
    let connection =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    if let Err(error) = connection.await {
        tracing::debug!(%error, "connection ended");
    }
}
