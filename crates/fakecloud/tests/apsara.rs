//! Apsara Stack: `/asapi/v3` and `/apsara/route/Ecs/<Action>`, HMAC-SHA1 only,
//! legacy flat parameters, its own rule store.

use reqwest::StatusCode;

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

/// The route path names the action and takes a form body; Permissions.N is
/// not an Apsara parameter, so a rule given only that way is missing.
#[tokio::test]
async fn route_path_takes_a_form_body_and_only_flat_rules() {
    let fake = start().await;
    fake.create_group("apsara", REGION, GROUP).await;
    let mut params = rpc_params("", &now(), &FLAT);
    params.retain(|(n, _)| n != "Action" && n != "Version");
    let signed = with_signature("POST", params);
    let answer = send_rpc_form(&fake, "/apsara/route/Ecs/AuthorizeSecurityGroup", &signed).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(fake.rules("apsara", GROUP).await.len(), 1);

    let permissions = [
        ("RegionId", REGION),
        ("SecurityGroupId", GROUP),
        ("Permissions.1.IpProtocol", "tcp"),
        ("Permissions.1.PortRange", "80/80"),
        ("Permissions.1.SourceCidrIp", "10.1.0.0/16"),
    ];
    let signed = with_signature(
        "POST",
        rpc_params("AuthorizeSecurityGroup", &now(), &permissions),
    );
    let answer = send_rpc_form(&fake, "/apsara/route/Ecs/AuthorizeSecurityGroup", &signed).await;
    answer.assert_error(StatusCode::BAD_REQUEST, "MissingParameter");
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
