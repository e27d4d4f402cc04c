//! Baidu BCC: bce-auth-v1, six-tuple identity with the remark, 409/404
//! semantics, delete by id, clientToken replay.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{Answer, Fake, baidu, baidu_at, minutes_ago, start};

const GROUP: &str = "g-nky7qeom";
const PATH: &str = "/v2/securityGroup/g-nky7qeom";

fn ssh(remark: &str) -> Value {
    json!({"rule": {"remark": remark, "direction": "ingress", "ethertype": "IPv4",
                    "portRange": "22", "protocol": "tcp", "sourceIp": "10.0.0.0/8",
                    "sourceGroupId": null, "destGroupId": null, "destIp": null}})
}

async fn with_group() -> Fake {
    let fake = start().await;
    fake.create_group("baidu", "bj", GROUP).await;
    fake
}

/// A PUT on the group (`authorizeRule`, `revokeRule`) with `rule` as the body.
async fn put(fake: &Fake, query: &[(&str, &str)], rule: &Value) -> Answer {
    baidu(fake, Method::PUT, PATH, query, Some(rule)).await
}

async fn delete_by_id(fake: &Fake, id: &str) -> Answer {
    let path = format!("/v2/securityGroup/rule/{id}");
    baidu(fake, Method::DELETE, &path, &[], None).await
}

async fn rules(fake: &Fake) -> Vec<Value> {
    let answer = baidu(fake, Method::GET, PATH, &[], None).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    answer.body["rules"].as_array().cloned().unwrap_or_default()
}

/// Authorize (then 409 for the same six-tuple), get with the rule id, revoke
/// only with the exact remark, then delete by id is NoSuchObject.
#[tokio::test]
async fn authorize_get_revoke_and_delete_by_id() {
    let fake = with_group().await;
    let created = put(
        &fake,
        &[("authorizeRule", ""), ("clientToken", "t1")],
        &ssh("web"),
    )
    .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.body);
    assert_eq!(created.body, Value::Null, "no body on success");
    assert!(created.headers.contains_key("x-bce-request-id"));
    let duplicate = put(
        &fake,
        &[("authorizeRule", ""), ("clientToken", "t2")],
        &ssh("web"),
    )
    .await;
    assert_eq!(duplicate.status, StatusCode::CONFLICT);
    for key in ["requestId", "code", "message"] {
        assert!(
            duplicate.body[key].is_string(),
            "error envelope lacks {key}"
        );
    }

    let listed = rules(&fake).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["portRange"], "22");
    assert_eq!(listed[0]["sourceIp"], "10.0.0.0/8");
    let id = listed[0]["securityGroupRuleId"]
        .as_str()
        .expect("id")
        .to_owned();
    assert!(id.starts_with("r-"));

    let other_remark = put(
        &fake,
        &[("revokeRule", ""), ("clientToken", "t3")],
        &ssh("db"),
    )
    .await;
    other_remark.assert_error(StatusCode::NOT_FOUND, "SecurityGroup.RuleNotExist");
    let deleted = delete_by_id(&fake, &id).await;
    assert_eq!(deleted.status, StatusCode::OK, "{}", deleted.body);
    assert!(rules(&fake).await.is_empty());
    let again = delete_by_id(&fake, &id).await;
    again.assert_error(StatusCode::NOT_FOUND, "NoSuchObject");
}

/// Revoke by the six-tuple, sgVersion locking, and a missing group.
#[tokio::test]
async fn revoke_by_tuple_checks_the_version_and_the_group() {
    let fake = with_group().await;
    put(&fake, &[("authorizeRule", "")], &ssh("web")).await;
    let version = baidu(&fake, Method::GET, PATH, &[], None).await.body["sgVersion"]
        .as_u64()
        .expect("version");
    let stale = (version - 1).to_string();
    let answer = put(
        &fake,
        &[("revokeRule", ""), ("sgVersion", &stale)],
        &ssh("web"),
    )
    .await;
    answer.assert_error(StatusCode::BAD_REQUEST, "VersionMismatch");
    let current = version.to_string();
    let answer = put(
        &fake,
        &[("revokeRule", ""), ("sgVersion", &current)],
        &ssh("web"),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert!(rules(&fake).await.is_empty());

    let missing = baidu(
        &fake,
        Method::PUT,
        "/v2/securityGroup/g-missing",
        &[("revokeRule", "")],
        Some(&ssh("web")),
    )
    .await;
    missing.assert_error(StatusCode::NOT_FOUND, "NoSuchObject");
}

/// The same clientToken replays; with another body it is a 403 mismatch.
#[tokio::test]
async fn client_tokens_replay_and_refuse_changed_requests() {
    let fake = with_group().await;
    let token = [("authorizeRule", ""), ("clientToken", "sgo-baidu-1")];
    assert_eq!(put(&fake, &token, &ssh("web")).await.status, StatusCode::OK);
    let replay = put(&fake, &token, &ssh("web")).await;
    assert_eq!(replay.status, StatusCode::OK, "a replay, not a 409");
    let mismatch = put(&fake, &token, &ssh("api")).await;
    mismatch.assert_error(StatusCode::FORBIDDEN, "IdempotentParameterMismatch");
    assert_eq!(rules(&fake).await.len(), 1);
    let calls = fake
        .calls("provider=baidu&action=AuthorizeSecurityGroupRule")
        .await;
    let effects: Vec<bool> = calls.iter().map(|c| c["effect"] == true).collect();
    assert_eq!(effects, [true, false, false]);
}

/// Tampered, expired and missing signatures get Baidu's codes.
#[tokio::test]
async fn bad_signatures_are_refused() {
    let fake = with_group().await;
    let expired = baidu_at(&fake, Method::GET, PATH, &[], None, &minutes_ago(31)).await;
    expired.assert_error(StatusCode::BAD_REQUEST, "RequestExpired");

    let unsigned = fake.send(Method::GET, PATH, &[], Vec::new()).await;
    unsigned.assert_error(StatusCode::FORBIDDEN, "AccessDenied");

    // Sign one group's path, send to another.
    let signed = baidu(&fake, Method::GET, PATH, &[], None).await;
    assert_eq!(signed.status, StatusCode::OK);
    let answer = tampered_get(&fake).await;
    answer.assert_error(StatusCode::BAD_REQUEST, "SignatureDoesNotMatch");
}

async fn tampered_get(fake: &Fake) -> crate::support::Answer {
    use secgroup_sign::{SignedRequest, bce};
    let timestamp = crate::support::now();
    let headers = crate::support::pairs(&[("host", &fake.host), ("x-bce-date", &timestamp)]);
    let context = bce::AuthContext {
        access_key_id: crate::support::AK,
        timestamp: &timestamp,
        expiration_seconds: 1800,
    };
    let request = SignedRequest {
        method: "GET",
        path: "/v2/securityGroup/g-other",
        query: &[],
        headers: &headers,
        signed_headers: &[],
    };
    let mut headers = headers.clone();
    headers.push((
        "authorization".into(),
        bce::authorization(crate::support::SECRET, &context, &request),
    ));
    fake.send(Method::GET, PATH, &headers, Vec::new()).await
}

/// Rules are kept as sent and matched string for string: a revoke that
/// spells the address, the remark or the protocol otherwise matches nothing.
#[tokio::test]
async fn rules_are_kept_and_matched_as_sent() {
    let fake = with_group().await;
    let rule = |source: &str, remark: &str, protocol: &str| {
        json!({"rule": {"remark": remark, "direction": "ingress", "ethertype": "IPv4",
                        "portRange": "22", "protocol": protocol, "sourceIp": source}})
    };
    let sent = rule("10.0.0.1", " web ", "tcp");
    let answer = put(&fake, &[("authorizeRule", "")], &sent).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let listed = fake.rules("baidu", GROUP).await;
    assert_eq!(listed[0]["wire"]["bcc"]["sourceIp"], "10.0.0.1");
    assert_eq!(listed[0]["wire"]["bcc"]["remark"], " web ");
    assert_eq!(rules(&fake).await[0]["sourceIp"], "10.0.0.1");

    for other in [
        rule("10.0.0.1/32", " web ", "tcp"),
        rule("10.0.0.1", "web", "tcp"),
    ] {
        let answer = put(&fake, &[("revokeRule", "")], &other).await;
        answer.assert_error(StatusCode::NOT_FOUND, "SecurityGroup.RuleNotExist");
    }
    let upper = rule("10.0.0.1", " web ", "TCP");
    let answer = put(&fake, &[("revokeRule", "")], &upper).await;
    answer.assert_error(StatusCode::BAD_REQUEST, "BadRequest");
    let answer = put(&fake, &[("revokeRule", "")], &sent).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert!(rules(&fake).await.is_empty());
}
