//! `helm template` of the chart, parsed into objects.

use std::{path::PathBuf, process::Command};

use serde::Deserialize;
use serde_yaml::Value;

pub const RELEASE: &str = "sgo";
pub const NAMESPACE: &str = "secgroup-system";

pub fn chart_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("charts/secgroup-operator")
}

/// `helm template` with extra arguments; Err carries helm's stderr.
pub fn try_template(args: &[&str]) -> Result<Vec<Value>, String> {
    let out = Command::new("helm")
        .args(["template", RELEASE])
        .arg(chart_dir())
        .args(["--namespace", NAMESPACE])
        .args(args)
        .output()
        .expect("helm on PATH (tests/cluster/tools.sh)");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(parse(&String::from_utf8_lossy(&out.stdout)))
}

pub fn template(args: &[&str]) -> Vec<Value> {
    try_template(args).unwrap_or_else(|e| panic!("helm template {args:?}: {e}"))
}

/// The objects of a multi-document YAML stream.
pub fn parse(yaml: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|doc| Value::deserialize(doc).expect("YAML"))
        .filter(|v| !v.is_null())
        .collect()
}

pub fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

pub fn one<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    let found = of_kind(objects, kind);
    assert_eq!(found.len(), 1, "one {kind} expected, found {}", found.len());
    found[0]
}

pub fn str_of(value: &Value) -> &str {
    value.as_str().unwrap_or_default()
}

pub fn strings(value: &Value) -> Vec<String> {
    value
        .as_sequence()
        .map(|s| s.iter().map(|v| str_of(v).to_owned()).collect())
        .unwrap_or_default()
}

/// The operator container of the Deployment.
pub fn container(objects: &[Value]) -> &Value {
    &one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
}

pub fn args(objects: &[Value]) -> Vec<String> {
    strings(&container(objects)["args"])
}

/// `helm install RELEASE <chart> -n NAMESPACE --create-namespace EXTRA...`
/// (no `--wait`: no kubelet runs the pods).
pub fn install(release: &str, namespace: &str, extra: &[&str]) {
    let out = Command::new("helm")
        .args(["install", release])
        .arg(chart_dir())
        .args(["-n", namespace, "--create-namespace"])
        .args(extra)
        .output()
        .expect("helm on PATH (tests/cluster/tools.sh)");
    assert!(
        out.status.success(),
        "helm install {release}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
