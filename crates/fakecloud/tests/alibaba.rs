//! Alibaba ECS RPC: V3 and V2 signatures, rule semantics, ClientToken replay.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{
    Fake, REGION, V3, alibaba, minutes_ago, now, rpc_params, send_rpc_query, start, with_signature,
};

const GROUP: &str = "sg-web";

const SSH: [(&str, &str); 7] = [
    ("RegionId", REGION),
    ("SecurityGroupId", GROUP),
    ("Permissions.1.IpProtocol", "TCP"),
    ("Permissions.1.PortRange", "22/22"),
    ("Permissions.1.SourceCidrIp", "10.0.0.0/8"),
    ("Permissions.1.Policy", "accept"),
    ("Permissions.1.Description", "ssh from the office"),
];

async fn with_group() -> Fake {
    let fake = start().await;
    fake.create_group("alibaba", REGION, GROUP).await;
    fake
}

fn with(
    base: &[(&'static str, &'static str)],
    extra: &[(&'static str, &'static str)],
) -> Vec<(&'static str, &'static str)> {
    base.iter().chain(extra).copied().collect()
}

async fn described(fake: &Fake) -> Vec<Value> {
    let answer = alibaba(
        fake,
        "DescribeSecurityGroupAttribute",
        &[("RegionId", REGION), ("SecurityGroupId", GROUP)],
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    answer.body["Permissions"]["Permission"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The core cycle: authorize, a duplicate authorize is a 200 no-op, describe
/// shows the rule id, revoke by id removes it, and a second revoke by id is
/// the documented NotFound (or InvalidParam, when switched).
#[tokio::test]
async fn authorize_describe_and_revoke_by_id() {
    let fake = with_group().await;
    let first = alibaba(&fake, "AuthorizeSecurityGroup", &SSH).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    assert!(first.body["RequestId"].is_string());
    let again = alibaba(&fake, "AuthorizeSecurityGroup", &SSH).await;
    assert_eq!(again.status, StatusCode::OK);

    let rules = described(&fake).await;
    assert_eq!(rules.len(), 1, "a duplicate authorize creates nothing");
    let rule = &rules[0];
    assert_eq!(rule["IpProtocol"], "TCP");
    assert_eq!(rule["PortRange"], "22/22");
    assert_eq!(rule["SourceCidrIp"], "10.0.0.0/8");
    assert_eq!(rule["Policy"], "Accept");
    assert_eq!(rule["Priority"], "1");
    assert_eq!(rule["Direction"], "ingress");
    assert_eq!(rule["Description"], "ssh from the office");
    assert_eq!(rule["DestCidrIp"], "", "unused fields are empty strings");
    let id = rule["SecurityGroupRuleId"]
        .as_str()
        .expect("an id")
        .to_owned();
    assert!(id.starts_with("sgr-"), "{id}");

    let by_id = [
        ("RegionId", REGION),
        ("SecurityGroupId", GROUP),
        ("SecurityGroupRuleId.1", id.as_str()),
    ];
    let revoked = alibaba(&fake, "RevokeSecurityGroup", &by_id).await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.body);
    assert!(described(&fake).await.is_empty());

    let gone = alibaba(&fake, "RevokeSecurityGroup", &by_id).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert_eq!(gone.code(), "InvalidSecurityGroupRuleId.NotFound");
    for key in ["RequestId", "HostId", "Code", "Message"] {
        assert!(
            gone.body[key].is_string(),
            "error envelope lacks {key}: {}",
            gone.body
        );
    }
    fake.set(
        "/settings",
        json!({"alibabaMissingRuleById": "InvalidParam.SecurityGroupRuleId"}),
    )
    .await;
    let gone = alibaba(&fake, "RevokeSecurityGroup", &by_id).await;
    gone.assert_error(StatusCode::BAD_REQUEST, "InvalidParam.SecurityGroupRuleId");
}

/// Revoke by attributes matches on Alibaba's identity (not priority or
/// description); a missing rule is RuleNotExist, or 200 when switched.
#[tokio::test]
async fn revoke_by_attributes_follows_alibaba_identity() {
    let fake = with_group().await;
    alibaba(&fake, "AuthorizeSecurityGroup", &SSH).await;
    let other_description = [
        ("RegionId", REGION),
        ("SecurityGroupId", GROUP),
        ("Permissions.1.IpProtocol", "tcp"),
        ("Permissions.1.PortRange", "22/22"),
        ("Permissions.1.SourceCidrIp", "10.0.0.0/8"),
        ("Permissions.1.Priority", "9"),
        ("Permissions.1.Description", "something else"),
    ];
    let revoked = alibaba(&fake, "RevokeSecurityGroup", &other_description).await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.body);
    assert!(described(&fake).await.is_empty());

    let missing = alibaba(&fake, "RevokeSecurityGroup", &SSH).await;
    assert_eq!(
        (missing.status, missing.code()),
        (
            StatusCode::BAD_REQUEST,
            "InvalidSecurityGroupRule.RuleNotExist"
        )
    );
    fake.set(
        "/settings",
        json!({"alibabaMissingRuleByAttributes": "Success"}),
    )
    .await;
    let missing = alibaba(&fake, "RevokeSecurityGroup", &SSH).await;
    assert_eq!(missing.status, StatusCode::OK);
    let calls = fake.calls("action=RevokeSecurityGroup").await;
    let effects: Vec<bool> = calls.iter().map(|c| c["effect"] == true).collect();
    assert_eq!(effects, [true, false, false]);
}

/// A missing group is InvalidSecurityGroupId.NotFound for every action.
#[tokio::test]
async fn a_missing_group_is_not_found() {
    let fake = start().await;
    for action in [
        "AuthorizeSecurityGroup",
        "RevokeSecurityGroup",
        "DescribeSecurityGroupAttribute",
    ] {
        let answer = alibaba(&fake, action, &SSH).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{action}");
        assert_eq!(answer.code(), "InvalidSecurityGroupId.NotFound");
    }
}

/// Same token and parameters: the first answer again, nothing done twice.
/// Same token, other parameters: IdempotentParameterMismatch.
#[tokio::test]
async fn client_tokens_replay_and_refuse_changed_parameters() {
    let fake = with_group().await;
    let token = [("ClientToken", "sgo-0123456789abcdef")];
    let first = alibaba(&fake, "AuthorizeSecurityGroup", &with(&SSH, &token)).await;
    assert_eq!(first.status, StatusCode::OK);
    let rule_id = described(&fake).await[0]["SecurityGroupRuleId"]
        .as_str()
        .expect("id")
        .to_owned();
    // Someone deletes the rule; a retry with the old token must not bring it back.
    let path = format!("/rules/alibaba/{REGION}/{GROUP}/{rule_id}");
    assert_eq!(
        fake.admin(Method::DELETE, &path, None).await.status,
        StatusCode::NO_CONTENT
    );

    let replay = alibaba(&fake, "AuthorizeSecurityGroup", &with(&SSH, &token)).await;
    assert_eq!(replay.status, StatusCode::OK);
    assert_eq!(
        replay.body["RequestId"], first.body["RequestId"],
        "the first result again"
    );
    assert!(described(&fake).await.is_empty(), "a replay has no effect");

    let mut changed = with(&SSH, &token);
    changed.retain(|(n, _)| *n != "Permissions.1.PortRange");
    changed.push(("Permissions.1.PortRange", "23/23"));
    let mismatch = alibaba(&fake, "AuthorizeSecurityGroup", &changed).await;
    mismatch.assert_error(StatusCode::BAD_REQUEST, "IdempotentParameterMismatch");

    let tokens = fake.admin(Method::GET, "/tokens", None).await.body;
    assert_eq!(tokens[0]["clientToken"], "sgo-0123456789abcdef");
    assert_eq!(
        (tokens[0]["calls"].as_u64(), tokens[0]["effects"].as_u64()),
        (Some(2), Some(1))
    );
    let replayed: Vec<bool> = fake
        .calls("action=AuthorizeSecurityGroup")
        .await
        .iter()
        .map(|c| c["replayed"] == true)
        .collect();
    assert_eq!(replayed, [false, true, false]);
}

/// A request changed after signing is refused and changes nothing.
#[tokio::test]
async fn a_request_altered_after_signing_is_refused() {
    let fake = with_group().await;
    let mut request = V3::new(&fake, "AuthorizeSecurityGroup", &SSH);
    let authorization = request.authorization();
    request
        .query
        .retain(|(n, _)| n != "Permissions.1.SourceCidrIp");
    request
        .query
        .push(("Permissions.1.SourceCidrIp".into(), "0.0.0.0/0".into()));
    let answer = request.send_signed_as(&fake, &authorization).await;
    answer.assert_error(StatusCode::BAD_REQUEST, "SignatureDoesNotMatch");
    assert!(fake.rules("alibaba", GROUP).await.is_empty());

    let mut v2 = with_signature("POST", rpc_params("AuthorizeSecurityGroup", &now(), &SSH));
    v2.iter_mut()
        .filter(|(n, _)| n == "Permissions.1.PortRange")
        .for_each(|(_, v)| *v = "1/65535".into());
    let answer = send_rpc_query(&fake, "/", &v2, &[]).await;
    answer.assert_error(StatusCode::BAD_REQUEST, "SignatureDoesNotMatch");
    assert!(fake.rules("alibaba", GROUP).await.is_empty());
}

/// The signed-header list must cover host, content-type and every x-acs-*
/// header, and the body must hash to x-acs-content-sha256.
#[tokio::test]
async fn v3_requires_the_mandatory_headers_signed_and_the_body_hash() {
    let fake = with_group().await;
    let mut request = V3::new(&fake, "DescribeSecurityGroupAttribute", &SSH[..2]);
    request.signed_headers.retain(|h| h != "x-acs-action");
    let answer = request.send(&fake).await;
    answer.assert_error(StatusCode::BAD_REQUEST, "IncompleteSignature");

    // Headers beyond the mandatory ones (the SDK signs accept, user-agent) are honoured.
    let mut request = V3::new(&fake, "DescribeSecurityGroupAttribute", &SSH[..2]);
    request.set_header("user-agent", "conformance/1.0");
    request.signed_headers.push("user-agent".into());
    assert_eq!(request.send(&fake).await.status, StatusCode::OK);

    let mut request = V3::new(&fake, "DescribeSecurityGroupAttribute", &SSH[..2]);
    request.set_header("x-acs-content-sha256", &"0".repeat(64));
    let answer = request.send(&fake).await;
    assert_eq!(
        answer.code(),
        "SignatureDoesNotMatch",
        "body hash must match"
    );
}

/// Timestamps more than 15 minutes off, reused nonces and unknown keys are refused.
#[tokio::test]
async fn stale_replayed_and_unknown_credentials_are_refused() {
    let fake = with_group().await;
    let describe = &SSH[..2];
    let mut stale = V3::new(&fake, "DescribeSecurityGroupAttribute", describe);
    stale.set_header("x-acs-date", &minutes_ago(16));
    let answer = stale.send(&fake).await;
    answer.assert_error(StatusCode::BAD_REQUEST, "InvalidTimeStamp.Expired");
    let v2 = with_signature(
        "POST",
        rpc_params("DescribeSecurityGroupAttribute", &minutes_ago(16), describe),
    );
    assert_eq!(
        send_rpc_query(&fake, "/", &v2, &[]).await.code(),
        "InvalidTimeStamp.Expired"
    );
    let v2 = with_signature(
        "POST",
        rpc_params("DescribeSecurityGroupAttribute", &minutes_ago(14), describe),
    );
    assert_eq!(
        send_rpc_query(&fake, "/", &v2, &[]).await.status,
        StatusCode::OK
    );

    let request = V3::new(&fake, "DescribeSecurityGroupAttribute", describe);
    assert_eq!(request.send(&fake).await.status, StatusCode::OK);
    let answer = request.send(&fake).await;
    answer.assert_error(StatusCode::BAD_REQUEST, "SignatureNonceUsed");

    let mut stranger = V3::new(&fake, "DescribeSecurityGroupAttribute", describe);
    stranger.access_key_id = "nobody".into();
    let answer = stranger.send(&fake).await;
    answer.assert_error(StatusCode::NOT_FOUND, "InvalidAccessKeyId.NotFound");
    assert_eq!(
        fake.calls("").await.last().expect("journaled")["accessKeyId"],
        "nobody"
    );
}

/// V2 RPC with the legacy flat parameters, and Describe paging with NextToken.
#[tokio::test]
async fn v2_flat_parameters_and_describe_paging() {
    let fake = with_group().await;
    for port in 1000..1025 {
        let range = format!("{port}/{port}");
        let params = [
            ("RegionId", REGION),
            ("SecurityGroupId", GROUP),
            ("IpProtocol", "udp"),
            ("PortRange", range.as_str()),
            ("DestCidrIp", "192.168.0.0/16"),
        ];
        let signed = with_signature(
            "POST",
            rpc_params("AuthorizeSecurityGroupEgress", &now(), &params),
        );
        let answer = send_rpc_query(&fake, "/", &signed, &[]).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    }
    let mut ids = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let mut params = vec![
            ("RegionId", REGION),
            ("SecurityGroupId", GROUP),
            ("Direction", "egress"),
            ("MaxResults", "10"),
        ];
        if let Some(token) = &next {
            params.push(("NextToken", token));
        }
        let answer = alibaba(&fake, "DescribeSecurityGroupAttribute", &params).await;
        let page = answer.body["Permissions"]["Permission"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(page.len() <= 10);
        ids.extend(
            page.iter()
                .map(|p| p["SecurityGroupRuleId"].as_str().unwrap_or("").to_owned()),
        );
        match answer.body["NextToken"].as_str() {
            Some(token) => next = Some(token.to_owned()),
            None => break,
        }
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 25);
    let ingress = alibaba(
        &fake,
        "DescribeSecurityGroupAttribute",
        &[
            ("RegionId", REGION),
            ("SecurityGroupId", GROUP),
            ("Direction", "ingress"),
        ],
    )
    .await;
    assert_eq!(ingress.body["Permissions"]["Permission"], json!([]));
}

async fn create_group(fake: &Fake, id: &str, extra: Value) {
    let mut body = json!({"provider": "alibaba", "region": REGION, "id": id});
    body.as_object_mut()
        .expect("object")
        .extend(extra.as_object().cloned().unwrap_or_default());
    let answer = fake.admin(Method::POST, "/groups", Some(body)).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
}

/// A quintuple rule (with the group side's `DestCidrIp`) is another rule
/// than the plain one: a revoke must name the other side's CIDR too.
#[tokio::test]
async fn the_other_side_s_cidr_is_part_of_a_rule_s_identity() {
    let fake = with_group().await;
    let quintuple = with(&SSH, &[("Permissions.1.DestCidrIp", "192.168.1.0/24")]);
    let answer = alibaba(&fake, "AuthorizeSecurityGroup", &quintuple).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(described(&fake).await[0]["DestCidrIp"], "192.168.1.0/24");
    let plain = alibaba(&fake, "RevokeSecurityGroup", &SSH).await;
    plain.assert_error(
        StatusCode::BAD_REQUEST,
        "InvalidSecurityGroupRule.RuleNotExist",
    );
    let answer = alibaba(&fake, "RevokeSecurityGroup", &quintuple).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert!(described(&fake).await.is_empty());
}

/// A revoke by attributes of a missing rule can answer the ECS table's 403.
#[tokio::test]
async fn a_missing_rule_can_be_invalid_group_auth_item_not_found() {
    let fake = with_group().await;
    fake.set(
        "/settings",
        json!({"alibabaMissingRuleByAttributes": "InvalidGroupAuthItem.NotFound"}),
    )
    .await;
    let answer = alibaba(&fake, "RevokeSecurityGroup", &SSH).await;
    answer.assert_error(StatusCode::FORBIDDEN, "InvalidGroupAuthItem.NotFound");
}

/// Classic-network groups default to `internet` and describe one NIC type
/// per call (`internet` unless asked); VPC groups take `intranet` only.
#[tokio::test]
async fn nic_types_follow_the_group_s_network_type() {
    let fake = start().await;
    create_group(&fake, GROUP, json!({"network": "classic"})).await;
    let internet = alibaba(&fake, "AuthorizeSecurityGroup", &SSH).await;
    assert_eq!(internet.status, StatusCode::OK, "{}", internet.body);
    let intranet = with(
        &SSH,
        &[
            ("Permissions.1.NicType", "intranet"),
            ("Permissions.1.PortRange", "23/23"),
        ],
    );
    let intranet: Vec<_> = intranet
        .into_iter()
        .filter(|(n, v)| !(*n == "Permissions.1.PortRange" && *v == "22/22"))
        .collect();
    let answer = alibaba(&fake, "AuthorizeSecurityGroup", &intranet).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let page = |nic: Option<&'static str>| {
        let fake = &fake;
        async move {
            let mut params = vec![("RegionId", REGION), ("SecurityGroupId", GROUP)];
            params.extend(nic.map(|n| ("NicType", n)));
            let answer = alibaba(fake, "DescribeSecurityGroupAttribute", &params).await;
            assert_eq!(answer.body["VpcId"], "", "a classic group has no VPC");
            answer.body["Permissions"]["Permission"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|p| {
                    (
                        p["NicType"].as_str().unwrap_or_default().to_owned(),
                        p["PortRange"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        page(None).await,
        [("internet".to_owned(), "22/22".to_owned())]
    );
    assert_eq!(
        page(Some("intranet")).await,
        [("intranet".to_owned(), "23/23".to_owned())]
    );

    let vpc = "sg-vpc";
    create_group(&fake, vpc, json!({})).await;
    let mut params = with(&SSH, &[("Permissions.1.NicType", "internet")]);
    params[1] = ("SecurityGroupId", vpc);
    let answer = alibaba(&fake, "AuthorizeSecurityGroup", &params).await;
    answer.assert_error(StatusCode::BAD_REQUEST, "InvalidNicType.ValueNotSupported");
    let described = alibaba(
        &fake,
        "DescribeSecurityGroupAttribute",
        &[("RegionId", REGION), ("SecurityGroupId", vpc)],
    )
    .await;
    assert!(
        described.body["VpcId"]
            .as_str()
            .is_some_and(|v| v.starts_with("vpc-"))
    );
}

/// ModifySecurityGroupRule changes a rule in place by its id: same id, new
/// description and priority; a change that would copy another rule, or a
/// rule id of the other direction, is refused.
#[tokio::test]
async fn modify_changes_a_rule_in_place() {
    let fake = with_group().await;
    alibaba(&fake, "AuthorizeSecurityGroup", &SSH).await;
    let other = with(&SSH[..5], &[]);
    let mut other: Vec<_> = other
        .into_iter()
        .filter(|(n, _)| *n != "Permissions.1.PortRange")
        .collect();
    other.push(("Permissions.1.PortRange", "2222/2222"));
    alibaba(&fake, "AuthorizeSecurityGroup", &other).await;
    let rules = described(&fake).await;
    let id = rules[0]["SecurityGroupRuleId"]
        .as_str()
        .expect("id")
        .to_owned();

    let change = [
        ("RegionId", REGION),
        ("SecurityGroupId", GROUP),
        ("SecurityGroupRuleId", id.as_str()),
        ("Priority", "7"),
        ("Description", "ssh, changed"),
        ("ClientToken", "sgo-modify-1"),
    ];
    let answer = alibaba(&fake, "ModifySecurityGroupRule", &change).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let rules = described(&fake).await;
    let changed = rules
        .iter()
        .find(|r| r["SecurityGroupRuleId"] == id.as_str())
        .expect("same id");
    assert_eq!(
        (&changed["Priority"], &changed["Description"]),
        (&json!("7"), &json!("ssh, changed"))
    );
    assert_eq!(changed["PortRange"], "22/22", "what is not given is kept");
    let calls = fake.calls("action=ModifySecurityGroupRule").await;
    assert_eq!(calls.last().expect("journaled")["effect"], true);

    let copy = [
        ("RegionId", REGION),
        ("SecurityGroupId", GROUP),
        ("SecurityGroupRuleId", id.as_str()),
        ("PortRange", "2222/2222"),
    ];
    let answer = alibaba(&fake, "ModifySecurityGroupRule", &copy).await;
    answer.assert_error(StatusCode::BAD_REQUEST, "InvalidParam.DuplicatePermissions");
    let answer = alibaba(&fake, "ModifySecurityGroupEgressRule", &change[..5]).await;
    answer.assert_error(StatusCode::NOT_FOUND, "InvalidSecurityGroupRuleId.NotFound");
}

/// Enterprise groups refuse `Policy` and group peers, even at their defaults.
#[tokio::test]
async fn enterprise_groups_refuse_what_the_documentation_says() {
    let fake = start().await;
    create_group(&fake, GROUP, json!({"enterprise": true})).await;
    let answer = alibaba(&fake, "AuthorizeSecurityGroup", &SSH).await;
    answer.assert_error(
        StatusCode::BAD_REQUEST,
        "InvalidGroupParameter.OperationDenied",
    );
    let without_policy: Vec<_> = SSH
        .iter()
        .copied()
        .filter(|(n, _)| *n != "Permissions.1.Policy")
        .collect();
    let answer = alibaba(&fake, "AuthorizeSecurityGroup", &without_policy).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
}

/// A group's rule quota refuses the rule beyond it with `AuthorizationLimitExceed`;
/// a rule that exists already is still a success.
#[tokio::test]
async fn a_full_group_refuses_more_rules() {
    let fake = start().await;
    create_group(&fake, GROUP, json!({"ruleQuota": 1})).await;
    assert_eq!(
        alibaba(&fake, "AuthorizeSecurityGroup", &SSH).await.status,
        StatusCode::OK
    );
    assert_eq!(
        alibaba(&fake, "AuthorizeSecurityGroup", &SSH).await.status,
        StatusCode::OK
    );
    let mut second: Vec<_> = SSH
        .iter()
        .copied()
        .filter(|(n, _)| *n != "Permissions.1.PortRange")
        .collect();
    second.push(("Permissions.1.PortRange", "80/80"));
    let answer = alibaba(&fake, "AuthorizeSecurityGroup", &second).await;
    answer.assert_error(StatusCode::FORBIDDEN, "AuthorizationLimitExceed");
    assert_eq!(described(&fake).await.len(), 1);
}
