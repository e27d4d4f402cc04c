//! Apsara Stack: the ECS RPC API behind a private gateway, at `/asapi/v3`
//! (parameters in the query, as the ASAPI gateway takes them),
//! `/apsara/route/Ecs/<Action>` (as seed 000 has it: POST, every parameter
//! in a form body, `regionId` as well as `RegionId`, success answered as
//! `{"RequestID": ...}`), or `/` when the request carries Apsara's
//! organisation headers. HMAC-SHA1 RPC signatures only, legacy flat rule
//! parameters, `IpProtocol` in lower case only; failures in the envelope the
//! `apsaraEnvelope` setting picks.

use axum::{
    extract::{Path, State},
    response::Response,
};

use super::cloud::Cloud;
use super::{
    FakeCloud,
    pop::{PopRequest, serve_pop},
};

/// Headers only Apsara clients send; at `/` they select the Apsara cloud.
const APSARA_HEADERS: [&str; 3] = [
    "x-acs-organizationid",
    "x-acs-resourcegroupid",
    "x-acs-asapi-product",
];

pub fn is_apsara(request: &PopRequest) -> bool {
    APSARA_HEADERS.iter().any(|h| request.header(h).is_some())
}

pub async fn asapi(State(cloud): State<FakeCloud>, request: PopRequest) -> Response {
    serve_pop(&cloud, Cloud::Apsara, request, None).await
}

pub async fn route(
    State(cloud): State<FakeCloud>,
    Path(action): Path<String>,
    request: PopRequest,
) -> Response {
    serve_pop(&cloud, Cloud::Apsara, request.body_only(), Some(action)).await
}
