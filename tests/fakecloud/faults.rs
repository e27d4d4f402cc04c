//! Injected faults: throttling with retry-after, 5xx, dropped connections,
//! a QPS ceiling and latency, each set over the admin API.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::{REGION, alibaba, baidu, pairs, start};

const DESCRIBE: [(&str, &str); 2] = [("RegionId", REGION), ("SecurityGroupId", "sg-1")];

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
