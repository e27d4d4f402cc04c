//! Where a rule was authorized, and whether "security group not found" may
//! be taken to mean its rules are gone.
//!
//! A provider answers "not found" for a group in another account, region or
//! installation just as for a deleted one. After a ProviderConfig's access
//! key or endpoint changes, a revoke would then release a rule that still
//! exists where it was made. So status records the origin of its rules
//! (hashes, never a secret), and a missing group counts as gone only while
//! the ProviderConfig still points at that origin. Pure: no client.

use sha2::{Digest, Sha256};

use crate::api::{ProviderConfigSpec, provider_config::ProviderType, rule::Origin};

/// Hex digits kept of each hash: enough to tell two keys or endpoints apart,
/// too few to be worth anything to someone reading status.
const HEX_DIGITS: usize = 16;

/// The origin of calls made with `spec` and the key `access_key_id`.
pub fn of(spec: &ProviderConfigSpec, access_key_id: &str) -> Origin {
    let kind = match spec.type_ {
        ProviderType::Alibaba => "alibaba",
        ProviderType::Apsarastack => "apsarastack",
        ProviderType::Baidu => "baidu",
    };
    let apsara = spec.apsara.as_ref();
    let endpoint = [
        kind,
        spec.endpoint.as_deref().unwrap_or_default(),
        apsara
            .and_then(|a| a.organization_id.as_deref())
            .unwrap_or_default(),
        apsara
            .and_then(|a| a.resource_group_id.as_deref())
            .unwrap_or_default(),
    ];
    Origin {
        access_key: digest(&[access_key_id]),
        endpoint: digest(&endpoint),
    }
}

/// Each field length-prefixed, so no two field lists hash alike.
fn digest(fields: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for field in fields {
        hasher.update((field.len() as u64).to_be_bytes());
        hasher.update(field.as_bytes());
    }
    hex::encode(hasher.finalize())[..HEX_DIGITS].to_owned()
}

/// The origin to record before an authorize. Rules still recorded keep
/// theirs: the record holds one origin, and the older one is the one whose
/// rules could be stranded. Records without one (made before origins were
/// recorded) take the current one.
pub fn before_authorize(recorded: Option<&Origin>, holds_rules: bool, current: &Origin) -> Origin {
    match recorded {
        Some(recorded) if holds_rules => recorded.clone(),
        _ => current.clone(),
    }
}

/// What changed since `recorded`, in words for a status message; `None`
/// when nothing did, or when no origin was recorded (rules authorized before
/// origins were, which are judged as they were then).
pub fn changed(recorded: Option<&Origin>, current: &Origin) -> Option<&'static str> {
    let recorded = recorded?;
    match (
        recorded.access_key != current.access_key,
        recorded.endpoint != current.endpoint,
    ) {
        (false, false) => None,
        (true, false) => Some("access key id"),
        (false, true) => Some("endpoint"),
        (true, true) => Some("access key id and endpoint"),
    }
}

/// Why a missing group is not taken for a revoked rule.
pub fn moved_message(config: &str, group: &str, what: &str) -> String {
    format!(
        "security group {group} is not found with ProviderConfig {config}, whose {what} changed since \
         the rule was authorized: the rule may still exist where it was made, so it is not taken for revoked. \
         Point the ProviderConfig back to revoke it, or set spec.deletionPolicy: Orphan to leave it"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(extra: serde_json::Value) -> ProviderConfigSpec {
        let mut base = serde_json::json!({
            "type": "apsarastack", "region": "r1", "endpoint": "https://gw.one.example",
            "credentialsSecretRef": {"namespace": "n", "name": "s"},
            "apsara": {"organizationId": "1", "resourceGroupId": "2"}
        });
        if let (Some(base), serde_json::Value::Object(extra)) = (base.as_object_mut(), extra) {
            base.extend(extra);
        }
        serde_json::from_value(base).expect("valid")
    }

    #[test]
    fn an_origin_holds_no_key_and_is_stable() {
        let origin = of(&spec(serde_json::json!({})), "LTAI-the-key-id");
        assert_eq!(origin, of(&spec(serde_json::json!({})), "LTAI-the-key-id"));
        for hash in [&origin.access_key, &origin.endpoint] {
            assert_eq!(hash.len(), HEX_DIGITS);
            assert!(hash.bytes().all(|b| b.is_ascii_hexdigit()), "{hash}");
        }
        assert!(!format!("{origin:?}").contains("LTAI"));
    }

    /// Everything that picks the account or the place changes the origin;
    /// what only tunes the calls does not.
    #[test]
    fn the_key_the_endpoint_and_the_apsara_scope_each_change_it() {
        let base = of(&spec(serde_json::json!({})), "AK1");
        let key = of(&spec(serde_json::json!({})), "AK2");
        assert_eq!(changed(Some(&base), &key), Some("access key id"));
        for moved in [
            serde_json::json!({"endpoint": "https://gw.two.example"}),
            serde_json::json!({"apsara": {"organizationId": "9", "resourceGroupId": "2"}}),
            serde_json::json!({"apsara": {"organizationId": "1"}}),
        ] {
            let current = of(&spec(moved.clone()), "AK1");
            assert_eq!(changed(Some(&base), &current), Some("endpoint"), "{moved}");
        }
        let both = of(
            &spec(serde_json::json!({"endpoint": "https://gw.two.example"})),
            "AK2",
        );
        assert_eq!(
            changed(Some(&base), &both),
            Some("access key id and endpoint")
        );
        let tuned = of(
            &spec(serde_json::json!({"rateLimit": {"qps": 1, "burst": 1}, "region": "r2"})),
            "AK1",
        );
        assert_eq!(changed(Some(&base), &tuned), None);
    }

    /// Length prefixes keep fields apart: moving text between the endpoint
    /// and the organization is another origin.
    #[test]
    fn fields_do_not_run_into_each_other() {
        assert_ne!(digest(&["ab", "c"]), digest(&["a", "bc"]));
    }

    #[test]
    fn no_recorded_origin_is_judged_as_before() {
        let current = of(&spec(serde_json::json!({})), "AK1");
        assert_eq!(changed(None, &current), None);
    }

    #[test]
    fn rules_still_recorded_keep_their_origin() {
        let old = of(&spec(serde_json::json!({})), "AK1");
        let new = of(&spec(serde_json::json!({})), "AK2");
        assert_eq!(before_authorize(Some(&old), true, &new), old);
        assert_eq!(before_authorize(Some(&old), false, &new), new);
        assert_eq!(before_authorize(None, true, &new), new);
    }

    #[test]
    fn the_message_names_what_changed_and_how_to_proceed() {
        let message = moved_message("alibaba-prod", "sg-1", "endpoint");
        assert!(message.contains("ProviderConfig alibaba-prod, whose endpoint changed"));
        assert!(message.contains("sg-1"));
        assert!(message.contains("deletionPolicy: Orphan"));
    }
}
