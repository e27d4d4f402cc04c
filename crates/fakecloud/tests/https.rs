//! The fake cloud over HTTPS, for clients that refuse plain HTTP.

use std::path::PathBuf;

use secgroup_fakecloud::{Config, FakeCloud, serve_tls, tls};
use serde_json::json;
use tempfile::TempDir;

/// A self-signed certificate for `localhost`, written to a fresh directory
/// that is removed when the returned guard drops.
fn certificate() -> (TempDir, PathBuf, PathBuf, reqwest::Certificate) {
    let issued = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("certificate");
    let dir = tempfile::Builder::new()
        .prefix("fakecloud-tls-")
        .tempdir()
        .expect("temp dir");
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&cert, issued.cert.pem()).expect("write cert");
    std::fs::write(&key, issued.signing_key.serialize_pem()).expect("write key");
    let trusted = reqwest::Certificate::from_pem(issued.cert.pem().as_bytes()).expect("pem");
    (dir, cert, key, trusted)
}

#[tokio::test]
async fn serves_https_with_the_given_certificate_and_refuses_plain_http() {
    let (_dir, cert, key, trusted) = certificate();
    let cloud = FakeCloud::new(Config::default()).expect("fake cloud");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("port");
    let port = listener.local_addr().expect("bound").port();
    let server = tokio::spawn(serve_tls(
        listener,
        cloud,
        tls::acceptor(&cert, &key).expect("acceptor"),
    ));

    let https = reqwest::Client::builder()
        .add_root_certificate(trusted)
        .build()
        .expect("client");
    let created = https
        .post(format!("https://localhost:{port}/_fake/groups"))
        .json(&json!({"provider": "alibaba", "region": "cn-hangzhou", "id": "sg-tls"}))
        .send()
        .await
        .expect("HTTPS request");
    assert!(created.status().is_success(), "{}", created.status());

    let plain = reqwest::get(format!("http://localhost:{port}/_fake/groups")).await;
    assert!(plain.is_err(), "plain HTTP must not be answered: {plain:?}");

    let untrusted = reqwest::get(format!("https://localhost:{port}/_fake/groups")).await;
    assert!(
        untrusted.is_err(),
        "an unknown certificate must not be trusted"
    );
    server.abort();
}

#[test]
fn a_missing_key_is_named_in_the_error() {
    let (_dir, cert, _, _) = certificate();
    let missing = cert.with_file_name("absent.key");
    let Err(err) = tls::acceptor(&cert, &missing) else {
        panic!("a missing key must be refused");
    };
    assert!(err.to_string().contains("absent.key"), "{err}");
}
