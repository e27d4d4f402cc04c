//! The CustomResourceDefinitions, as YAML for `kubectl apply` and the chart.

use kube::CustomResourceExt;
use serde_json::Value;

use crate::api::{ProviderConfig, SecurityGroupRule};

/// Every CRD of the operator, as (file name, YAML document).
pub fn documents() -> anyhow::Result<Vec<(String, String)>> {
    [SecurityGroupRule::crd(), ProviderConfig::crd()]
        .into_iter()
        .map(|crd| {
            let name = format!("{}.yaml", crd.metadata.name.as_deref().unwrap_or_default());
            let mut value = serde_json::to_value(&crd)?;
            drop_unknown_formats(&mut value);
            Ok((name, serde_yaml::to_string(&value)?))
        })
        .collect()
}

/// The API server warns about integer formats it does not know (`uint8`,
/// `uint16`, `uint32`, which schemars emits for unsigned fields); the ranges
/// on those fields already say what is allowed.
fn drop_unknown_formats(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if map
                .get("format")
                .and_then(Value::as_str)
                .is_some_and(|f| f.starts_with("uint"))
            {
                map.remove("format");
            }
            map.values_mut().for_each(drop_unknown_formats);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_unknown_formats),
        _ => {}
    }
}

/// All CRDs as one multi-document YAML stream.
pub fn yaml_stream() -> anyhow::Result<String> {
    Ok(documents()?
        .into_iter()
        .map(|(_, doc)| format!("---\n{doc}"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsigned_formats_are_dropped_and_others_kept() {
        let mut schema = serde_json::json!({
            "properties": {
                "port": {"type": "integer", "format": "uint16", "minimum": 1},
                "items": [{"format": "uint8"}],
                "time": {"type": "string", "format": "date-time"}
            }
        });
        drop_unknown_formats(&mut schema);
        assert_eq!(
            schema["properties"]["port"],
            serde_json::json!({"type": "integer", "minimum": 1})
        );
        assert_eq!(schema["properties"]["items"][0], serde_json::json!({}));
        assert_eq!(schema["properties"]["time"]["format"], "date-time");
    }

    /// The committed crds/ folder is what users and the chart apply, so it
    /// must be exactly what the types generate.
    #[test]
    fn committed_crds_match_the_types() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
        for (name, generated) in documents().expect("CRDs serialize") {
            let committed = std::fs::read_to_string(dir.join(&name))
                .unwrap_or_else(|e| panic!("crds/{name} is missing ({e}): run `make crds`"));
            assert!(
                committed == generated,
                "crds/{name} is stale: run `make crds` and commit it"
            );
        }
    }
}
