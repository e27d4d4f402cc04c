//! Property tests of the fake cloud's request parsing: whatever arrives,
//! signed or not, it answers in the provider's own error envelope (which
//! the clients classify) and never panics; and every rule admission lets
//! through survives authorize, describe and revoke through the real clients.

use std::sync::{Arc, OnceLock};

use axum::body::Body;
use http::{Method, Request, StatusCode};
use proptest::{option, prelude::*, test_runner::TestCaseError};
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::{
    provider::{
        self, Authorize, Credentials, GroupRef, NicType, Operation, Provider, ProviderKind,
        ProviderSettings, RateLimit, Revoke, RevokeTarget, Rule,
        baidu::errors as bce,
        ecs::errors as pop,
        fixtures::{json_value, rule},
        http::HttpResponse,
    },
    sign::{self, SignedRequest, acs3, encode::percent_encode, rpc},
};
use secgroup_fakecloud::{Config, FakeCloud, serve};

const AK: &str = "ak";
const SECRET: &str = "sk";
const HOST: &str = "127.0.0.1:9";

/// One runtime for every case: proptest calls its cases synchronously.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime")
    })
}

/// A fake cloud with one group per provider, `sg-1` and `g-1`.
fn cloud() -> FakeCloud {
    let cloud = FakeCloud::new(Config {
        access_keys: vec![(AK.into(), SECRET.into())],
        seed: Some(7),
        ..Config::default()
    })
    .expect("fake cloud");
    for (provider, region, id) in [
        ("alibaba", "cn-hangzhou", "sg-1"),
        ("apsara", "cn-hangzhou", "sg-1"),
        ("baidu", "bj", "g-1"),
    ] {
        let body = json!({"provider": provider, "region": region, "id": id}).to_string();
        let request = Request::post("/_fake/groups")
            .header("content-type", "application/json")
            .body(Body::from(body))
            .expect("request");
        let answer = runtime()
            .block_on(cloud.router().oneshot(request))
            .expect("answer");
        assert_eq!(answer.status(), StatusCode::CREATED);
    }
    cloud
}

/// Sends a request to the router in-process and returns the answer.
fn send(cloud: &FakeCloud, request: Request<Body>) -> HttpResponse {
    runtime().block_on(async {
        let answer = cloud.router().oneshot(request).await.expect("infallible");
        let status = answer.status().as_u16();
        let headers = answer.headers().clone();
        let body = axum::body::to_bytes(answer.into_body(), usize::MAX)
            .await
            .expect("body");
        HttpResponse {
            status,
            headers,
            body,
        }
    })
}

#[derive(Clone, Copy, Debug)]
enum Dialect {
    Pop,
    Bce,
}

/// A refusal must come in the provider's envelope, so the clients read its
/// code (not just the HTTP status) and classify it; a fault-free fake never
/// answers with a server error.
fn refused_in_envelope(dialect: Dialect, answer: &HttpResponse) -> Result<(), TestCaseError> {
    prop_assert!(answer.status < 500, "{answer:?}");
    if answer.is_success() {
        return Ok(());
    }
    if answer.body.is_empty() {
        // The router's own 404/405 for a path or method no provider has.
        prop_assert!(matches!(answer.status, 404 | 405), "{answer:?}");
        return Ok(());
    }
    let err = match dialect {
        Dialect::Pop => pop::error_from_response(Operation::Authorize, answer),
        Dialect::Bce => bce::error_from_response(Operation::Authorize, answer),
    };
    prop_assert!(!err.code.starts_with("HTTP"), "no envelope: {answer:?}");
    Ok(())
}

fn dialect_of(path: &str) -> Dialect {
    if path.starts_with("/v2/") {
        Dialect::Bce
    } else {
        Dialect::Pop
    }
}

/// Field names of ECS calls, in every form the fake reads.
fn ecs_name() -> impl Strategy<Value = String> {
    const FIELDS: [&str; 16] = [
        "IpProtocol",
        "PortRange",
        "SourceCidrIp",
        "DestCidrIp",
        "Ipv6SourceCidrIp",
        "Ipv6DestCidrIp",
        "SourceGroupId",
        "DestGroupId",
        "SourceGroupOwnerAccount",
        "SourcePortRange",
        "SourcePrefixListId",
        "Policy",
        "Priority",
        "NicType",
        "Description",
        "",
    ];
    let field = prop::sample::select(FIELDS.to_vec());
    prop_oneof![
        (
            prop::sample::select(vec!["1", "2", "101", "x", "0"]),
            field.clone()
        )
            .prop_map(|(n, f)| if f.is_empty() {
                format!("Permissions.{n}")
            } else {
                format!("Permissions.{n}.{f}")
            }),
        field.prop_map(str::to_owned),
        prop::sample::select(vec!["1", "2", "101"])
            .prop_map(|n| format!("SecurityGroupRuleId.{n}")),
        prop::sample::select(vec![
            "ClientToken",
            "NextToken",
            "MaxResults",
            "RegionId",
            "SecurityGroupId"
        ])
        .prop_map(str::to_owned),
        "\\PC{1,12}",
    ]
}

/// Values of ECS fields: plausible ones and anything at all.
fn ecs_value() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "tcp",
            "udp",
            "icmp",
            "all",
            "-1",
            "22/22",
            "1/65535",
            "-1/-1",
            "0/0",
            "9/3",
            "10.0.0.0/8",
            "10.1.2.3/8",
            "::/0",
            "sg-1",
            "sg-2",
            "accept",
            "drop",
            "1",
            "100",
            "101",
            "intranet",
            "internet",
            "cn-hangzhou",
            "",
        ])
        .prop_map(str::to_owned),
        "\\PC{0,20}",
    ]
}

fn ecs_call() -> impl Strategy<Value = (String, Vec<(String, String)>)> {
    let action = prop::sample::select(vec![
        "AuthorizeSecurityGroup",
        "AuthorizeSecurityGroupEgress",
        "RevokeSecurityGroup",
        "RevokeSecurityGroupEgress",
        "DescribeSecurityGroupAttribute",
        "DeleteSecurityGroup",
    ]);
    let base = vec![
        ("RegionId".to_owned(), "cn-hangzhou".to_owned()),
        ("SecurityGroupId".to_owned(), "sg-1".to_owned()),
    ];
    (
        action,
        prop::collection::vec((ecs_name(), ecs_value()), 0..10),
    )
        .prop_map(move |(a, extra)| {
            let mut params = base.clone();
            params.extend(extra);
            (a.to_owned(), params)
        })
}

fn nonce() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn encoded(params: &[(String, String)]) -> String {
    params
        .iter()
        .map(|(n, v)| format!("{}={}", percent_encode(n), percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// An Alibaba V3 request for `action` with `params`, signed.
fn v3_request(action: &str, params: &[(String, String)]) -> Request<Body> {
    let headers: Vec<(String, String)> = [
        ("host", HOST.to_owned()),
        ("x-acs-action", action.to_owned()),
        ("x-acs-version", "2014-05-26".to_owned()),
        ("x-acs-date", provider::http::attempt_timestamp()),
        ("x-acs-signature-nonce", nonce()),
        (acs3::CONTENT_SHA256, sign::sha256_hex(b"")),
    ]
    .into_iter()
    .map(|(n, v)| (n.to_owned(), v))
    .collect();
    let signed = acs3::required_signed_headers(&headers);
    let authorization = acs3::authorization(
        AK,
        SECRET,
        &SignedRequest {
            method: "POST",
            path: "/",
            query: params,
            headers: &headers,
            signed_headers: &signed,
        },
    );
    let mut request = Request::post(format!("/?{}", encoded(params)));
    for (name, value) in headers {
        request = request.header(name, value);
    }
    request
        .header("authorization", authorization)
        .body(Body::empty())
        .expect("request")
}

/// An Apsara Stack V2 request, parameters and signature in a form body.
fn v2_form_request(action: &str, params: &[(String, String)]) -> Request<Body> {
    let mut all: Vec<(String, String)> = [
        ("AccessKeyId", AK.to_owned()),
        ("Action", action.to_owned()),
        ("Version", "2014-05-26".to_owned()),
        ("Format", "JSON".to_owned()),
        ("SignatureMethod", "HMAC-SHA1".to_owned()),
        ("SignatureVersion", "1.0".to_owned()),
        ("SignatureNonce", nonce()),
        ("Timestamp", provider::http::attempt_timestamp()),
    ]
    .into_iter()
    .map(|(n, v)| (n.to_owned(), v))
    .collect();
    all.extend(params.iter().cloned());
    let signature = rpc::signature(SECRET, "POST", &all);
    all.push((rpc::SIGNATURE_PARAM.to_owned(), signature));
    Request::post("/asapi/v3")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-acs-organizationid", "1")
        .body(Body::from(encoded(&all)))
        .expect("request")
}

/// A Baidu request, signed with bce-auth-v1 over its default headers.
fn bce_request(method: &str, path: &str, query: &[(String, String)], body: &str) -> Request<Body> {
    let timestamp = provider::http::attempt_timestamp();
    let headers = vec![
        ("host".to_owned(), HOST.to_owned()),
        ("x-bce-date".to_owned(), timestamp.clone()),
        ("content-type".to_owned(), "application/json".to_owned()),
    ];
    let context = sign::bce::AuthContext {
        access_key_id: AK,
        timestamp: &timestamp,
        expiration_seconds: 1800,
    };
    let authorization = sign::bce::authorization(
        SECRET,
        &context,
        &SignedRequest {
            method,
            path,
            query,
            headers: &headers,
            signed_headers: &[],
        },
    );
    let uri = if query.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", encoded(query))
    };
    let mut request = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    request
        .header("authorization", authorization)
        .body(Body::from(body.to_owned()))
        .expect("request")
}

/// A Baidu rule body with the model's field names and values of any type.
fn bce_body() -> impl Strategy<Value = String> {
    let field = prop::sample::select(vec![
        "direction",
        "protocol",
        "portRange",
        "ethertype",
        "sourceIp",
        "destIp",
        "sourceGroupId",
        "destGroupId",
        "remark",
    ]);
    let value = prop_oneof![
        prop::sample::select(vec![
            "ingress",
            "egress",
            "tcp",
            "udp",
            "icmp",
            "all",
            "",
            "22",
            "1-65535",
            "0",
            "9-3",
            "70000",
            "IPv4",
            "IPv6",
            "10.0.0.0/8",
            "all",
            "::/0",
            "g-1",
        ])
        .prop_map(|s| Value::String(s.to_owned())),
        json_value(),
    ];
    prop_oneof![
        prop::collection::vec((field, value), 0..8).prop_map(|fields| {
            let rule: serde_json::Map<String, Value> =
                fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            json!({ "rule": rule }).to_string()
        }),
        json_value().prop_map(|v| v.to_string()),
        "\\PC{0,40}",
    ]
}

fn bce_call() -> impl Strategy<Value = (String, String, Vec<(String, String)>, String)> {
    let flag = prop::sample::select(vec!["authorizeRule", "revokeRule", "other"]);
    prop_oneof![
        (flag, option::of("\\PC{0,20}"), bce_body()).prop_map(|(flag, token, body)| {
            let mut query = vec![(flag.to_owned(), String::new())];
            query.extend(token.map(|t| ("clientToken".to_owned(), t)));
            (
                "PUT".to_owned(),
                "/v2/securityGroup/g-1".to_owned(),
                query,
                body,
            )
        }),
        "[a-z0-9-]{1,12}".prop_map(|id| (
            "DELETE".to_owned(),
            format!("/v2/securityGroup/rule/{id}"),
            Vec::new(),
            String::new()
        )),
        Just((
            "GET".to_owned(),
            "/v2/securityGroup/g-1".to_owned(),
            Vec::new(),
            String::new()
        )),
        Just((
            "GET".to_owned(),
            "/v2/securityGroup".to_owned(),
            Vec::new(),
            String::new()
        )),
    ]
}

/// Requests with no valid signature: any method, provider path, query,
/// headers and body.
fn garbage() -> impl Strategy<Value = (Method, String, Vec<(String, String)>, Vec<u8>)> {
    let method = prop::sample::select(vec![Method::GET, Method::POST, Method::PUT, Method::DELETE]);
    let path = prop::sample::select(vec![
        "/",
        "/asapi/v3",
        "/apsara/route/Ecs/AuthorizeSecurityGroup",
        "/apsara/route/Ecs/x",
        "/v2/securityGroup",
        "/v2/securityGroup/g-1",
        "/v2/securityGroup/rule/r-1",
    ]);
    let header = prop_oneof![
        (
            "authorization",
            "\\PC{0,40}|ACS3-HMAC-SHA256 [ -~]{0,40}|bce-auth-v1/[ -~]{0,40}"
        ),
        (
            "content-type",
            "application/x-www-form-urlencoded|application/json|[ -~]{0,20}"
        ),
        (
            "x-acs-action|x-acs-version|x-acs-date|x-acs-organizationid|x-bce-date",
            "[ -~]{0,20}"
        ),
    ]
    .prop_map(|(n, v)| (n, v));
    let query = prop::collection::vec((ecs_name(), ecs_value()), 0..6);
    (
        method,
        path,
        query,
        prop::collection::vec(header, 0..5),
        prop::collection::vec(any::<u8>(), 0..200),
    )
        .prop_map(|(method, path, query, headers, body)| {
            let uri = format!("{path}?{}", encoded(&query));
            (method, uri, headers.into_iter().collect(), body)
        })
}

proptest! {
    /// Unsigned or badly signed requests of any shape are refused in the
    /// provider's envelope, never with a panic or a server error.
    #[test]
    fn any_request_is_answered_in_the_provider_s_envelope((method, uri, headers, body) in garbage()) {
        let cloud = shared_cloud();
        let mut request = Request::builder().method(method).uri(&uri);
        for (name, value) in &headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let Ok(request) = request.body(Body::from(body)) else {
            return Ok(()); // not an HTTP request at all
        };
        let answer = send(cloud, request);
        prop_assert!(!answer.is_success(), "an unsigned request was accepted: {answer:?}");
        refused_in_envelope(dialect_of(&uri), &answer)?;
    }

    /// Correctly signed ECS calls with any parameters, V3 on `/` and V2 in a
    /// form on Apsara Stack's gateway: answered or refused in the envelope.
    #[test]
    fn any_signed_ecs_call_is_answered_or_refused_in_the_envelope((action, params) in ecs_call(), form in any::<bool>()) {
        let request = if form { v2_form_request(&action, &params) } else { v3_request(&action, &params) };
        let answer = send(shared_cloud(), request);
        refused_in_envelope(Dialect::Pop, &answer)?;
        let authentication = ["SignatureDoesNotMatch", "IncompleteSignature", "InvalidAccessKeyId.NotFound"];
        let err = pop::error_from_response(Operation::Authorize, &answer);
        prop_assert!(answer.is_success() || !authentication.contains(&err.code.as_str()), "{answer:?}");
    }

    /// Correctly signed Baidu calls with any rule body: answered or refused in the envelope.
    #[test]
    fn any_signed_baidu_call_is_answered_or_refused_in_the_envelope((method, path, query, body) in bce_call()) {
        let answer = send(shared_cloud(), bce_request(&method, &path, &query, &body));
        refused_in_envelope(Dialect::Bce, &answer)?;
        let err = bce::error_from_response(Operation::Authorize, &answer);
        prop_assert!(answer.is_success() || !["SignatureDoesNotMatch", "InvalidHTTPAuthHeader"].contains(&err.code.as_str()), "{answer:?}");
    }
}

fn shared_cloud() -> &'static FakeCloud {
    static CLOUD: OnceLock<FakeCloud> = OnceLock::new();
    CLOUD.get_or_init(cloud)
}

/// The real clients of the three providers against one fake cloud on
/// loopback, with groups created on first use.
struct Clients {
    by_kind: Vec<(ProviderKind, GroupRef, Arc<dyn Provider>)>,
    cloud: FakeCloud,
}

fn clients() -> &'static Clients {
    static CLIENTS: OnceLock<Clients> = OnceLock::new();
    CLIENTS.get_or_init(|| {
        let cloud = FakeCloud::new(Config {
            access_keys: vec![(AK.into(), SECRET.into())],
            seed: Some(7),
            auto_create_groups: true,
            ..Config::default()
        })
        .expect("fake cloud");
        let endpoint = runtime().block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let address = listener.local_addr().expect("address");
            tokio::spawn(serve(listener, cloud.clone()));
            format!("http://{address}")
        });
        let by_kind = [
            (ProviderKind::Alibaba, "cn-hangzhou", "sg-roundtrip"),
            (ProviderKind::Apsara, "cn-qingdao", "sg-roundtrip"),
            (ProviderKind::Baidu, "bj", "g-roundtrip"),
        ]
        .into_iter()
        .map(|(kind, region, group)| {
            let mut settings = ProviderSettings::new(kind, region);
            settings.endpoint = Some(endpoint.parse().expect("endpoint"));
            settings.rate_limit = RateLimit {
                qps: 10_000,
                burst: 10_000,
            };
            // Its organisation header is what tells Apsara from Alibaba at `/`.
            settings.apsara.organization_id = Some("1".into());
            let client =
                provider::connect(&settings, Credentials::new(AK, SECRET, None)).expect("client");
            let group = GroupRef {
                region: region.into(),
                security_group_id: group.into(),
            };
            (kind, group, client)
        })
        .collect();
        Clients { by_kind, cloud }
    })
}

/// Creates a classic-network ECS group, the only kind that takes `Internet` rules.
fn create_classic_group(cloud: &FakeCloud, kind: ProviderKind, group: &GroupRef) {
    let provider = match kind {
        ProviderKind::Apsara => "apsara",
        _ => "alibaba",
    };
    let body = json!({"provider": provider, "region": group.region,
                      "id": group.security_group_id, "network": "classic"});
    let request = Request::post("/_fake/groups")
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .expect("request");
    let answer = runtime()
        .block_on(cloud.router().oneshot(request))
        .expect("answer");
    assert_eq!(answer.status(), StatusCode::CREATED);
}

/// Authorizes `want` through the real client, finds it in the group's
/// description as the same rule with the same priority and description,
/// then revokes it by its attributes and finds it gone.
fn round_trip(kind: ProviderKind, want: &Rule) -> Result<(), TestCaseError> {
    static CASES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let (_, base, client) = clients()
        .by_kind
        .iter()
        .find(|(k, _, _)| *k == kind)
        .expect("a client per provider");
    // A group of its own per case (created on first use), so cases never meet.
    let case = CASES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let group = &GroupRef {
        region: base.region.clone(),
        security_group_id: format!("{}{case}", base.security_group_id),
    };
    if want.nic_type == NicType::Internet {
        create_classic_group(&clients().cloud, kind, group);
    }
    let token = || format!("sgo-{}", nonce());
    runtime().block_on(async {
        let authorize = Authorize {
            group: group.clone(),
            rule: want.clone(),
            client_token: token(),
        };
        let authorized = client.authorize(&authorize).await;
        prop_assert!(authorized.is_ok(), "authorize {want:?}: {authorized:?}");
        let described = client
            .describe(group)
            .await
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let found: Vec<_> = described
            .iter()
            .filter(|d| kind.same_rule(want, &d.rule))
            .collect();
        prop_assert_eq!(
            found.len(),
            1,
            "{:?} described as {:?}",
            want,
            described.first()
        );
        prop_assert_eq!(found[0].rule.priority, want.priority);
        // Baidu keeps the remark without surrounding blanks (see `same_rule`).
        prop_assert_eq!(found[0].rule.description.trim(), want.description.trim());
        let revoke = Revoke {
            group: group.clone(),
            target: RevokeTarget::Attributes(want.clone()),
            client_token: token(),
        };
        let revoked = client.revoke(&revoke).await;
        prop_assert!(revoked.is_ok(), "revoke {want:?}: {revoked:?}");
        let left = client
            .describe(group)
            .await
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(
            !left.iter().any(|d| kind.same_rule(want, &d.rule)),
            "{want:?} still in {left:?}"
        );
        Ok(())
    })
}

proptest! {
    /// What the client sends, the fake reads; what the fake describes, the
    /// client reads back as the rule that was declared. Drift detection and
    /// learning a rule's id both depend on this.
    #[test]
    fn every_admitted_alibaba_rule_survives_the_round_trip(want in rule(ProviderKind::Alibaba)) {
        round_trip(ProviderKind::Alibaba, &want)?;
    }

    #[test]
    fn every_admitted_apsara_rule_survives_the_round_trip(want in rule(ProviderKind::Apsara)) {
        round_trip(ProviderKind::Apsara, &want)?;
    }

    #[test]
    fn every_admitted_baidu_rule_survives_the_round_trip(want in rule(ProviderKind::Baidu)) {
        round_trip(ProviderKind::Baidu, &want)?;
    }
}
