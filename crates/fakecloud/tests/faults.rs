//! Injected faults: throttling with retry-after, 5xx, dropped connections
//! (before or after the call is carried out), a QPS ceiling, latency and
//! held answers, each set over the admin API.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::{Fake, REGION, V3, alibaba, baidu, pairs, start};

const DESCRIBE: [(&str, &str); 2] = [("RegionId", REGION), ("SecurityGroupId", "sg-1")];

const AUTHORIZE: [(&str, &str); 6] = [
    ("RegionId", REGION),
    ("SecurityGroupId", "sg-1"),
    ("Permissions.1.IpProtocol", "TCP"),
    ("Permissions.1.PortRange", "22/22"),
    ("Permissions.1.SourceCidrIp", "10.0.0.0/8"),
    ("ClientToken", "sgo-held-or-lost"),
];

async fn authorize_faulted(fault: serde_json::Value) -> Fake {
    let fake = start().await;
    fake.create_group("alibaba", REGION, "sg-1").await;
    let mut rule =
        json!({"provider": "alibaba", "action": "AuthorizeSecurityGroup", "group": "sg-1"});
    rule.as_object_mut()
        .expect("object")
        .extend(fault.as_object().cloned().unwrap_or_default());
    fake.set("/faults", json!({"rules": [rule]})).await;
    fake
}

/// Throttling answers Alibaba's code with `x-acs-retry-after` in ms, for
/// exactly the calls the rule names, and is journaled as a fault.
#[tokio::test]
async fn throttling_names_its_retry_after() {
    let fake = start().await;
    fake.create_group("alibaba", REGION, "sg-1").await;
    fake.set(
        "/faults",
        json!({"rules": [{"provider": "alibaba", "action": "DescribeSecurityGroupAttribute",
                          "throttle": 1.0, "retryAfterMs": 1500, "times": 2}]}),
    )
    .await;
    for _ in 0..2 {
        let answer = alibaba(&fake, "DescribeSecurityGroupAttribute", &DESCRIBE).await;
        answer.assert_error(StatusCode::BAD_REQUEST, "Throttling.User");
        assert_eq!(answer.headers["x-acs-retry-after"], "1500");
    }
    let answer = alibaba(&fake, "DescribeSecurityGroupAttribute", &DESCRIBE).await;
    assert_eq!(answer.status, StatusCode::OK);
    let faults: Vec<_> = fake
        .calls("provider=alibaba")
        .await
        .iter()
        .map(|c| c["fault"].clone())
        .collect();
    assert_eq!(faults, [json!("throttle"), json!("throttle"), json!(null)]);
}

/// Baidu throttling is a 429 with Retry-After in seconds; 5xx use each envelope.
#[tokio::test]
async fn baidu_throttling_and_server_errors() {
    let fake = start().await;
    fake.create_group("baidu", "bj", "g-1").await;
    let plan = |fault: &str| json!({"rules": [{"provider": "baidu", fault: 1.0, "retryAfterMs": 1500, "times": 1}]});
    fake.set("/faults", plan("throttle")).await;
    let answer = baidu(&fake, Method::GET, "/v2/securityGroup/g-1", &[], None).await;
    answer.assert_error(StatusCode::TOO_MANY_REQUESTS, "RequestLimitExceeded");
    assert_eq!(answer.headers["retry-after"], "2");
    fake.set("/faults", plan("error503")).await;
    let answer = baidu(&fake, Method::GET, "/v2/securityGroup/g-1", &[], None).await;
    answer.assert_error(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable");
    assert!(answer.body["requestId"].is_string());
    fake.set(
        "/faults",
        json!({"rules": [{"provider": "alibaba", "error500": 1.0}]}),
    )
    .await;
    let answer = alibaba(&fake, "DescribeSecurityGroupAttribute", &DESCRIBE).await;
    answer.assert_error(StatusCode::INTERNAL_SERVER_ERROR, "InternalError");
    assert_eq!(
        baidu(&fake, Method::GET, "/v2/securityGroup/g-1", &[], None)
            .await
            .status,
        StatusCode::OK
    );
}

/// A dropped call closes the connection with no answer at all, and the
/// server keeps serving.
#[tokio::test]
async fn dropped_connections_get_no_answer() {
    let fake = start().await;
    fake.create_group("alibaba", REGION, "sg-1").await;
    fake.set("/faults", json!({"rules": [{"drop": 1.0, "times": 1}]}))
        .await;
    let url = format!("/?{}", "Action=DescribeSecurityGroupAttribute");
    let dropped = fake
        .try_send(Method::POST, &url, &pairs(&[]), Vec::new())
        .await;
    assert!(dropped.is_err(), "expected a closed connection");
    assert_eq!(
        alibaba(&fake, "DescribeSecurityGroupAttribute", &DESCRIBE)
            .await
            .status,
        StatusCode::OK
    );
    let calls = fake.calls("").await;
    assert_eq!(calls[0]["code"], "Dropped");
}

/// Beyond the QPS ceiling calls are throttled; a second later they pass.
#[tokio::test]
async fn a_qps_ceiling_throttles_the_excess() {
    let fake = start().await;
    fake.create_group("alibaba", REGION, "sg-1").await;
    fake.set(
        "/faults",
        json!({"rules": [{"provider": "alibaba", "qps": 2}]}),
    )
    .await;
    let mut codes = Vec::new();
    for _ in 0..3 {
        codes.push(
            alibaba(&fake, "DescribeSecurityGroupAttribute", &DESCRIBE)
                .await
                .code()
                .to_owned(),
        );
    }
    // Three loopback calls take milliseconds, well inside one second.
    assert_eq!(codes, ["", "", "Throttling.User"]);
}

/// Added latency delays the answer by at least that long.
#[tokio::test]
async fn latency_delays_answers() {
    let fake = start().await;
    fake.create_group("alibaba", REGION, "sg-1").await;
    fake.set(
        "/faults",
        json!({"rules": [{"action": "DescribeSecurityGroupAttribute", "latencyMs": 300}]}),
    )
    .await;
    let started = Instant::now();
    assert_eq!(
        alibaba(&fake, "DescribeSecurityGroupAttribute", &DESCRIBE)
            .await
            .status,
        StatusCode::OK
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
}

/// Bad fault plans are refused with a reason.
#[tokio::test]
async fn impossible_fault_plans_are_refused() {
    let fake = start().await;
    let answer = fake
        .admin(
            Method::PUT,
            "/faults",
            Some(json!({"rules": [{"throttle": 2.0}]})),
        )
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    let answer = fake
        .admin(
            Method::PUT,
            "/faults",
            Some(json!({"rules": [{"thrtotle": 0.5}]})),
        )
        .await;
    assert_eq!(
        answer.status,
        StatusCode::BAD_REQUEST,
        "unknown fields are typos"
    );
}

/// A held answer comes only after the call was carried out and journaled:
/// the rule and the call are visible while the client still waits.
#[tokio::test]
async fn a_held_answer_follows_a_visible_effect() {
    let hold = Duration::from_millis(1500);
    let fake = authorize_faulted(json!({"holdResponseMs": 1500})).await;
    let started = Instant::now();
    let (answer, seen) = tokio::join!(
        alibaba(&fake, "AuthorizeSecurityGroup", &AUTHORIZE),
        async {
            loop {
                let effects = fake.calls("action=AuthorizeSecurityGroup").await;
                if effects.iter().any(|c| c["effect"] == true)
                    && fake.rules("alibaba", "sg-1").await.len() == 1
                {
                    return started.elapsed();
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    );
    let answered = started.elapsed();
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert!(answered >= hold, "answered after {answered:?}");
    assert!(
        seen < answered,
        "effect seen at {seen:?}, answer at {answered:?}"
    );
}

/// `dropAfter` carries the call out and closes the connection; the retry
/// with the same ClientToken is replayed, so the token has one effect.
#[tokio::test]
async fn a_lost_answer_is_replayed_to_the_retry() {
    let fake = authorize_faulted(json!({"dropAfter": 1.0, "times": 1})).await;
    let call = V3::new(&fake, "AuthorizeSecurityGroup", &AUTHORIZE);
    assert!(
        call.try_send(&fake).await.is_err(),
        "expected a closed connection"
    );
    assert_eq!(fake.rules("alibaba", "sg-1").await.len(), 1, "carried out");
    let retry = V3::new(&fake, "AuthorizeSecurityGroup", &AUTHORIZE)
        .send(&fake)
        .await;
    assert_eq!(retry.status, StatusCode::OK, "{}", retry.body);
    let calls = fake.calls("action=AuthorizeSecurityGroup").await;
    let seen: Vec<_> = calls
        .iter()
        .map(|c| {
            (
                c["fault"].clone(),
                c["effect"].clone(),
                c["replayed"].clone(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (json!("dropAfter"), json!(true), json!(false)),
            (json!(null), json!(false), json!(true)),
        ]
    );
    let tokens = fake.admin(Method::GET, "/tokens", None).await.body;
    assert_eq!(
        (tokens[0]["calls"].as_u64(), tokens[0]["effects"].as_u64()),
        (Some(2), Some(1))
    );
}

/// `describeLagMs`: describe shows the group as it was that long ago, a new
/// rule missing and a revoked one still there, then catches up.
#[tokio::test]
async fn describe_lags_behind_writes() {
    let fake = start().await;
    fake.create_group("alibaba", REGION, "sg-1").await;
    fake.set(
        "/faults",
        json!({"rules": [{"provider": "alibaba", "describeLagMs": 400}]}),
    )
    .await;
    let count = |fake| async move {
        let answer = alibaba(fake, "DescribeSecurityGroupAttribute", &DESCRIBE).await;
        answer.body["Permissions"]["Permission"]
            .as_array()
            .map_or(0, Vec::len)
    };
    assert_eq!(
        alibaba(&fake, "AuthorizeSecurityGroup", &AUTHORIZE)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(count(&fake).await, 0, "not visible yet");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(count(&fake).await, 1, "visible after the lag");
    let revoke: Vec<_> = AUTHORIZE[..5].to_vec();
    assert_eq!(
        alibaba(&fake, "RevokeSecurityGroup", &revoke).await.status,
        StatusCode::OK
    );
    assert_eq!(count(&fake).await, 1, "still visible");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(count(&fake).await, 0);
}

/// A call whose ClientToken is still in flight is refused with
/// `LastTokenProcessing`; once answered, the same token replays.
#[tokio::test]
async fn a_token_in_flight_is_last_token_processing() {
    let fake = authorize_faulted(json!({"holdResponseMs": 800, "times": 1})).await;
    let (first, second) = tokio::join!(
        alibaba(&fake, "AuthorizeSecurityGroup", &AUTHORIZE),
        async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            alibaba(&fake, "AuthorizeSecurityGroup", &AUTHORIZE).await
        }
    );
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    second.assert_error(StatusCode::FORBIDDEN, "LastTokenProcessing");
    fake.set("/faults", json!({"rules": []})).await;
    let again = alibaba(&fake, "AuthorizeSecurityGroup", &AUTHORIZE).await;
    assert_eq!(again.body["RequestId"], first.body["RequestId"], "replayed");
}

/// A client that gives up on a held answer does not end the call: as on a
/// server that keeps working, its token stays in flight until the hold ends.
#[tokio::test]
async fn a_token_stays_in_flight_after_its_client_gave_up() {
    let fake = authorize_faulted(json!({"holdResponseMs": 1500})).await;
    let first = alibaba(&fake, "AuthorizeSecurityGroup", &AUTHORIZE);
    let gave_up = tokio::time::timeout(Duration::from_millis(300), first).await;
    assert!(gave_up.is_err(), "the answer was held");
    tokio::time::sleep(Duration::from_millis(100)).await;
    alibaba(&fake, "AuthorizeSecurityGroup", &AUTHORIZE)
        .await
        .assert_error(StatusCode::FORBIDDEN, "LastTokenProcessing");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    fake.set("/faults", json!({"rules": []})).await;
    let again = alibaba(&fake, "AuthorizeSecurityGroup", &AUTHORIZE).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
}

/// `operationConflict` and `forbidden`; a forbidden group leaves the others alone.
#[tokio::test]
async fn conflicts_and_permission_denials_on_one_group() {
    let fake = start().await;
    fake.create_group("alibaba", REGION, "sg-1").await;
    fake.create_group("alibaba", REGION, "sg-2").await;
    fake.create_group("baidu", "bj", "g-1").await;
    fake.set("/faults", json!({"rules": [
        {"provider": "alibaba", "group": "sg-1", "forbidden": 1},
        {"provider": "alibaba", "group": "sg-2", "action": "AuthorizeSecurityGroup", "operationConflict": 1},
        {"provider": "baidu", "forbidden": 1},
    ]})).await;
    alibaba(&fake, "DescribeSecurityGroupAttribute", &DESCRIBE)
        .await
        .assert_error(StatusCode::FORBIDDEN, "Forbidden.RAM");
    let other = [("RegionId", REGION), ("SecurityGroupId", "sg-2")];
    let answer = alibaba(&fake, "DescribeSecurityGroupAttribute", &other).await;
    assert_eq!(answer.status, StatusCode::OK, "another group is allowed");
    let mut authorize = AUTHORIZE.to_vec();
    authorize[1] = ("SecurityGroupId", "sg-2");
    alibaba(&fake, "AuthorizeSecurityGroup", &authorize)
        .await
        .assert_error(StatusCode::CONFLICT, "OperationConflict");
    baidu(&fake, Method::GET, "/v2/securityGroup/g-1", &[], None)
        .await
        .assert_error(StatusCode::FORBIDDEN, "AccessDenied");
}

/// A throttle can take the status and code a deployment is known to use.
#[tokio::test]
async fn a_throttle_s_status_and_code_are_configurable() {
    let fake = start().await;
    fake.create_group("baidu", "bj", "g-1").await;
    fake.set("/faults", json!({"rules": [
        {"provider": "baidu", "throttle": 1, "throttleStatus": 400, "throttleCode": "RequestRateExceeded"},
    ]})).await;
    baidu(&fake, Method::GET, "/v2/securityGroup/g-1", &[], None)
        .await
        .assert_error(StatusCode::BAD_REQUEST, "RequestRateExceeded");
}
