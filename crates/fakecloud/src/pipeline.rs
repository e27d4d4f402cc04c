//! The path every provider call takes: faults → a ClientToken still in
//! flight → signature → ClientToken replay → the action → journal, answered
//! in the provider's own envelope.

use std::{collections::BTreeMap, sync::Arc, time::Instant};

use axum::{
    body::Body,
    http::{HeaderValue, StatusCode, header},
    response::Response,
};
use jiff::Timestamp;
use rand::Rng;
use serde_json::{Map, Value, json};

use super::cloud::Cloud;
use super::{
    ApsaraEnvelope, DropConnection, FakeCloud, Settings, World,
    faults::{Fault, Throttle},
    idempotency::{CachedResponse, InFlight, Lookup, TokenKey},
    journal::{self, CallRecord},
};

/// A provider error as the provider would report it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    pub retry_after_ms: Option<u64>,
}

impl ApiError {
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
            code: code.to_owned(),
            message: message.into(),
            retry_after_ms: None,
        }
    }
}

/// A successful action: the response fields and whether the cloud changed.
pub struct Outcome {
    pub body: Option<Map<String, Value>>,
    pub effect: bool,
}

/// The envelope family: Alibaba POP JSON, Apsara Stack's (POP or one of its
/// gateways' envelopes, see [`ApsaraEnvelope`]), or Baidu BCE JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Pop,
    /// `route`: the `/apsara/route/Ecs/<Action>` gateway, which answers
    /// success as `{"RequestID": ...}` (seed 000).
    Apsara {
        route: bool,
    },
    Bce,
}

impl Dialect {
    fn new_request_id(self, rng: &mut impl Rng) -> String {
        let id = uuid::Builder::from_random_bytes(rng.random()).into_uuid();
        match self {
            Self::Pop | Self::Apsara { .. } => id.to_string().to_ascii_uppercase(),
            Self::Bce => id.to_string(),
        }
    }

    fn success_body(
        self,
        settings: &Settings,
        request_id: &str,
        body: Option<Map<String, Value>>,
    ) -> String {
        let mut map = match (self, body) {
            // Baidu's write calls answer with an empty body and the id in a header.
            (Self::Bce, None) => return String::new(),
            (Self::Bce, Some(map)) => return Value::Object(map).to_string(),
            (_, body) => body.unwrap_or_default(),
        };
        match self {
            Self::Apsara { route: true } => map.insert("RequestID".into(), request_id.into()),
            _ => map.insert("RequestId".into(), request_id.into()),
        };
        if let Self::Apsara { .. } = self {
            match settings.apsara_envelope {
                ApsaraEnvelope::Asapi => {
                    map.insert("asapiSuccess".into(), true.into());
                    map.insert("asapiRequestId".into(), request_id.into());
                }
                ApsaraEnvelope::Ascm => {
                    map.insert("success".into(), true.into());
                }
                ApsaraEnvelope::Pop | ApsaraEnvelope::ResultCode => {}
            }
        }
        Value::Object(map).to_string()
    }

    /// The failure's status and body.
    fn error_body(
        self,
        settings: &Settings,
        request_id: &str,
        error: &ApiError,
    ) -> (StatusCode, String) {
        let pop = || {
            json!({
                "RequestId": request_id,
                "HostId": "ecs.aliyuncs.com",
                "Code": error.code,
                "Message": error.message,
                "Recommend": format!(
                    "https://api.aliyun.com/troubleshoot?q={}&product=Ecs",
                    error.code
                ),
            })
        };
        let body = match self {
            Self::Pop => pop(),
            Self::Bce => json!({
                "requestId": request_id,
                "code": error.code,
                "message": error.message,
            }),
            Self::Apsara { .. } => match settings.apsara_envelope {
                ApsaraEnvelope::Pop => pop(),
                // The seed's failure sample: a server error is `-1, "system error"`.
                ApsaraEnvelope::ResultCode if error.status.is_server_error() => json!({
                    "resultCode": -1,
                    "resultMsg": "system error",
                    "result": null,
                }),
                ApsaraEnvelope::ResultCode => json!({
                    "resultCode": error.code,
                    "resultMsg": error.message,
                    "result": null,
                }),
                ApsaraEnvelope::Asapi => json!({
                    "asapiSuccess": false,
                    "asapiErrorCode": error.code,
                    "asapiErrorMessage": error.message,
                    "asapiRequestId": request_id,
                }),
                ApsaraEnvelope::Ascm => json!({
                    "success": false,
                    "code": error.code,
                    "message": error.message,
                    "requestId": request_id,
                }),
            },
        };
        let status = match self {
            Self::Apsara { .. } if settings.apsara_failures_as200 => StatusCode::OK,
            _ => error.status,
        };
        (status, body.to_string())
    }

    pub fn response(
        self,
        request_id: &str,
        status: StatusCode,
        body: String,
        retry_after_ms: Option<u64>,
    ) -> Response {
        let mut response = Response::new(Body::from(body));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        let (content_type, id_header) = match self {
            Self::Pop | Self::Apsara { .. } => {
                ("application/json;charset=utf-8", "x-acs-request-id")
            }
            Self::Bce => ("application/json;charset=UTF-8", "x-bce-request-id"),
        };
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        if let Ok(value) = HeaderValue::from_str(request_id) {
            headers.insert(id_header, value);
        }
        if let Some(ms) = retry_after_ms {
            let (name, value) = match self {
                Self::Pop | Self::Apsara { .. } => ("x-acs-retry-after", ms),
                Self::Bce => ("retry-after", ms.div_ceil(1000)),
            };
            headers.insert(name, HeaderValue::from(value));
        }
        response
    }

    fn is_bce(self) -> bool {
        self == Self::Bce
    }

    fn fault_error(self, fault: &Fault) -> ApiError {
        let bce = self.is_bce();
        match fault {
            Fault::Throttle(Throttle {
                retry_after_ms,
                status,
                code,
            }) => {
                let (default_status, default_code, message) = if bce {
                    (
                        429,
                        "RequestLimitExceeded",
                        "Request rate exceeds the limit, please retry later.",
                    )
                } else {
                    (
                        400,
                        "Throttling.User",
                        "Request was denied due to user flow control.",
                    )
                };
                ApiError {
                    retry_after_ms: *retry_after_ms,
                    ..ApiError::new(
                        status.unwrap_or(default_status),
                        code.as_deref().unwrap_or(default_code),
                        message,
                    )
                }
            }
            Fault::InternalError if bce => ApiError::new(
                500,
                "InternalError",
                "We encountered an internal error. Please try again.",
            ),
            Fault::InternalError => ApiError::new(
                500,
                "InternalError",
                "The request processing has failed due to some unknown error, exception or failure.",
            ),
            Fault::ServiceUnavailable if bce => ApiError::new(
                503,
                "ServiceUnavailable",
                "Service is temporarily unavailable, please try again later.",
            ),
            Fault::ServiceUnavailable => ApiError::new(
                503,
                "ServiceUnavailable",
                "The request has failed due to a temporary failure of the server.",
            ),
            // Baidu documents no code for a conflict; 409 is what its API uses for one.
            Fault::OperationConflict if bce => ApiError::new(
                409,
                "OperationConflict",
                "The operation conflicts with another request on the resource.",
            ),
            Fault::OperationConflict => ApiError::new(
                409,
                "OperationConflict",
                "Request was denied due to conflict with a previous request, please try again later.",
            ),
            Fault::Forbidden if bce => ApiError::new(403, "AccessDenied", "Access denied."),
            Fault::Forbidden => ApiError::new(
                403,
                "Forbidden.RAM",
                "User not authorized to operate on the specified resource, or this API doesn't support RAM.",
            ),
            Fault::Drop | Fault::DropAfter => unreachable!("a dropped call has no answer"),
        }
    }
}

/// One provider call, as far as the journal and replay care.
pub struct Call {
    pub provider: Cloud,
    pub dialect: Dialect,
    pub action: String,
    pub region: Option<String>,
    pub group: Option<String>,
    pub client_token: Option<String>,
    pub access_key_id: Option<String>,
    pub parameters: BTreeMap<String, String>,
    pub headers: BTreeMap<String, String>,
    /// Alibaba tokens are scoped by action, Baidu's are not.
    pub token_scope: String,
    /// Digest of everything that makes the call's intent (see `idempotency`).
    pub fingerprint: String,
}

type Step<'a, T> = Box<dyn FnOnce(&mut World, Timestamp) -> Result<T, ApiError> + Send + 'a>;

struct Answer {
    status: StatusCode,
    body: String,
    retry_after_ms: Option<u64>,
    effect: bool,
    replayed: bool,
    fault: Option<Fault>,
    code: String,
}

impl Answer {
    fn ok(body: String, effect: bool) -> Self {
        Self {
            status: StatusCode::OK,
            body,
            retry_after_ms: None,
            effect,
            replayed: false,
            fault: None,
            code: "OK".into(),
        }
    }

    fn error(dialect: Dialect, settings: &Settings, request_id: &str, error: &ApiError) -> Self {
        let (status, body) = dialect.error_body(settings, request_id, error);
        Self {
            status,
            body,
            retry_after_ms: error.retry_after_ms,
            effect: false,
            replayed: false,
            fault: None,
            code: error.code.clone(),
        }
    }
}

/// Runs `call`: `authenticate` checks the signature, `execute` does the action.
pub async fn run(
    cloud: &FakeCloud,
    call: Call,
    authenticate: Step<'_, ()>,
    execute: Step<'_, Outcome>,
) -> Response {
    let (decision, request_id) = {
        let mut world = cloud.world();
        let decision = world.faults.decide(
            call.provider,
            &call.action,
            call.group.as_deref(),
            Instant::now(),
        );
        (decision, call.dialect.new_request_id(&mut world.rng))
    };
    // Held until the answer is sent, or for a held answer until its hold
    // ends (a client that gave up does not end the server's work).
    let in_flight = match enter_flight(cloud, &call) {
        Ok(guard) => guard,
        Err(error) => {
            let mut world = cloud.world();
            let answer = Answer::error(call.dialect, &world.settings, &request_id, &error);
            record(&mut world, &call, &request_id, &answer);
            return call
                .dialect
                .response(&request_id, answer.status, answer.body, None);
        }
    };
    if !decision.latency.is_zero() {
        tokio::time::sleep(decision.latency).await;
    }

    let Some(answer) = carry_out(
        cloud,
        &call,
        &request_id,
        decision.fault,
        decision.describe_lag,
        authenticate,
        execute,
    ) else {
        return dropped_connection();
    };
    // Held after the journal entry, so a test can see the effect while the
    // client still waits for the answer.
    if !decision.hold.is_zero() {
        let hold = decision.hold;
        tokio::spawn(async move {
            tokio::time::sleep(hold).await;
            drop(in_flight);
        });
        tokio::time::sleep(hold).await;
    }
    if answer.fault == Some(Fault::DropAfter) {
        return dropped_connection();
    }
    call.dialect.response(
        &request_id,
        answer.status,
        answer.body,
        answer.retry_after_ms,
    )
}

/// The call's ClientToken, marked in flight until the guard drops; an ECS
/// call whose token is still in flight is refused with `LastTokenProcessing`.
/// The marks live outside the world lock, which no call holds while it waits.
fn enter_flight(cloud: &FakeCloud, call: &Call) -> Result<Option<InFlight>, ApiError> {
    let Some(key) = token_key(call) else {
        return Ok(None);
    };
    if call.dialect.is_bce() {
        // Baidu documents no answer for a token in flight.
        return Ok(None);
    }
    InFlight::enter(Arc::clone(&cloud.shared.in_flight), key)
        .map(Some)
        .ok_or_else(|| {
            ApiError::new(
                403,
                "LastTokenProcessing",
                "The last token request is processing.",
            )
        })
}

fn token_key(call: &Call) -> Option<TokenKey> {
    match (&call.client_token, &call.access_key_id) {
        (Some(token), Some(access_key_id)) if !token.is_empty() => Some(TokenKey {
            provider: call.provider,
            access_key_id: access_key_id.clone(),
            scope: call.token_scope.clone(),
            token: token.clone(),
        }),
        _ => None,
    }
}

/// Answers the call under the world lock and journals it; `None` when a
/// `drop` fault closes the connection before anything happens.
fn carry_out(
    cloud: &FakeCloud,
    call: &Call,
    request_id: &str,
    fault: Option<Fault>,
    describe_lag: std::time::Duration,
    authenticate: Step<'_, ()>,
    execute: Step<'_, Outcome>,
) -> Option<Answer> {
    let mut world = cloud.world();
    world.describe_lag = describe_lag;
    let now = Timestamp::now();
    let answer = match fault {
        Some(Fault::Drop) => {
            let dropped = Answer {
                code: "Dropped".into(),
                fault,
                ..Answer::ok(String::new(), false)
            };
            record(&mut world, call, request_id, &dropped);
            return None;
        }
        None | Some(Fault::DropAfter) => {
            let carried_out = match authenticate(&mut world, now) {
                Err(error) => Answer::error(call.dialect, &world.settings, request_id, &error),
                Ok(()) => answer_with_replay(cloud, &mut world, call, request_id, execute, now),
            };
            Answer {
                fault,
                ..carried_out
            }
        }
        Some(fault) => {
            let error = call.dialect.fault_error(&fault);
            Answer {
                fault: Some(fault),
                ..Answer::error(call.dialect, &world.settings, request_id, &error)
            }
        }
    };
    record(&mut world, call, request_id, &answer);
    if answer.effect {
        cloud.persist(&world);
    }
    Some(answer)
}

/// A response the server turns into a closed connection.
fn dropped_connection() -> Response {
    let mut response = Response::new(Body::empty());
    response.extensions_mut().insert(DropConnection);
    response
}

fn answer_with_replay(
    cloud: &FakeCloud,
    world: &mut World,
    call: &Call,
    request_id: &str,
    execute: Step<'_, Outcome>,
    now: Timestamp,
) -> Answer {
    let key = token_key(call);
    if let Some(key) = &key {
        match world.tokens.lookup(key, &call.fingerprint, now) {
            Lookup::New => {}
            Lookup::Replay(cached) => {
                return Answer {
                    status: StatusCode::from_u16(cached.status).unwrap_or(StatusCode::OK),
                    replayed: true,
                    ..Answer::ok(cached.body, false)
                };
            }
            Lookup::Mismatch => {
                let error = idempotent_mismatch(call.dialect);
                return Answer::error(call.dialect, &world.settings, request_id, &error);
            }
        }
    }
    match execute(world, now) {
        Err(error) => Answer::error(call.dialect, &world.settings, request_id, &error),
        Ok(outcome) => {
            let body = call
                .dialect
                .success_body(&world.settings, request_id, outcome.body);
            if let Some(key) = key {
                let cached = CachedResponse {
                    status: StatusCode::OK.as_u16(),
                    body: body.clone(),
                };
                world.tokens.remember(
                    key,
                    &call.action,
                    call.fingerprint.clone(),
                    cached,
                    outcome.effect,
                    now,
                );
                // Tokens must survive a restart even when the call changed nothing.
                cloud.persist(world);
            }
            Answer::ok(body, outcome.effect)
        }
    }
}

fn idempotent_mismatch(dialect: Dialect) -> ApiError {
    match dialect {
        Dialect::Pop | Dialect::Apsara { .. } => ApiError::new(
            400,
            "IdempotentParameterMismatch",
            "The request is retried with updated parameters.",
        ),
        Dialect::Bce => ApiError::new(
            403,
            "IdempotentParameterMismatch",
            "The request uses the same client token as a previous, but non-identical request.",
        ),
    }
}

fn record(world: &mut World, call: &Call, request_id: &str, answer: &Answer) {
    world.journal.push(CallRecord {
        seq: 0,
        time: journal::now_millis(),
        provider: call.provider,
        action: call.action.clone(),
        region: call.region.clone(),
        group: call.group.clone(),
        client_token: call.client_token.clone(),
        access_key_id: call.access_key_id.clone(),
        request_id: request_id.to_owned(),
        parameters: call.parameters.clone(),
        headers: call.headers.clone(),
        status: answer.status.as_u16(),
        code: answer.code.clone(),
        effect: answer.effect,
        replayed: answer.replayed,
        fault: answer.fault.as_ref().map(|f| f.name().to_owned()),
    });
}
