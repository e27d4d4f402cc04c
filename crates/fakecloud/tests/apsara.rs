//! Apsara Stack: `/asapi/v3` and `/apsara/route/Ecs/<Action>`, HMAC-SHA1 only,
//! legacy flat parameters, its own rule store.

use reqwest::StatusCode;
use serde_json::json;

use crate::support::{
    REGION, V3, now, rpc_params, send_rpc_form, send_rpc_query, start, with_signature,
};

const GROUP: &str = "sg-apsara";
const ORG: (&str, &str) = ("x-acs-organizationid", "42");

const FLAT: [(&str, &str); 5] = [
    ("RegionId", REGION),
    ("SecurityGroupId", GROUP),
    ("IpProtocol", "tcp"),
    ("PortRange", "443/443"),
    ("SourceCidrIp", "10.1.0.0/16"),
];

/// The ASAPI gateway path takes signed query parameters and Apsara headers,
/// and keeps the rule apart from Alibaba's groups.
#[tokio::test]
async fn asapi_authorize_and_revoke_with_flat_parameters() {
    let fake = start().await;
    fake.create_group("apsara", REGION, GROUP).await;
    let signed = with_signature("POST", rpc_params("AuthorizeSecurityGroup", &now(), &FLAT));
    let answer = send_rpc_query(&fake, "/asapi/v3", &signed, &[ORG]).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let rules = fake.rules("apsara", GROUP).await;
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0]["rule"]["ports"]["from"], 443);
    assert!(fake.rules("alibaba", GROUP).await.is_empty());
    let call = fake
        .calls("provider=apsara")
        .await
        .pop()
        .expect("journaled");
    assert_eq!(call["headers"]["x-acs-organizationid"], "42");

    let signed = with_signature("POST", rpc_params("RevokeSecurityGroup", &now(), &FLAT));
    let answer = send_rpc_query(&fake, "/asapi/v3", &signed, &[ORG]).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert!(fake.rules("apsara", GROUP).await.is_empty());
}

/// The route gateway's rule, as seed 000 has it: both region parameters.
const ROUTED: [(&str, &str); 6] = [
    ("RegionId", REGION),
    ("regionId", REGION),
    ("SecurityGroupId", GROUP),
    ("IpProtocol", "tcp"),
    ("PortRange", "443/443"),
    ("SourceCidrIp", "10.1.0.0/16"),
];

/// Signed route-gateway parameters: the path names the action.
fn routed(params: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut params = rpc_params("", &now(), params);
    params.retain(|(n, _)| n != "Action" && n != "Version");
    with_signature("POST", params)
}

const ROUTE: &str = "/apsara/route/Ecs/AuthorizeSecurityGroup";

/// The route path names the action, takes every parameter from a form body
/// and answers success as `{"RequestID": ...}`.
#[tokio::test]
async fn the_route_gateway_works_as_seed_000_documents_it() {
    let fake = start().await;
    fake.create_group("apsara", REGION, GROUP).await;
    let answer = send_rpc_form(&fake, ROUTE, &routed(&ROUTED)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert!(answer.body["RequestID"].is_string(), "{}", answer.body);
    assert!(answer.body.get("RequestId").is_none(), "{}", answer.body);
    assert_eq!(fake.rules("apsara", GROUP).await.len(), 1);

    // Permissions.N is not an Apsara parameter: the rule is missing.
    let permissions = [
        ("RegionId", REGION),
        ("regionId", REGION),
        ("SecurityGroupId", GROUP),
        ("Permissions.1.IpProtocol", "tcp"),
        ("Permissions.1.PortRange", "80/80"),
        ("Permissions.1.SourceCidrIp", "10.1.0.0/16"),
    ];
    let answer = send_rpc_form(&fake, ROUTE, &routed(&permissions)).await;
    answer.assert_error(StatusCode::BAD_REQUEST, "MissingParameter");
}

/// Each of the seed's requirements is enforced on its own.
#[tokio::test]
async fn the_route_gateway_refuses_what_seed_000_does_not_allow() {
    let fake = start().await;
    fake.create_group("apsara", REGION, GROUP).await;

    let without = |name: &str| -> Vec<(&str, &str)> {
        ROUTED.iter().copied().filter(|(n, _)| *n != name).collect()
    };
    for name in ["regionId", "RegionId"] {
        let answer = send_rpc_form(&fake, ROUTE, &routed(&without(name))).await;
        answer.assert_error(StatusCode::BAD_REQUEST, "MissingParameter");
        assert!(
            answer.body["Message"]
                .as_str()
                .is_some_and(|m| m.contains(&format!("\"{name}\""))),
            "{}",
            answer.body
        );
    }

    let mut upper = ROUTED.to_vec();
    upper[3] = ("IpProtocol", "TCP");
    let answer = send_rpc_form(&fake, ROUTE, &routed(&upper)).await;
    answer.assert_error(
        StatusCode::BAD_REQUEST,
        "InvalidIpProtocol.ValueNotSupported",
    );

    // Parameters in the query are not read there: not even the access key.
    let answer = send_rpc_query(&fake, ROUTE, &routed(&ROUTED), &[]).await;
    answer.assert_error(StatusCode::BAD_REQUEST, "MissingAccessKeyId");

    let get = fake
        .send(reqwest::Method::GET, ROUTE, &[], Vec::new())
        .await;
    assert_eq!(get.status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(fake.rules("apsara", GROUP).await.is_empty());
}

/// Apsara takes `IpProtocol` in lower case only, on every path; Alibaba in any case.
#[tokio::test]
async fn apsara_protocols_are_case_sensitive_everywhere() {
    let fake = start().await;
    fake.create_group("apsara", REGION, GROUP).await;
    let mut upper = FLAT.to_vec();
    upper[2] = ("IpProtocol", "TCP");
    for path in ["/asapi/v3", "/"] {
        let signed = with_signature("POST", rpc_params("AuthorizeSecurityGroup", &now(), &upper));
        let answer = send_rpc_query(&fake, path, &signed, &[ORG]).await;
        answer.assert_error(
            StatusCode::BAD_REQUEST,
            "InvalidIpProtocol.ValueNotSupported",
        );
    }
}

async fn revoke_routed(fake: &crate::support::Fake) -> crate::support::Answer {
    send_rpc_form(
        fake,
        "/apsara/route/Ecs/RevokeSecurityGroup",
        &routed(&ROUTED),
    )
    .await
}

/// Failures come in the envelope the settings pick, with HTTP 200 if asked.
#[tokio::test]
async fn failures_come_in_the_gateway_envelope_chosen() {
    let fake = start().await;
    fake.create_group("apsara", REGION, GROUP).await;
    let answer = revoke_routed(&fake).await;
    answer.assert_error(
        StatusCode::BAD_REQUEST,
        "InvalidSecurityGroupRule.RuleNotExist",
    );

    fake.set("/settings", json!({"apsaraEnvelope": "resultCode"}))
        .await;
    let answer = revoke_routed(&fake).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        answer.body["resultCode"],
        "InvalidSecurityGroupRule.RuleNotExist"
    );
    assert!(answer.body["result"].is_null() && answer.body["resultMsg"].is_string());

    fake.set(
        "/settings",
        json!({"apsaraEnvelope": "asapi", "apsaraFailuresAs200": true}),
    )
    .await;
    let answer = revoke_routed(&fake).await;
    assert_eq!(answer.status, StatusCode::OK, "a failure with HTTP 200");
    assert_eq!(answer.body["asapiSuccess"], false);
    assert_eq!(
        answer.body["asapiErrorCode"],
        "InvalidSecurityGroupRule.RuleNotExist"
    );

    fake.set("/settings", json!({"apsaraEnvelope": "ascm"}))
        .await;
    let answer = revoke_routed(&fake).await;
    assert_eq!(
        (answer.status, &answer.body["success"]),
        (StatusCode::OK, &json!(false))
    );
    assert_eq!(answer.body["code"], "InvalidSecurityGroupRule.RuleNotExist");
    let ok = send_rpc_form(&fake, ROUTE, &routed(&ROUTED)).await;
    assert_eq!(ok.body["success"], true, "{}", ok.body);

    // The seed's own failure sample is what a server error looks like.
    fake.set(
        "/settings",
        json!({"apsaraEnvelope": "resultCode", "apsaraFailuresAs200": false}),
    )
    .await;
    fake.set(
        "/faults",
        json!({"rules": [{"provider": "apsara", "error500": 1}]}),
    )
    .await;
    let answer = revoke_routed(&fake).await;
    assert_eq!(answer.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        answer.body,
        json!({"resultCode": -1, "resultMsg": "system error", "result": null})
    );
}

/// Apsara has its own answer to a revoke of a rule that does not exist.
#[tokio::test]
async fn apsara_s_missing_rule_answer_is_set_apart_from_alibaba_s() {
    let fake = start().await;
    fake.create_group("apsara", REGION, GROUP).await;
    fake.set(
        "/settings",
        json!({"apsaraMissingRuleByAttributes": "InvalidGroupAuthItem.NotFound"}),
    )
    .await;
    let signed = with_signature("POST", rpc_params("RevokeSecurityGroup", &now(), &FLAT));
    let answer = send_rpc_query(&fake, "/asapi/v3", &signed, &[ORG]).await;
    answer.assert_error(StatusCode::FORBIDDEN, "InvalidGroupAuthItem.NotFound");
    let settings = fake.admin(reqwest::Method::GET, "/settings", None).await;
    assert_eq!(
        settings.body["alibabaMissingRuleByAttributes"],
        "InvalidSecurityGroupRule.RuleNotExist"
    );
}

/// ModifySecurityGroupRule is Alibaba's: Apsara does not know it.
#[tokio::test]
async fn apsara_does_not_modify_rules_in_place() {
    let fake = start().await;
    fake.create_group("apsara", REGION, GROUP).await;
    let params = [
        ("RegionId", REGION),
        ("SecurityGroupId", GROUP),
        ("SecurityGroupRuleId", "sgr-1"),
    ];
    let signed = with_signature(
        "POST",
        rpc_params("ModifySecurityGroupRule", &now(), &params),
    );
    let answer = send_rpc_query(&fake, "/asapi/v3", &signed, &[ORG]).await;
    answer.assert_error(StatusCode::NOT_FOUND, "InvalidAction.NotFound");
}

/// At `/`, Apsara's headers select Apsara, which refuses V3 signatures.
#[tokio::test]
async fn apsara_refuses_v3_signatures() {
    let fake = start().await;
    fake.create_group("apsara", REGION, GROUP).await;
    let mut request = V3::new(&fake, "DescribeSecurityGroupAttribute", &FLAT[..2]);
    request.set_header(ORG.0, ORG.1);
    request.signed_headers.push(ORG.0.into());
    let answer = request.send(&fake).await;
    answer.assert_error(StatusCode::BAD_REQUEST, "IncompleteSignature");
    let signed = with_signature(
        "POST",
        rpc_params("DescribeSecurityGroupAttribute", &now(), &FLAT[..2]),
    );
    let answer = send_rpc_query(&fake, "/", &signed, &[ORG]).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.body["SecurityGroupId"], GROUP);
}
