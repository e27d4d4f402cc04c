//! Alibaba Cloud ECS RPC at `/`: parameters in the query ∪ a form body,
//! signed with V3 (`Authorization: ACS3-HMAC-SHA256 …`) or V2 (`Signature`
//! parameters). A request carrying Apsara's headers is Apsara's.

use super::cloud::Cloud;
use axum::{extract::State, response::Response};

use super::{
    FakeCloud, apsara,
    pop::{PopRequest, serve_pop},
};

pub async fn rpc_root(State(cloud): State<FakeCloud>, request: PopRequest) -> Response {
    let provider = if apsara::is_apsara(&request) {
        Cloud::Apsara
    } else {
        Cloud::Alibaba
    };
    serve_pop(&cloud, provider, request, None).await
}
