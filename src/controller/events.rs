//! Publishing Events. Warnings go through kube's `Recorder`, which folds
//! repeats (a retry loop) into one Event series. Success notices never
//! repeat — each names its own ClientToken — so they are created directly:
//! the Recorder would keep each one in its series cache for six minutes,
//! megabytes and a longer cache scan per Event when thousands of rules
//! settle at once.

use jiff::Timestamp;
use k8s_openapi::{
    api::{core::v1::ObjectReference, events::v1::Event as K8sEvent},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
};
use kube::{
    Api, Client,
    api::PostParams,
    runtime::events::{Event, EventType, Reporter},
};

/// Who reports the operator's Events.
pub fn reporter() -> Reporter {
    Reporter {
        controller: "secgroup-operator".into(),
        instance: std::env::var("POD_NAME").ok(),
    }
}

/// Creates `event` about `reference` without caching it.
pub async fn create_one_off(
    client: &Client,
    event: &Event,
    reference: &ObjectReference,
) -> Result<(), kube::Error> {
    let namespace = reference.namespace.as_deref().unwrap_or("default");
    let api: Api<K8sEvent> = Api::namespaced(client.clone(), namespace);
    let built = one_off(event, reference, &reporter(), Timestamp::now());
    api.create(&PostParams::default(), &built).await.map(drop)
}

/// The Event object for a one-off `event`, named and filled in as the
/// Recorder fills in its own.
pub fn one_off(
    event: &Event,
    reference: &ObjectReference,
    reporter: &Reporter,
    now: Timestamp,
) -> K8sEvent {
    let subject = reference.name.as_deref().unwrap_or(&reporter.controller);
    K8sEvent {
        action: Some(event.action.clone()),
        reason: Some(event.reason.clone()),
        note: event.note.clone(),
        event_time: Some(MicroTime(now)),
        regarding: Some(reference.clone()),
        related: event.secondary.clone(),
        metadata: ObjectMeta {
            namespace: reference.namespace.clone(),
            name: Some(format!("{subject}.{:x}", now.as_nanosecond())),
            ..ObjectMeta::default()
        },
        reporting_controller: Some(reporter.controller.clone()),
        reporting_instance: Some(
            reporter
                .instance
                .clone()
                .unwrap_or_else(|| reporter.controller.clone()),
        ),
        type_: Some(
            match event.type_ {
                EventType::Normal => "Normal",
                EventType::Warning => "Warning",
            }
            .into(),
        ),
        ..K8sEvent::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_one_off_event_regards_the_rule_and_names_the_reporter() {
        let reference = ObjectReference {
            api_version: Some("secgroup.dev/v1alpha1".into()),
            kind: Some("SecurityGroupRule".into()),
            name: Some("web".into()),
            namespace: Some("shop".into()),
            uid: Some("u-1".into()),
            ..ObjectReference::default()
        };
        let event = Event {
            type_: EventType::Normal,
            reason: "Authorized".into(),
            note: Some("rule authorized".into()),
            action: "Authorize".into(),
            secondary: None,
        };
        let reporter = Reporter {
            controller: "secgroup-operator".into(),
            instance: Some("pod-0".into()),
        };
        let now = Timestamp::from_second(1_700_000_000).expect("valid");
        let built = one_off(&event, &reference, &reporter, now);
        assert_eq!(built.regarding, Some(reference));
        assert_eq!(built.type_.as_deref(), Some("Normal"));
        assert_eq!(built.reason.as_deref(), Some("Authorized"));
        assert_eq!(built.action.as_deref(), Some("Authorize"));
        assert_eq!(built.note.as_deref(), Some("rule authorized"));
        assert_eq!(built.metadata.namespace.as_deref(), Some("shop"));
        let name = built.metadata.name.expect("named");
        assert!(name.starts_with("web."), "{name}");
        assert_eq!(
            built.reporting_controller.as_deref(),
            Some("secgroup-operator")
        );
        assert_eq!(built.reporting_instance.as_deref(), Some("pod-0"));
        assert_eq!(built.event_time, Some(MicroTime(now)));
        assert!(built.series.is_none());
    }
}
