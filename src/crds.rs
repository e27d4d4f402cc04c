//! The CustomResourceDefinitions, as YAML for `kubectl apply` and the chart.

use kube::CustomResourceExt;

use crate::api::{ProviderConfig, SecurityGroupRule};

/// Every CRD of the operator, as (file name, YAML document).
pub fn documents() -> Result<Vec<(String, String)>, serde_yaml::Error> {
    [SecurityGroupRule::crd(), ProviderConfig::crd()]
        .into_iter()
        .map(|crd| {
            let name = format!("{}.yaml", crd.metadata.name.as_deref().unwrap_or_default());
            Ok((name, serde_yaml::to_string(&crd)?))
        })
        .collect()
}

/// All CRDs as one multi-document YAML stream.
pub fn yaml_stream() -> Result<String, serde_yaml::Error> {
    Ok(documents()?
        .into_iter()
        .map(|(_, doc)| format!("---\n{doc}"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

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
