//! The admin API: out-of-band rules for drift tests, reset, keys,
//! auto-created groups, and the state file.

use reqwest::{Method, StatusCode};
use serde_json::json;

use secgroup_fakecloud::client::Admin;

use crate::support::{REGION, alibaba, start, start_with};

const DESCRIBE: [(&str, &str); 2] = [("RegionId", REGION), ("SecurityGroupId", "sg-1")];

fn https_rule() -> serde_json::Value {
    json!({"direction": "Ingress", "protocol": "TCP", "ports": {"from": 443, "to": 443},
           "peer": {"cidr": "0.0.0.0/0"}, "description": "https"})
}

/// A rule added out of band is what describe shows; removing it out of band
/// makes it disappear, as drift tests need.
#[tokio::test]
async fn out_of_band_rules_show_in_describe() {
    let fake = start().await;
    let group = json!({"provider": "alibaba", "region": REGION, "id": "sg-1"});
    let created = fake.admin(Method::POST, "/groups", Some(group)).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let added = fake
        .admin(Method::POST, "/rules", Some(json!({"provider": "alibaba", "region": REGION, "group": "sg-1", "rule": https_rule()})))
        .await;
    assert_eq!(added.status, StatusCode::CREATED, "{}", added.body);
    let id = added.body["ruleId"].as_str().expect("id").to_owned();
    let described = alibaba(&fake, "DescribeSecurityGroupAttribute", &DESCRIBE).await;
    assert_eq!(
        described.body["Permissions"]["Permission"][0]["SecurityGroupRuleId"],
        id.as_str()
    );
    assert_eq!(
        described.body["Permissions"]["Permission"][0]["PortRange"],
        "443/443"
    );

    let listed = fake.rules("alibaba", "sg-1").await;
    assert_eq!(listed[0]["rule"]["description"], "https");
    let path = format!("/rules/alibaba/{REGION}/sg-1/{id}");
    assert_eq!(
        fake.admin(Method::DELETE, &path, None).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        fake.admin(Method::DELETE, &path, None).await.status,
        StatusCode::NOT_FOUND
    );
    assert!(fake.rules("alibaba", "sg-1").await.is_empty());

    let bad = fake
        .admin(Method::POST, "/rules", Some(json!({"provider": "alibaba", "region": REGION, "group": "sg-1",
                                                    "rule": {"direction": "Ingress", "protocol": "TCP", "peer": {}}})))
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

/// Groups: duplicates conflict, deletion makes calls NotFound, reset forgets all.
#[tokio::test]
async fn groups_can_be_created_deleted_and_reset() {
    let fake = start().await;
    fake.create_group("alibaba", REGION, "sg-1").await;
    let again = fake
        .admin(
            Method::POST,
            "/groups",
            Some(json!({"provider": "alibaba", "region": REGION, "id": "sg-1"})),
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(
        alibaba(&fake, "DescribeSecurityGroupAttribute", &DESCRIBE)
            .await
            .status,
        StatusCode::OK
    );
    let path = format!("/groups/alibaba/{REGION}/sg-1");
    assert_eq!(
        fake.admin(Method::DELETE, &path, None).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        alibaba(&fake, "DescribeSecurityGroupAttribute", &DESCRIBE)
            .await
            .code(),
        "InvalidSecurityGroupId.NotFound"
    );

    fake.create_group("baidu", "bj", "g-1").await;
    assert_eq!(
        fake.admin(Method::POST, "/reset", None).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        fake.admin(Method::GET, "/groups", None).await.body,
        json!([])
    );
    assert!(fake.calls("").await.is_empty());
}

/// With auto-creation on, a call naming an unknown group creates it.
#[tokio::test]
async fn groups_can_spring_into_being_on_first_use() {
    let fake = start().await;
    fake.set("/settings", json!({"autoCreateGroups": true}))
        .await;
    let answer = alibaba(&fake, "DescribeSecurityGroupAttribute", &DESCRIBE).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let groups = fake.admin(Method::GET, "/groups", None).await.body;
    assert_eq!(groups[0]["id"], "sg-1");
}

/// Keys added at run time are accepted; unknown settings are refused.
#[tokio::test]
async fn keys_and_settings_change_at_run_time() {
    let fake = start().await;
    let added = fake
        .admin(
            Method::POST,
            "/keys",
            Some(json!({"accessKeyId": "ak2", "accessKeySecret": "sk2"})),
        )
        .await;
    assert_eq!(added.status, StatusCode::NO_CONTENT);
    let typo = fake
        .admin(
            Method::PUT,
            "/settings",
            Some(json!({"autoCreateGroup": true})),
        )
        .await;
    assert_eq!(typo.status, StatusCode::BAD_REQUEST);
}

/// Groups, rules and tokens written to the state file come back on restart.
#[tokio::test]
async fn the_state_file_survives_a_restart() {
    let dir = tempfile::Builder::new()
        .prefix("fakecloud-state-")
        .tempdir()
        .expect("temp dir");
    let file = dir.path().join("state.json");
    let fake = start_with(Some(file.clone())).await;
    fake.create_group("alibaba", REGION, "sg-1").await;
    let params = [
        ("RegionId", REGION),
        ("SecurityGroupId", "sg-1"),
        ("ClientToken", "persisted"),
        ("Permissions.1.IpProtocol", "ALL"),
        ("Permissions.1.PortRange", "-1/-1"),
        ("Permissions.1.SourceGroupId", "sg-1"),
    ];
    let first = alibaba(&fake, "AuthorizeSecurityGroup", &params).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    drop(fake);

    let restarted = start_with(Some(file)).await;
    let rules = restarted.rules("alibaba", "sg-1").await;
    assert_eq!(rules[0]["rule"]["peer"]["securityGroupId"], "sg-1");
    let replay = alibaba(&restarted, "AuthorizeSecurityGroup", &params).await;
    assert_eq!(
        replay.body["RequestId"], first.body["RequestId"],
        "tokens persist too"
    );
}

/// One `Admin` serves tests that run side by side, each on a runtime of its
/// own that ends with the test: no request goes out on a connection whose
/// runtime is ending.
#[test]
fn one_admin_serves_runtimes_that_come_and_go_side_by_side() {
    let server = tokio::runtime::Runtime::new().expect("runtime");
    let fake = server.block_on(start());
    let admin = Admin::new(&format!("http://{}", fake.host));
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                for _ in 0..100 {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("runtime");
                    let rules = runtime.block_on(admin.rules(&[]));
                    assert!(rules.is_empty());
                }
            });
        }
    });
    drop(fake);
}
