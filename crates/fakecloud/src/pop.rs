//! What Alibaba ECS and Apsara Stack share: reading a POP RPC request
//! (query ∪ form body; the form body alone at Apsara's route gateway),
//! verifying it, and answering it through the pipeline.

use std::collections::BTreeMap;

use axum::{
    body::Bytes,
    extract::{FromRequest, Request},
    http::{HeaderMap, Method, Uri, header},
    response::Response,
};

use super::{
    FakeCloud,
    auth::{self, AuthError, Received},
    cloud::Cloud,
    ecs::{self, EcsAction},
    idempotency::fingerprint,
    pipeline::{self, ApiError, Call, Dialect, Outcome},
};

/// Parameters that sign or frame a request rather than state its intent.
const SIGNING_PARAMS: [&str; 11] = [
    "Signature",
    "SignatureMethod",
    "SignatureVersion",
    "SignatureNonce",
    "SignatureType",
    "Timestamp",
    "AccessKeyId",
    "SecurityToken",
    "Format",
    "Action",
    "Version",
];

/// Headers that only carry signing material, left out of the journal.
const SIGNING_HEADERS: [&str; 3] = [
    "x-acs-signature-nonce",
    "x-acs-date",
    "x-acs-content-sha256",
];

/// A POP request as received: decoded query, query ∪ form parameters, headers, body.
pub struct PopRequest {
    method: String,
    path: String,
    query: Vec<(String, String)>,
    params: Vec<(String, String)>,
    /// The parameters of a form body (empty for any other body).
    form: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    body: Bytes,
}

impl<S: Send + Sync> FromRequest<S> for PopRequest {
    type Rejection = Response;

    async fn from_request(request: Request, _: &S) -> Result<Self, Response> {
        let (parts, body) = super::read_request(request).await?;
        Ok(Self::read(&parts.method, &parts.uri, &parts.headers, body))
    }
}

impl PopRequest {
    fn read(method: &Method, uri: &Uri, headers: &HeaderMap, body: Bytes) -> Self {
        let query: Vec<(String, String)> = uri
            .query()
            .map(|q| {
                url::form_urlencoded::parse(q.as_bytes())
                    .into_owned()
                    .collect()
            })
            .unwrap_or_default();
        let is_form = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        let form: Vec<(String, String)> = if is_form {
            url::form_urlencoded::parse(&body).into_owned().collect()
        } else {
            Vec::new()
        };
        let params = query.iter().chain(&form).cloned().collect();
        Self {
            method: method.as_str().to_owned(),
            path: uri.path().to_owned(),
            query,
            params,
            form,
            headers: super::header_pairs(headers),
            body,
        }
    }

    /// The same request read as the route gateway reads it: every
    /// parameter in the form body (seed 000), nothing from the query.
    pub fn body_only(self) -> Self {
        Self {
            params: self.form.clone(),
            ..self
        }
    }

    fn received(&self) -> Received<'_> {
        Received {
            method: &self.method,
            path: &self.path,
            query: &self.query,
            params: &self.params,
            headers: &self.headers,
            body: &self.body,
        }
    }

    fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Answers one POP request for Alibaba or Apsara; `path_action` is the action
/// named by an `/apsara/route/Ecs/<Action>` path.
pub async fn serve_pop(
    cloud: &FakeCloud,
    provider: Cloud,
    request: PopRequest,
    path_action: Option<String>,
) -> Response {
    let v3 = auth::uses_acs3(&request.headers);
    let (action, version) = if v3 {
        (
            request.header("x-acs-action"),
            request.header("x-acs-version"),
        )
    } else {
        (request.param("Action"), request.param("Version"))
    };
    // An `/apsara/route/Ecs/<Action>` path fixes the API; its body need not repeat it.
    let routed = path_action.is_some();
    let action = path_action
        .or_else(|| action.map(str::to_owned))
        .unwrap_or_default();
    let version = match version {
        Some(version) => version.to_owned(),
        None if routed => ecs::API_VERSION.to_owned(),
        None => String::new(),
    };

    let business: BTreeMap<String, String> = request
        .params
        .iter()
        .filter(|(name, _)| !SIGNING_PARAMS.contains(&name.as_str()))
        .cloned()
        .collect();
    let intent = business
        .iter()
        .filter(|(name, _)| *name != "ClientToken")
        .map(|(n, v)| (n.as_str(), v.as_str()));
    let fingerprint = fingerprint(
        [("Action", action.as_str()), ("Version", version.as_str())]
            .into_iter()
            .chain(intent),
    );
    let mut parameters = business.clone();
    parameters.insert("Action".into(), action.clone());
    parameters.insert("Version".into(), version.clone());
    let call = Call {
        provider,
        dialect: match provider {
            Cloud::Apsara => Dialect::Apsara { route: routed },
            _ => Dialect::Pop,
        },
        action: action.clone(),
        region: business.get("RegionId").cloned(),
        group: business.get("SecurityGroupId").cloned(),
        client_token: business.get("ClientToken").cloned(),
        access_key_id: auth::claimed_alibaba_key(&request.received()),
        parameters,
        headers: request
            .headers
            .iter()
            .filter(|(n, _)| n.starts_with("x-acs-") && !SIGNING_HEADERS.contains(&n.as_str()))
            .cloned()
            .collect(),
        token_scope: action.clone(),
        fingerprint,
    };

    let authenticate = Box::new(|world: &mut super::World, now| {
        let received = request.received();
        let verified = match (v3, provider) {
            (true, Cloud::Apsara) => Err(AuthError::Malformed(
                "Apsara Stack accepts only HMAC-SHA1 RPC signatures".into(),
            )),
            (true, _) => auth::verify_acs3(&world.keys, &mut world.nonces, &received, now),
            (false, _) => auth::verify_rpc(&world.keys, &mut world.nonces, &received, now),
        };
        verified.map(drop).map_err(|e| pop_auth_error(&e, v3))
    });
    let execute = Box::new(
        move |world: &mut super::World, _now| -> Result<Outcome, ApiError> {
            let action = EcsAction::parse(&action).ok_or_else(|| {
                ApiError::new(
                    404,
                    "InvalidAction.NotFound",
                    "Specified api is not found, please check your url and method.",
                )
            })?;
            if version != ecs::API_VERSION {
                return Err(ApiError::new(
                    400,
                    "InvalidVersion",
                    "Specified parameter Version is not valid.",
                ));
            }
            let gateway = match provider {
                Cloud::Apsara if routed => ecs::Gateway::ApsaraRoute,
                Cloud::Apsara => ecs::Gateway::Apsara,
                _ => ecs::Gateway::Alibaba,
            };
            ecs::execute(world, gateway, action, &business)
        },
    );
    pipeline::run(cloud, call, authenticate, execute).await
}

/// Alibaba's answer to refused credentials.
fn pop_auth_error(error: &AuthError, v3: bool) -> ApiError {
    let timestamp = if v3 { "x-acs-date" } else { "Timestamp" };
    match error {
        AuthError::Missing => ApiError::new(
            400,
            "MissingAccessKeyId",
            "AccessKeyId is mandatory for this action.",
        ),
        AuthError::Malformed(why) => ApiError::new(
            400,
            "IncompleteSignature",
            format!("The request signature does not conform to Aliyun standards. {why}"),
        ),
        AuthError::UnknownAccessKey => ApiError::new(
            404,
            "InvalidAccessKeyId.NotFound",
            "Specified access key is not found.",
        ),
        AuthError::Mismatch(string_to_sign) => ApiError::new(
            400,
            "SignatureDoesNotMatch",
            format!(
                "Specified signature is not matched with our calculation. server string to sign is:{string_to_sign}"
            ),
        ),
        AuthError::BadTimestamp => ApiError::new(
            400,
            "IllegalTimestamp",
            format!(
                "The input parameter \"{timestamp}\" that is mandatory for processing this request is not supplied."
            ),
        ),
        AuthError::Expired => ApiError::new(
            400,
            "InvalidTimeStamp.Expired",
            "Specified time stamp or date value is expired.",
        ),
        AuthError::NonceUsed => ApiError::new(
            400,
            "SignatureNonceUsed",
            "Specified signature nonce was used already.",
        ),
    }
}
