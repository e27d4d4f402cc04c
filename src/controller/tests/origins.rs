//! A missing security group counts as "already gone" only where the rule
//! was made: after the ProviderConfig's key or endpoint changed, the rule
//! stalls and keeps its finalizer.

use serde_json::json;

use super::*;
use crate::{api::rule::Origin, controller::origin};

/// A provider whose group does not exist: describes and revokes answer
/// "not found", as a cloud does for a deleted group or another account's.
#[derive(Default)]
struct GroupMissing {
    calls: Mutex<Vec<Call>>,
}

fn not_found() -> ProviderError {
    ProviderError::new(
        ErrorKind::AlreadyGone,
        "InvalidSecurityGroupId.NotFound",
        "The specified security group does not exist.",
    )
}

#[async_trait]
impl Provider for GroupMissing {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Alibaba
    }
    async fn authorize(&self, call: &Authorize) -> Result<Receipt, ProviderError> {
        let token = call.client_token.clone();
        self.calls
            .lock()
            .expect("lock")
            .push(Call::Authorize { token });
        Err(ProviderError {
            kind: ErrorKind::Invalid,
            ..not_found()
        })
    }
    async fn revoke(&self, call: &Revoke) -> Result<Receipt, ProviderError> {
        let token = call.client_token.clone();
        self.calls
            .lock()
            .expect("lock")
            .push(Call::RevokeByAttributes { token });
        Err(not_found())
    }
    async fn describe(&self, _: &GroupRef) -> Result<Vec<DescribedRule>, ProviderError> {
        self.calls.lock().expect("lock").push(Call::Describe);
        Err(not_found())
    }
}

/// The access key id the test connector signs with.
const KEY: &str = "AKID-TEST";

/// A deleting rule authorized (at `origin`) in a group that is now missing,
/// reconciled with the ProviderConfig `config` (and the key `KEY`).
async fn delete_where_missing(
    origin: Option<Origin>,
    config: ProviderConfig,
) -> (Outcome, Vec<Call>) {
    let mut extra = authorized_status();
    extra["status"]["origin"] = serde_json::to_value(origin).expect("origin");
    merge(&mut extra, deleting());
    let object = rule(extra);
    let provider = Arc::new(GroupMissing::default());
    let connector = Arc::new(Connects(provider.clone()));
    let (client, server) = api_server(object.clone());
    let ctx = context(client, world_of(store_of(vec![config]), connector));
    let result = reconcile(Arc::new(object), ctx).await;
    let seen = server.await.expect("mock API server");
    let calls = provider.calls.lock().expect("lock").clone();
    (Outcome { result, seen }, calls)
}

fn at_endpoint(endpoint: &str) -> ProviderConfig {
    let mut c = config(None);
    c.spec.endpoint = Some(endpoint.into());
    c
}

#[tokio::test]
async fn a_missing_group_where_the_rule_was_made_completes_the_deletion() {
    let made = origin::of(&config(None).spec, KEY);
    let (out, calls) = delete_where_missing(Some(made), config(None)).await;
    assert!(out.result.is_ok(), "{:?}", out.result.err());
    assert!(
        calls.iter().all(|c| *c == Call::Describe),
        "nothing left to revoke: {calls:?}"
    );
    assert_eq!(out.finalizer_patches().len(), 1, "finalizer removed");
}

/// Rules authorized before origins were recorded are judged as then.
#[tokio::test]
async fn a_missing_group_without_a_recorded_origin_completes_the_deletion() {
    let (out, _) = delete_where_missing(None, config(None)).await;
    assert!(out.result.is_ok(), "{:?}", out.result.err());
    assert_eq!(out.finalizer_patches().len(), 1);
}

#[tokio::test]
async fn a_missing_group_after_the_key_changed_stalls_and_keeps_the_rule() {
    let made = origin::of(&config(None).spec, "AKID-BEFORE");
    let (out, calls) = delete_where_missing(Some(made.clone()), config(None)).await;
    assert!(matches!(out.result, Err(Error::CleanupPending { .. })));
    assert!(out.finalizer_patches().is_empty(), "the finalizer stays");
    assert!(
        !calls
            .iter()
            .any(|c| matches!(c, Call::RevokeByAttributes { .. })),
        "{calls:?}"
    );
    let (stalled, reason, message) = out.condition("Stalled");
    assert_eq!(
        (stalled.as_str(), reason.as_str()),
        ("True", "ProviderConfigChanged")
    );
    assert!(message.contains("whose access key id changed"), "{message}");
    let status = out.last_status();
    assert_eq!(status["ruleId"], "sgr-1", "still recorded");
    assert_eq!(status["origin"], serde_json::to_value(&made).expect("json"));
    assert!(
        out.event_reasons()
            .contains(&"ProviderConfigChanged".to_owned())
    );
}

#[tokio::test]
async fn a_missing_group_after_the_endpoint_changed_stalls() {
    let made = origin::of(&at_endpoint("https://one.example").spec, KEY);
    let (out, _) = delete_where_missing(Some(made), at_endpoint("https://two.example")).await;
    assert!(out.finalizer_patches().is_empty());
    let (_, reason, message) = out.condition("Stalled");
    assert_eq!(reason, "ProviderConfigChanged");
    assert!(message.contains("whose endpoint changed"), "{message}");
}

/// The origin is recorded with the authorize's outcome (and held in
/// memory from before the call, like the rest of the record).
#[tokio::test]
async fn an_authorize_records_where_it_goes_with_its_outcome() {
    let provider = ProviderDouble::answering(vec![]);
    let out = reconcile_with(rule(json!({})), &provider, config(None)).await;
    let patches = out.status_patches();
    let want = serde_json::to_value(origin::of(&config(None).spec, KEY)).expect("json");
    assert_eq!(patches.len(), 1, "{patches:?}");
    assert_eq!(patches[0]["appliedRule"]["ports"]["from"], 443);
    assert_eq!(patches[0]["origin"], want);
    assert!(!out.last_status().to_string().contains(KEY));
}
