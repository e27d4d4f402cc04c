//! Guardrails between tenants and the cluster admin: a ProviderConfig in
//! use is held, and every cloud mutation leaves one audit line.

use std::time::Duration;

use kube::{Api, ResourceExt};
use secgroup_operator::api::{ProviderConfig, conditions};
use serde_json::{Value, json};

use crate::support::*;

fn https() -> Value {
    json!({"direction": "Ingress", "protocol": "TCP", "ports": {"from": 443, "to": 443},
           "peer": {"cidr": "10.1.0.0/16"}})
}

/// Deleting a ProviderConfig that a rule uses waits, held by the in-use
/// finalizer, with a condition that counts the rules; once the rule is gone
/// (revoked with that config), the deletion completes.
#[tokio::test]
async fn a_provider_config_in_use_is_held_until_its_rules_are_gone() {
    let (api, client) = setup("e2e-inuse").await;
    let config = own_provider_config(&client, "e2e-inuse", "alibaba", "cloud-credentials").await;
    let configs: Api<ProviderConfig> = Api::all(client.clone());
    let group = group_id("sg");
    create_group("alibaba", "cn-hangzhou", &group).await;
    apply(
        &api,
        "held",
        &rule_manifest("held", &config, &group, https()),
    )
    .await;
    condition(&api, "held", "Ready", "True").await;
    eventually(
        "the config marked in use",
        Duration::from_secs(30),
        || async {
            let c = configs.get(&config).await.map_err(|e| e.to_string())?;
            let in_use = in_use_condition(&c).ok_or("no InUse condition yet")?;
            if c.finalizers().contains(&"secgroup.dev/in-use".to_owned()) && in_use.status == "True"
            {
                Ok(in_use)
            } else {
                Err(format!("finalizers {:?}, {in_use:?}", c.finalizers()))
            }
        },
    )
    .await;

    delete_provider_config(&client, &config).await;
    let waiting = eventually("the deletion held", Duration::from_secs(30), || async {
        let c = configs.get(&config).await.map_err(|e| e.to_string())?;
        let in_use = in_use_condition(&c).ok_or("no InUse condition")?;
        if c.metadata.deletion_timestamp.is_some() && in_use.message.contains("deletion waits") {
            Ok(in_use)
        } else {
            Err(format!("{in_use:?}"))
        }
    })
    .await;
    assert!(
        waiting.message.contains("the 1 SecurityGroupRule"),
        "the condition counts the rules: {}",
        waiting.message
    );
    // The rule, still using the config, revokes on delete.
    delete(&api, "held").await;
    gone(&api, "held").await;
    assert!(
        cloud_rules("alibaba", "cn-hangzhou", &group)
            .await
            .is_empty()
    );
    eventually("the config gone", Duration::from_secs(30), || async {
        match configs.get_opt(&config).await.map_err(|e| e.to_string())? {
            None => Ok(()),
            Some(c) => Err(format!("still there: finalizers {:?}", c.finalizers())),
        }
    })
    .await;
}

fn in_use_condition(config: &ProviderConfig) -> Option<conditions::Condition> {
    let status = config.status.as_ref()?;
    conditions::find(&status.conditions, "InUse").cloned()
}

/// Every mutating call the fake cloud received for a rule, a throttled one
/// included, is one JSON audit line of the documented schema, with the
/// call's ClientToken and RequestId; reads leave none, and no line holds the
/// secret key.
#[tokio::test]
async fn every_cloud_mutation_is_one_audit_line() {
    let (api, client) = setup("e2e-audit").await;
    let config = own_provider_config(&client, "e2e-audit", "alibaba", "cloud-credentials").await;
    let run = suffix();
    let selector = format!("{OWN_OPERATOR_LABEL}={run}");
    let log = format!("audit-operator-{run}.log");
    let _operator = start_operator(
        &[
            "--metrics-addr",
            "127.0.0.1:0",
            "--label-selector",
            &selector,
            "--log-format",
            "json",
        ],
        &[],
        &log,
    );
    let group = group_id("sg");
    create_group("alibaba", "cn-hangzhou", &group).await;
    set_group_faults(
        &group,
        &[json!({"provider": "alibaba", "action": "AuthorizeSecurityGroup", "throttle": 1.0, "times": 1})],
    )
    .await;
    let mut manifest = rule_manifest("audited", &config, &group, https());
    manifest["metadata"]["labels"] = json!({ OWN_OPERATOR_LABEL: run });
    apply(&api, "audited", &manifest).await;
    let ready = condition(&api, "audited", "Ready", "True").await;
    let uid = ready.uid().expect("uid");
    let namespace = ready.namespace().expect("namespaced");
    delete(&api, "audited").await;
    gone(&api, "audited").await;
    set_group_faults(&group, &[]).await;

    let mutations: Vec<Value> = cloud_calls(&group)
        .await
        .into_iter()
        .filter(|c| {
            !c["action"]
                .as_str()
                .unwrap_or_default()
                .starts_with("Describe")
        })
        .collect();
    assert!(
        mutations.len() >= 3,
        "a throttled authorize, its retry and a revoke: {mutations:?}"
    );
    let lines = eventually(
        "the audit lines written",
        Duration::from_secs(10),
        || async {
            let text = std::fs::read_to_string(log_dir().join(&log)).map_err(|e| e.to_string())?;
            assert!(!text.contains(SECRET_KEY), "the secret key in the log");
            let lines: Vec<Value> = text
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .filter(|l| l["target"] == "audit" && l["fields"]["uid"] == uid.as_str())
                .collect();
            if lines.len() >= mutations.len() {
                Ok(lines)
            } else {
                Err(format!(
                    "{} lines for {} calls",
                    lines.len(),
                    mutations.len()
                ))
            }
        },
    )
    .await;
    assert_eq!(lines.len(), mutations.len(), "one line per call: {lines:?}");
    for call in &mutations {
        let matching: Vec<&Value> = lines
            .iter()
            .filter(|l| {
                l["fields"]["client_token"] == call["clientToken"]
                    && l["fields"]["request_id"] == call["requestId"]
            })
            .collect();
        assert_eq!(matching.len(), 1, "one line for {call}: {lines:?}");
        let line = &matching[0];
        assert_eq!(line["level"], "INFO");
        let fields = &line["fields"];
        assert_schema(fields);
        for (key, want) in [
            ("namespace", namespace.clone()),
            ("name", "audited".to_owned()),
            ("provider", "alibaba".into()),
            ("provider_config", config.clone()),
            ("access_key_id", ACCESS_KEY.into()),
            ("region", "cn-hangzhou".into()),
            ("group", group.clone()),
        ] {
            assert_eq!(fields[key], want.as_str(), "{key} in {line}");
        }
        let action = call["action"].as_str().unwrap_or_default();
        let expected_action = if action.starts_with("Revoke") {
            "revoke"
        } else if action.starts_with("Modify") {
            "modify"
        } else {
            "authorize"
        };
        assert_eq!(fields["action"], expected_action, "{call}");
        if call["code"] == "OK" {
            assert_eq!(
                (&fields["result"], &fields["code"]),
                (&json!("Success"), &json!(""))
            );
        } else {
            assert_eq!(fields["code"], call["code"], "{call}");
            assert_eq!(fields["result"], "Throttled", "{call}");
        }
    }
    let revoke = lines
        .iter()
        .find(|l| l["fields"]["action"] == "revoke")
        .expect("a revoke line");
    assert!(
        revoke["fields"]["rule_id"]
            .as_str()
            .is_some_and(|id| id.starts_with("sgr-")),
        "the revoke names the rule id: {revoke}"
    );
    delete_provider_config(&client, &config).await;
}

/// The documented audit schema (README, "Audit trail"): every field present,
/// each a string.
fn assert_schema(fields: &Value) {
    const SCHEMA: [&str; 15] = [
        "message",
        "namespace",
        "name",
        "uid",
        "provider",
        "provider_config",
        "access_key_id",
        "region",
        "group",
        "action",
        "rule_id",
        "client_token",
        "request_id",
        "result",
        "code",
    ];
    let object = fields.as_object().expect("fields");
    for key in SCHEMA {
        assert!(
            object.get(key).is_some_and(Value::is_string),
            "{key} in {fields}"
        );
    }
    assert_eq!(fields["message"], "cloud mutation");
    let mut unknown: Vec<&String> = object
        .keys()
        .filter(|k| !SCHEMA.contains(&k.as_str()))
        .collect();
    unknown.sort();
    assert!(unknown.is_empty(), "fields outside the schema: {unknown:?}");
}
