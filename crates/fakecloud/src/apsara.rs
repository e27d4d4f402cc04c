//! Apsara Stack: the ECS RPC API behind a private gateway, at `/asapi/v3`
//! (parameters in the query, as the ASAPI gateway takes them),
//! `/apsara/route/Ecs/<Action>` (parameters in a form body), or `/` when the
//! request carries Apsara's organisation headers. HMAC-SHA1 RPC signatures
//! only, legacy flat rule parameters, POP error envelope.

use axum::{
    extract::{Path, State},
    response::Response,
};

use super::{
    FakeCloud,
    pop::{PopRequest, serve_pop},
};
use secgroup_operator::provider::ProviderKind;

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
    serve_pop(&cloud, ProviderKind::Apsara, request, None).await
}

pub async fn route(
    State(cloud): State<FakeCloud>,
    Path(action): Path<String>,
    request: PopRequest,
) -> Response {
    serve_pop(&cloud, ProviderKind::Apsara, request, Some(action)).await
}
