//! Baidu BCC security groups under `/v2/securityGroup`: authorize and revoke
//! by the rule's six-tuple (remark included), delete by rule id, get and list.
//! Signed with `bce-auth-v1`; errors as `{requestId, code, message}`.
//!
//! Requests name no region; a `Host: bcc.<region>.baidubce.com` header
//! selects one, otherwise groups are found by id in any region.

use std::{collections::BTreeMap, time::Duration};

use axum::{
    body::Bytes,
    extract::{FromRequest, Path, Request, State},
    http::{HeaderMap, Method, Uri, header},
    response::Response,
};
use percent_encoding::percent_decode_str;
use serde_json::{Map, Value, json};

use super::{
    FakeCloud, World,
    auth::{self, AuthError, Received},
    bcc_rule::{BccRule, bad_request},
    cloud::Cloud,
    header_pairs,
    idempotency::fingerprint,
    pipeline::{self, ApiError, Call, Dialect, Outcome},
    state::{Group, GroupKey, WireRule},
};

/// Where a group is created when auto-creation is on and no region is known.
const DEFAULT_REGION: &str = "bj";

pub struct BceRequest {
    method: String,
    path: String,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    body: Bytes,
}

impl<S: Send + Sync> FromRequest<S> for BceRequest {
    type Rejection = Response;

    async fn from_request(request: Request, _: &S) -> Result<Self, Response> {
        let (parts, body) = super::read_request(request).await?;
        Ok(Self::read(&parts.method, &parts.uri, &parts.headers, body))
    }
}

impl BceRequest {
    fn read(method: &Method, uri: &Uri, headers: &HeaderMap, body: Bytes) -> Self {
        Self {
            method: method.as_str().to_owned(),
            path: percent_decode_str(uri.path())
                .decode_utf8_lossy()
                .into_owned(),
            query: uri
                .query()
                .map(|q| {
                    url::form_urlencoded::parse(q.as_bytes())
                        .into_owned()
                        .collect()
                })
                .unwrap_or_default(),
            headers: header_pairs(headers),
            body,
        }
    }

    fn query_param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The region a `bcc.<region>.baidubce.com` host names.
    fn region(&self) -> Option<String> {
        let host = self
            .headers
            .iter()
            .find(|(n, _)| n == header::HOST.as_str())?;
        let region = host.1.strip_prefix("bcc.")?.split_once('.')?.0;
        Some(region.to_owned())
    }

    /// The body as canonical JSON (keys sorted), or as received if it is not JSON.
    fn canonical_body(&self) -> String {
        serde_json::from_slice::<Value>(&self.body).map_or_else(
            |_| String::from_utf8_lossy(&self.body).into_owned(),
            |v| v.to_string(),
        )
    }

    /// A journal entry and replay key for this request.
    fn call(&self, action: &str, group: Option<String>) -> Call {
        let query: BTreeMap<String, String> = self
            .query
            .iter()
            .filter(|(n, _)| n != "clientToken")
            .cloned()
            .collect();
        let body = self.canonical_body();
        // Baidu: the same token with another path, query or body is a mismatch.
        let fingerprint = fingerprint(
            [
                ("method", self.method.as_str()),
                ("path", self.path.as_str()),
            ]
            .into_iter()
            .chain(query.iter().map(|(n, v)| (n.as_str(), v.as_str())))
            .chain([("body", body.as_str())]),
        );
        let mut parameters = query;
        if !body.is_empty() {
            parameters.insert("body".into(), body);
        }
        Call {
            provider: Cloud::Baidu,
            dialect: Dialect::Bce,
            action: action.to_owned(),
            region: self.region(),
            group,
            client_token: self.query_param("clientToken").map(str::to_owned),
            access_key_id: auth::claimed_baidu_key(&self.headers),
            parameters,
            headers: BTreeMap::new(),
            token_scope: String::new(),
            fingerprint,
        }
    }

    async fn serve(
        &self,
        cloud: &FakeCloud,
        call: Call,
        execute: impl FnOnce(&mut World) -> Result<Outcome, ApiError> + Send,
    ) -> Response {
        let authenticate = Box::new(|world: &mut World, now| {
            let received = Received {
                method: &self.method,
                path: &self.path,
                query: &self.query,
                params: &self.query,
                headers: &self.headers,
                body: &self.body,
            };
            auth::verify_bce(&world.keys, &received, now)
                .map(drop)
                .map_err(|e| bce_auth_error(&e))
        });
        let execute = Box::new(|world: &mut World, _now| execute(world));
        pipeline::run(cloud, call, authenticate, execute).await
    }
}

fn bce_auth_error(error: &AuthError) -> ApiError {
    match error {
        AuthError::Missing => ApiError::new(403, "AccessDenied", "Access denied."),
        AuthError::Malformed(_) | AuthError::BadTimestamp | AuthError::NonceUsed => ApiError::new(
            400,
            "InvalidHTTPAuthHeader",
            "The Authorization header you provided is invalid.",
        ),
        AuthError::UnknownAccessKey => ApiError::new(
            403,
            "InvalidAccessKeyId",
            "The Access Key ID you provided does not exist in our records.",
        ),
        AuthError::Mismatch(_) => ApiError::new(
            400,
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided. \
             Check your Secret Access Key and signing method.",
        ),
        AuthError::Expired => ApiError::new(400, "RequestExpired", "Request has expired."),
    }
}

fn no_such_object() -> ApiError {
    ApiError::new(
        404,
        "NoSuchObject",
        "The specified object is not found or resource do not exist.",
    )
}

/// `PUT /v2/securityGroup/{id}?authorizeRule` or `?revokeRule`.
pub async fn update_group(
    State(cloud): State<FakeCloud>,
    Path(id): Path<String>,
    request: BceRequest,
) -> Response {
    let action = if request.query_param("authorizeRule").is_some() {
        "AuthorizeSecurityGroupRule"
    } else if request.query_param("revokeRule").is_some() {
        "RevokeSecurityGroupRule"
    } else {
        "UpdateSecurityGroup"
    };
    let call = request.call(action, Some(id.clone()));
    let region = call.region.clone();
    let execute = |world: &mut World| {
        if action == "UpdateSecurityGroup" {
            return Err(ApiError::new(
                400,
                "InvalidHTTPRequest",
                "Expected the authorizeRule or revokeRule query parameter.",
            ));
        }
        let key = find_group(world, &id, region).ok_or_else(no_such_object)?;
        check_version(world, &key, request.query_param("sgVersion"))?;
        let rule = WireRule::Bcc(BccRule::from_body(&request.body)?);
        let provider = Cloud::Baidu;
        let existing = group(world, &key).find_same(&rule);
        match (action, existing) {
            ("AuthorizeSecurityGroupRule", Some(_)) => Err(ApiError::new(
                409,
                "SecurityGroup.RuleDuplicated",
                "The security group rule already exists.",
            )),
            ("AuthorizeSecurityGroupRule", None) => {
                let id = world.store.new_rule_id(provider, &mut world.rng);
                group_mut(world, &key).add(id, rule);
                Ok(Outcome {
                    body: None,
                    effect: true,
                })
            }
            (_, Some(index)) => {
                group_mut(world, &key).remove_at(index);
                Ok(Outcome {
                    body: None,
                    effect: true,
                })
            }
            (_, None) => Err(ApiError::new(
                404,
                "SecurityGroup.RuleNotExist",
                "The Security group rule is not exist.",
            )),
        }
    };
    request.serve(&cloud, call, execute).await
}

/// `DELETE /v2/securityGroup/rule/{ruleId}`.
pub async fn delete_rule(
    State(cloud): State<FakeCloud>,
    Path(rule_id): Path<String>,
    request: BceRequest,
) -> Response {
    let group_id = cloud
        .world()
        .store
        .find_rule(Cloud::Baidu, &rule_id)
        .map(|k| k.id);
    let call = request.call("DeleteSecurityGroupRule", group_id);
    let execute = |world: &mut World| {
        let key = world
            .store
            .find_rule(Cloud::Baidu, &rule_id)
            .ok_or_else(no_such_object)?;
        check_version(world, &key, request.query_param("sgVersion"))?;
        let group = group_mut(world, &key);
        let index = group
            .rules
            .iter()
            .position(|r| r.id == rule_id)
            .ok_or_else(no_such_object)?;
        group.remove_at(index);
        Ok(Outcome {
            body: None,
            effect: true,
        })
    };
    request.serve(&cloud, call, execute).await
}

/// `GET /v2/securityGroup/{id}`: the group with its rules and `sgVersion`.
pub async fn get_group(
    State(cloud): State<FakeCloud>,
    Path(id): Path<String>,
    request: BceRequest,
) -> Response {
    let call = request.call("GetSecurityGroup", Some(id.clone()));
    let region = call.region.clone();
    let execute = |world: &mut World| {
        let key = find_group(world, &id, region).ok_or_else(no_such_object)?;
        let lag = world.describe_lag;
        let Value::Object(body) = group_json(&key, group(world, &key), lag) else {
            unreachable!("group_json builds an object");
        };
        Ok(Outcome {
            body: Some(body),
            effect: false,
        })
    };
    request.serve(&cloud, call, execute).await
}

/// `GET /v2/securityGroup?marker=&maxKeys=&securityGroupId=`: groups, paged by id.
pub async fn list_groups(State(cloud): State<FakeCloud>, request: BceRequest) -> Response {
    let call = request.call("ListSecurityGroups", None);
    let region = call.region.clone();
    let execute = |world: &mut World| {
        let max_keys = match request.query_param("maxKeys").filter(|v| !v.is_empty()) {
            None => 1000,
            Some(text) => text
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=1000).contains(n))
                .ok_or_else(|| bad_request("maxKeys must be 1..1000."))?,
        };
        let marker = request.query_param("marker").unwrap_or_default();
        let only: Vec<&str> = request
            .query_param("securityGroupIds")
            .or(request.query_param("securityGroupId"))
            .map(|ids| ids.split(',').filter(|id| !id.is_empty()).collect())
            .unwrap_or_default();
        let mut groups = world
            .store
            .groups()
            .filter(|(k, _)| k.provider == Cloud::Baidu)
            .filter(|(k, _)| region.as_ref().is_none_or(|r| *r == k.region))
            .filter(|(k, _)| only.is_empty() || only.contains(&k.id.as_str()))
            .filter(|(k, _)| marker.is_empty() || k.id.as_str() >= marker)
            .collect::<Vec<_>>();
        groups.sort_by(|a, b| a.0.id.cmp(&b.0.id));
        let truncated = groups.len() > max_keys;
        let next_marker = groups.get(max_keys).map(|(k, _)| k.id.clone());
        let page: Vec<Value> = groups
            .iter()
            .take(max_keys)
            .map(|(k, g)| group_json(k, g, world.describe_lag))
            .collect();
        let mut body = Map::new();
        body.insert("marker".into(), marker.into());
        body.insert("isTruncated".into(), truncated.into());
        if let Some(next) = next_marker {
            body.insert("nextMarker".into(), next.into());
        }
        body.insert("maxKeys".into(), max_keys.into());
        body.insert("securityGroups".into(), page.into());
        Ok(Outcome {
            body: Some(body),
            effect: false,
        })
    };
    request.serve(&cloud, call, execute).await
}

fn find_group(world: &mut World, id: &str, region: Option<String>) -> Option<GroupKey> {
    let auto_create = world.settings.auto_create_groups;
    let key = match region {
        Some(region) => GroupKey {
            provider: Cloud::Baidu,
            region,
            id: id.to_owned(),
        },
        None => match world.store.find_by_id(Cloud::Baidu, id) {
            Some(key) => return Some(key),
            None => GroupKey {
                provider: Cloud::Baidu,
                region: DEFAULT_REGION.to_owned(),
                id: id.to_owned(),
            },
        },
    };
    world.store.group_for_call(&key, auto_create)?;
    Some(key)
}

fn group<'a>(world: &'a World, key: &GroupKey) -> &'a Group {
    world.store.get(key).expect("the group was just found")
}

fn group_mut<'a>(world: &'a mut World, key: &GroupKey) -> &'a mut Group {
    world.store.get_mut(key).expect("the group was just found")
}

/// `sgVersion`, when given, must be the group's current version.
fn check_version(world: &World, key: &GroupKey, given: Option<&str>) -> Result<(), ApiError> {
    let Some(given) = given.filter(|v| !v.is_empty()) else {
        return Ok(());
    };
    if given.parse::<u64>().ok() == Some(group(world, key).version) {
        return Ok(());
    }
    Err(ApiError::new(
        400,
        "VersionMismatch",
        "The sgVersion is mismatched.",
    ))
}

fn group_json(key: &GroupKey, group: &Group, lag: Duration) -> Value {
    let rules: Vec<Value> = group
        .described(lag)
        .into_iter()
        .filter_map(|r| match &r.rule {
            WireRule::Bcc(rule) => Some(rule.described(&key.id, &r.id, &r.created_time)),
            WireRule::Ecs(_) => None,
        })
        .collect();
    json!({
        "id": key.id,
        "name": group.name,
        "vpcId": "",
        "desc": "",
        "createdTime": group.created_time,
        "sgVersion": group.version,
        "bindInstanceNum": 0,
        "rules": rules,
        "tags": [],
    })
}
