//! The audit trail: every cloud mutation attempt and its outcome is one
//! info line with target `audit`. Its fields are a stable schema (README,
//! "Audit trail"): add fields, never rename or drop them.
//!
//! Every provider client a rule uses is wrapped here, so each mutating call
//! is logged in this one place whichever step makes it.

use std::sync::Arc;

use async_trait::async_trait;
use tracing::info;

use crate::provider::{
    Authorize, DescribedRule, GroupRef, Modify, Operation, Provider, ProviderError, ProviderKind,
    Receipt, Revoke, RevokeTarget,
};

/// The log target of audit lines, for collectors to select them by.
pub const TARGET: &str = "audit";

/// Whom the calls are made for, and with which key.
#[derive(Clone, Debug)]
pub struct Subject {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// The ProviderConfig's name.
    pub provider_config: String,
    /// The access key id only: the secret never leaves the client.
    pub access_key_id: String,
}

/// A provider client whose mutating calls are audited.
pub struct Audited {
    inner: Arc<dyn Provider>,
    subject: Subject,
}

impl Audited {
    pub fn wrap(inner: Arc<dyn Provider>, subject: Subject) -> Arc<dyn Provider> {
        Arc::new(Self { inner, subject })
    }

    fn record(&self, call: Call<'_>, outcome: &Result<Receipt, ProviderError>) {
        let (result, code, request_id) = match outcome {
            Ok(receipt) => ("Success", "", receipt.request_id.as_deref()),
            Err(e) => (e.kind.as_str(), e.code.as_str(), e.request_id.as_deref()),
        };
        let s = &self.subject;
        info!(
            target: TARGET,
            namespace = %s.namespace,
            name = %s.name,
            uid = %s.uid,
            provider = %self.inner.kind(),
            provider_config = %s.provider_config,
            access_key_id = %s.access_key_id,
            region = %call.group.region,
            group = %call.group.security_group_id,
            action = call.action.as_str(),
            rule_id = call.rule_id.unwrap_or_default(),
            client_token = call.client_token,
            request_id = request_id.unwrap_or_default(),
            result,
            code,
            "cloud mutation"
        );
    }
}

/// What one mutating call asked for.
struct Call<'a> {
    action: Operation,
    group: &'a GroupRef,
    /// Known for a revoke by id and a modify; an authorize learns it only later.
    rule_id: Option<&'a str>,
    client_token: &'a str,
}

#[async_trait]
impl Provider for Audited {
    fn kind(&self) -> ProviderKind {
        self.inner.kind()
    }

    async fn authorize(&self, call: &Authorize) -> Result<Receipt, ProviderError> {
        let outcome = self.inner.authorize(call).await;
        let audited = Call {
            action: Operation::Authorize,
            group: &call.group,
            rule_id: None,
            client_token: &call.client_token,
        };
        self.record(audited, &outcome);
        outcome
    }

    async fn revoke(&self, call: &Revoke) -> Result<Receipt, ProviderError> {
        let outcome = self.inner.revoke(call).await;
        let rule_id = match &call.target {
            RevokeTarget::Id { rule_id, .. } => Some(rule_id.as_str()),
            RevokeTarget::Attributes(_) => None,
        };
        let audited = Call {
            action: Operation::Revoke,
            group: &call.group,
            rule_id,
            client_token: &call.client_token,
        };
        self.record(audited, &outcome);
        outcome
    }

    async fn modify(&self, call: &Modify) -> Result<Receipt, ProviderError> {
        let outcome = self.inner.modify(call).await;
        let audited = Call {
            action: Operation::Modify,
            group: &call.group,
            rule_id: Some(&call.rule_id),
            client_token: &call.client_token,
        };
        self.record(audited, &outcome);
        outcome
    }

    /// Reads are not audited.
    async fn describe(&self, group: &GroupRef) -> Result<Vec<DescribedRule>, ProviderError> {
        self.inner.describe(group).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::provider::{ErrorKind, fixtures};

    /// Answers authorize with a request id and refuses revoke.
    struct Answers;

    #[async_trait]
    impl Provider for Answers {
        fn kind(&self) -> ProviderKind {
            ProviderKind::Alibaba
        }
        async fn authorize(&self, _: &Authorize) -> Result<Receipt, ProviderError> {
            Ok(Receipt {
                request_id: Some("req-1".into()),
            })
        }
        async fn revoke(&self, _: &Revoke) -> Result<Receipt, ProviderError> {
            Err(
                ProviderError::new(ErrorKind::Throttled, "Throttling.User", "slow down")
                    .with_request_id(Some("req-2".into())),
            )
        }
        async fn modify(&self, _: &Modify) -> Result<Receipt, ProviderError> {
            Ok(Receipt {
                request_id: Some("req-3".into()),
            })
        }
        async fn describe(&self, _: &GroupRef) -> Result<Vec<DescribedRule>, ProviderError> {
            Ok(Vec::new())
        }
    }

    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn every_mutation_is_one_line_with_the_schema_and_a_read_is_none() {
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_writer(move || writer.clone())
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let subject = Subject {
            namespace: "team".into(),
            name: "web".into(),
            uid: "u-1".into(),
            provider_config: "prod".into(),
            access_key_id: "AKID".into(),
        };
        let audited = Audited::wrap(Arc::new(Answers), subject);
        let group = GroupRef {
            region: "cn-hangzhou".into(),
            security_group_id: "sg-1".into(),
        };
        let rule = fixtures::ssh_from_ten();

        audited
            .authorize(&Authorize {
                group: group.clone(),
                rule: rule.clone(),
                client_token: "sgo-a".into(),
            })
            .await
            .expect("authorized");
        audited
            .revoke(&Revoke {
                group: group.clone(),
                target: RevokeTarget::Id {
                    rule_id: "sgr-9".into(),
                    rule,
                },
                client_token: "sgo-r".into(),
            })
            .await
            .expect_err("throttled");
        audited
            .modify(&Modify {
                group: group.clone(),
                rule_id: "sgr-9".into(),
                rule: fixtures::ssh_from_ten(),
                client_token: "sgo-m".into(),
            })
            .await
            .expect("modified");
        audited.describe(&group).await.expect("described");

        let text = String::from_utf8(lines.0.lock().expect("lock").clone()).expect("utf-8");
        let parsed: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect();
        assert_eq!(parsed.len(), 3, "{text}");
        let fields = |i: usize, key: &str| parsed[i]["fields"][key].clone();
        for (i, line) in parsed.iter().enumerate() {
            assert_eq!(line["target"], TARGET);
            assert_eq!(line["level"], "INFO");
            for (key, want) in [
                ("namespace", "team"),
                ("name", "web"),
                ("uid", "u-1"),
                ("provider", "alibaba"),
                ("provider_config", "prod"),
                ("access_key_id", "AKID"),
                ("region", "cn-hangzhou"),
                ("group", "sg-1"),
            ] {
                assert_eq!(fields(i, key), want, "{key} in {line}");
            }
        }
        assert_eq!(
            [
                fields(0, "action"),
                fields(0, "rule_id"),
                fields(0, "client_token")
            ],
            ["authorize", "", "sgo-a"]
        );
        assert_eq!(
            [
                fields(0, "request_id"),
                fields(0, "result"),
                fields(0, "code")
            ],
            ["req-1", "Success", ""]
        );
        assert_eq!(
            [
                fields(1, "action"),
                fields(1, "rule_id"),
                fields(1, "client_token")
            ],
            ["revoke", "sgr-9", "sgo-r"]
        );
        assert_eq!(
            [
                fields(1, "request_id"),
                fields(1, "result"),
                fields(1, "code")
            ],
            ["req-2", "Throttled", "Throttling.User"]
        );
        assert_eq!(
            [
                fields(2, "action"),
                fields(2, "rule_id"),
                fields(2, "client_token")
            ],
            ["modify", "sgr-9", "sgo-m"]
        );
        assert_eq!(
            [
                fields(2, "request_id"),
                fields(2, "result"),
                fields(2, "code")
            ],
            ["req-3", "Success", ""]
        );
    }
}
