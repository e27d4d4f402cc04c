//! The admin API under `/_fake/` (JSON), documented in README.md ("The fake cloud"):
//! groups and out-of-band rules, the call journal, token effects, faults,
//! behaviour switches, access keys, and reset.

use axum::{
    Json, Router,
    extract::{Path, Query, State, rejection::JsonRejection},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{delete, get, post},
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{
    FakeCloud, Settings,
    cloud::Cloud,
    faults::FaultPlan,
    idempotency::Tokens,
    journal::CallRecord,
    rule_json::RuleJson,
    state::{GroupKey, GroupKind, WireRule},
};

pub fn router() -> Router<FakeCloud> {
    Router::new()
        .route("/groups", post(create_group).get(list_groups))
        .route("/groups/{provider}/{region}/{id}", delete(delete_group))
        .route("/rules", get(list_rules).post(add_rule))
        .route(
            "/rules/{provider}/{region}/{group}/{rule_id}",
            delete(delete_rule),
        )
        .route("/calls", get(list_calls).delete(clear_calls))
        .route("/tokens", get(list_tokens))
        .route("/faults", get(get_faults).put(set_faults))
        .route("/settings", get(get_settings).put(set_settings))
        .route("/keys", post(add_key))
        .route("/reset", post(reset))
}

type AdminResult = Result<Response, (StatusCode, Json<Value>)>;

fn fail(status: StatusCode, message: impl Into<String>) -> (StatusCode, Json<Value>) {
    (status, Json(json!({ "error": message.into() })))
}

fn bad_json(rejection: &JsonRejection) -> (StatusCode, Json<Value>) {
    fail(StatusCode::BAD_REQUEST, rejection.body_text())
}

fn parse_provider(name: &str) -> Result<Cloud, (StatusCode, Json<Value>)> {
    Cloud::parse(name).ok_or_else(|| {
        fail(
            StatusCode::BAD_REQUEST,
            format!("unknown provider {name:?}: alibaba, apsara or baidu"),
        )
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NewGroup {
    provider: Cloud,
    region: String,
    id: String,
    #[serde(default)]
    name: Option<String>,
    /// `vpc` (default) or `classic`, and whether it is an enterprise group (ECS).
    #[serde(default, flatten)]
    kind: GroupKind,
    /// At most this many rules; more is `AuthorizationLimitExceed` (ECS).
    #[serde(default)]
    rule_quota: Option<usize>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GroupView {
    provider: Cloud,
    region: String,
    id: String,
    name: String,
    version: u64,
    rules: usize,
    #[serde(flatten)]
    kind: GroupKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    rule_quota: Option<usize>,
}

async fn create_group(
    State(cloud): State<FakeCloud>,
    body: Result<Json<NewGroup>, JsonRejection>,
) -> AdminResult {
    let Json(new) = body.map_err(|r| bad_json(&r))?;
    if new.id.is_empty() || new.region.is_empty() {
        return Err(fail(
            StatusCode::BAD_REQUEST,
            "region and id must not be empty",
        ));
    }
    let key = GroupKey {
        provider: new.provider,
        region: new.region,
        id: new.id,
    };
    let mut world = cloud.world();
    let name = new.name.unwrap_or_else(|| key.id.clone());
    if !world.store.create(key.clone(), name) {
        return Err(fail(StatusCode::CONFLICT, format!("group {key} exists")));
    }
    if let Some(group) = world.store.get_mut(&key) {
        group.kind = new.kind;
        group.rule_quota = new.rule_quota;
    }
    cloud.persist(&world);
    let view = group_view(&world.store, &key);
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

fn group_view(store: &super::state::Store, key: &GroupKey) -> Option<GroupView> {
    store.get(key).map(|g| GroupView {
        provider: key.provider,
        region: key.region.clone(),
        id: key.id.clone(),
        name: g.name.clone(),
        version: g.version,
        rules: g.rules.len(),
        kind: g.kind,
        rule_quota: g.rule_quota,
    })
}

async fn list_groups(State(cloud): State<FakeCloud>) -> Json<Vec<GroupView>> {
    let world = cloud.world();
    let views = world
        .store
        .groups()
        .filter_map(|(key, _)| group_view(&world.store, key))
        .collect();
    Json(views)
}

async fn delete_group(
    State(cloud): State<FakeCloud>,
    Path((provider, region, id)): Path<(String, String, String)>,
) -> AdminResult {
    let key = GroupKey {
        provider: parse_provider(&provider)?,
        region,
        id,
    };
    let mut world = cloud.world();
    if !world.store.remove(&key) {
        return Err(fail(StatusCode::NOT_FOUND, format!("no group {key}")));
    }
    cloud.persist(&world);
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
struct RuleFilter {
    provider: Option<String>,
    region: Option<String>,
    group: Option<String>,
}

/// A rule as `GET /_fake/rules` lists it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleView {
    pub provider: Cloud,
    pub region: String,
    pub group: String,
    pub rule_id: String,
    pub created_time: String,
    /// In the form of a `SecurityGroupRule`'s `spec.rule`.
    pub rule: RuleJson,
    /// The rule as the provider keeps it, field for field.
    pub wire: WireRule,
}

async fn list_rules(
    State(cloud): State<FakeCloud>,
    Query(filter): Query<RuleFilter>,
) -> AdminResult {
    let provider = filter.provider.as_deref().map(parse_provider).transpose()?;
    let world = cloud.world();
    let rules: Vec<RuleView> = world
        .store
        .groups()
        .filter(|(k, _)| provider.is_none_or(|p| p == k.provider))
        .filter(|(k, _)| filter.region.as_ref().is_none_or(|r| *r == k.region))
        .filter(|(k, _)| filter.group.as_ref().is_none_or(|g| *g == k.id))
        .flat_map(|(k, g)| {
            g.rules.iter().map(|r| RuleView {
                provider: k.provider,
                region: k.region.clone(),
                group: k.id.clone(),
                rule_id: r.id.clone(),
                created_time: r.created_time.clone(),
                rule: r.rule.to_json(),
                wire: r.rule.clone(),
            })
        })
        .collect();
    Ok(Json(rules).into_response())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NewRule {
    provider: Cloud,
    region: String,
    group: String,
    /// Chosen by the fake cloud when absent.
    #[serde(default)]
    rule_id: Option<String>,
    rule: RuleJson,
}

/// Adds a rule out of band, as someone using the console would; no identity
/// check, so tests can also build states the API would refuse.
async fn add_rule(
    State(cloud): State<FakeCloud>,
    body: Result<Json<NewRule>, JsonRejection>,
) -> AdminResult {
    let Json(new) = body.map_err(|r| bad_json(&r))?;
    let rule = WireRule::from_json(new.provider, &new.rule)
        .map_err(|e| fail(StatusCode::BAD_REQUEST, e))?;
    let key = GroupKey {
        provider: new.provider,
        region: new.region,
        id: new.group,
    };
    let mut guard = cloud.world();
    let world = &mut *guard;
    if world.store.get(&key).is_none() {
        return Err(fail(StatusCode::NOT_FOUND, format!("no group {key}")));
    }
    let id = match new.rule_id {
        Some(id) if world.store.find_rule(key.provider, &id).is_some() => {
            return Err(fail(StatusCode::CONFLICT, format!("rule id {id} is taken")));
        }
        Some(id) => id,
        None => world.store.new_rule_id(key.provider, &mut world.rng),
    };
    if let Some(group) = world.store.get_mut(&key) {
        group.add(id.clone(), rule);
    }
    cloud.persist(world);
    Ok((StatusCode::CREATED, Json(json!({ "ruleId": id }))).into_response())
}

async fn delete_rule(
    State(cloud): State<FakeCloud>,
    Path((provider, region, group, rule_id)): Path<(String, String, String, String)>,
) -> AdminResult {
    let key = GroupKey {
        provider: parse_provider(&provider)?,
        region,
        id: group,
    };
    let mut world = cloud.world();
    let group = world
        .store
        .get_mut(&key)
        .ok_or_else(|| fail(StatusCode::NOT_FOUND, format!("no group {key}")))?;
    let index = group
        .rules
        .iter()
        .position(|r| r.id == rule_id)
        .ok_or_else(|| fail(StatusCode::NOT_FOUND, format!("no rule {rule_id} in {key}")))?;
    group.remove_at(index);
    cloud.persist(&world);
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CallFilter {
    provider: Option<String>,
    action: Option<String>,
    client_token: Option<String>,
}

async fn list_calls(
    State(cloud): State<FakeCloud>,
    Query(filter): Query<CallFilter>,
) -> AdminResult {
    let provider = filter.provider.as_deref().map(parse_provider).transpose()?;
    let world = cloud.world();
    let calls: Vec<&CallRecord> = world
        .journal
        .calls()
        .filter(|c| provider.is_none_or(|p| p == c.provider))
        .filter(|c| filter.action.as_ref().is_none_or(|a| *a == c.action))
        .filter(|c| {
            filter
                .client_token
                .as_ref()
                .is_none_or(|t| c.client_token.as_ref() == Some(t))
        })
        .collect();
    Ok(Json(calls).into_response())
}

async fn clear_calls(State(cloud): State<FakeCloud>) -> StatusCode {
    cloud.world().journal.clear();
    StatusCode::NO_CONTENT
}

/// A ClientToken's record as `GET /_fake/tokens` lists it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenView {
    pub provider: Cloud,
    pub access_key_id: String,
    pub action: String,
    pub client_token: String,
    /// Calls that presented the token.
    pub calls: u64,
    /// Calls with the token that changed the cloud: more than one is a bug.
    pub effects: u64,
}

async fn list_tokens(State(cloud): State<FakeCloud>) -> Json<Vec<TokenView>> {
    let world = cloud.world();
    let mut views: Vec<TokenView> = world
        .tokens
        .records()
        .map(|r| TokenView {
            provider: r.key.provider,
            access_key_id: r.key.access_key_id.clone(),
            action: r.action.clone(),
            client_token: r.key.token.clone(),
            calls: r.calls,
            effects: r.effects,
        })
        .collect();
    views.sort_by(|a, b| a.client_token.cmp(&b.client_token));
    Json(views)
}

async fn get_faults(State(cloud): State<FakeCloud>) -> Json<FaultPlan> {
    Json(cloud.world().faults.plan().clone())
}

async fn set_faults(
    State(cloud): State<FakeCloud>,
    body: Result<Json<FaultPlan>, JsonRejection>,
) -> AdminResult {
    let Json(plan) = body.map_err(|r| bad_json(&r))?;
    let seed = cloud.shared.config.seed;
    cloud
        .world()
        .faults
        .set(plan.clone(), seed)
        .map_err(|e| fail(StatusCode::BAD_REQUEST, e))?;
    Ok(Json(plan).into_response())
}

async fn get_settings(State(cloud): State<FakeCloud>) -> Json<Settings> {
    Json(cloud.world().settings.clone())
}

/// Merges the given fields into the current settings.
async fn set_settings(
    State(cloud): State<FakeCloud>,
    body: Result<Json<Value>, JsonRejection>,
) -> AdminResult {
    let Json(patch) = body.map_err(|r| bad_json(&r))?;
    let Value::Object(patch) = patch else {
        return Err(fail(StatusCode::BAD_REQUEST, "expected a JSON object"));
    };
    let mut world = cloud.world();
    let mut merged = serde_json::to_value(&world.settings).unwrap_or_default();
    if let Value::Object(current) = &mut merged {
        current.extend(patch);
    }
    world.settings =
        serde_json::from_value(merged).map_err(|e| fail(StatusCode::BAD_REQUEST, e.to_string()))?;
    Ok(Json(world.settings.clone()).into_response())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NewKey {
    access_key_id: String,
    access_key_secret: String,
}

async fn add_key(
    State(cloud): State<FakeCloud>,
    body: Result<Json<NewKey>, JsonRejection>,
) -> AdminResult {
    let Json(key) = body.map_err(|r| bad_json(&r))?;
    if key.access_key_id.is_empty() || key.access_key_secret.is_empty() {
        return Err(fail(
            StatusCode::BAD_REQUEST,
            "id and secret must not be empty",
        ));
    }
    cloud
        .world()
        .keys
        .add(key.access_key_id, key.access_key_secret);
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Forgets groups, rules, tokens, nonces, calls and faults; keeps access keys and settings.
async fn reset(State(cloud): State<FakeCloud>) -> StatusCode {
    let mut world = cloud.world();
    world.store = super::state::Store::default();
    world.tokens = Tokens::default();
    world.journal.clear();
    world.nonces = super::auth::NonceCache::default();
    world.faults = super::faults::Faults::default();
    cloud.persist(&world);
    StatusCode::NO_CONTENT
}
