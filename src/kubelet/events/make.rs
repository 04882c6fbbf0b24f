//! A recorded [`Event`] as the core/v1 Event object client-go's recorder makes
//! (tools/record/event.go makeEvent and generateEvent): named `<object>.<hex unix
//! nanos>`, in the object's namespace or `default`, count 1, first and last timestamp
//! the time it was recorded, the source and the reporting component and instance.

use std::time::{SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::{Event as CoreEvent, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;

use super::{Event, ObjectRef};

/// kubelet's event source component.
pub const COMPONENT: &str = "kubelet";

/// The Event object for `ev`, reported by `component` on `host` (the node name).
pub fn make_event(ev: &Event, component: &str, host: &str) -> CoreEvent {
    let o = &ev.object;
    let namespace = if o.namespace.is_empty() {
        "default".to_string()
    } else {
        o.namespace.clone()
    };
    let t = api_time(ev.time);
    CoreEvent {
        metadata: ObjectMeta {
            name: Some(event_name(&o.name, ev.time)),
            namespace: Some(namespace),
            ..Default::default()
        },
        involved_object: reference(o),
        reason: Some(ev.reason.clone()),
        message: Some(ev.message.clone()),
        first_timestamp: Some(t.clone()),
        last_timestamp: Some(t),
        count: Some(1),
        type_: Some(ev.kind.as_str().into()),
        source: Some(EventSource {
            component: Some(component.into()),
            host: Some(host.into()),
        }),
        reporting_component: Some(component.into()),
        reporting_instance: Some(host.into()),
        ..Default::default()
    }
}

fn reference(o: &ObjectRef) -> ObjectReference {
    let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
    ObjectReference {
        api_version: Some(ObjectRef::API_VERSION.into()),
        kind: opt(&o.kind),
        namespace: opt(&o.namespace),
        name: opt(&o.name),
        uid: opt(&o.uid),
        resource_version: o.resource_version.clone(),
        field_path: o.field_path.clone(),
    }
}

fn unix_nanos(t: SystemTime) -> i128 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i128::try_from(d.as_nanos()).unwrap_or(i128::MAX),
        Err(e) => -i128::try_from(e.duration().as_nanos()).unwrap_or(i128::MAX),
    }
}

/// An API time (whole seconds, as metav1.Time is written).
pub fn api_time(t: SystemTime) -> Time {
    let secs = i64::try_from(unix_nanos(t).div_euclid(1_000_000_000)).unwrap_or(0);
    Time(Timestamp::from_second(secs).unwrap_or(Timestamp::UNIX_EPOCH))
}

/// GenerateEventName: `<name>.<hex unix nanos>`, or a random UUID when that is not a
/// valid object name (too long for a DNS subdomain).
pub fn event_name(object: &str, t: SystemTime) -> String {
    let name = format!("{object}.{:x}", unix_nanos(t).max(0));
    if is_dns_subdomain(&name) {
        name
    } else {
        random_uuid()
    }
}

fn is_dns_subdomain(s: &str) -> bool {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.';
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    !s.is_empty()
        && s.len() <= 253
        && s.chars().all(ok_char)
        && alnum(s.chars().next())
        && alnum(s.chars().last())
}

/// A version 4 UUID.
fn random_uuid() -> String {
    let mut b = [0u8; 16];
    if getrandom::fill(&mut b).is_err() {
        // No randomness: the clock still makes a name unique enough for one node.
        let n = unix_nanos(SystemTime::now()).to_be_bytes();
        b.copy_from_slice(&n);
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubelet::events::EventKind;
    use std::time::Duration;

    #[test]
    fn node_event_goes_to_default_with_source_and_reporting_fields() {
        let mut ev = Event::node("n1", EventKind::Normal, "NodeReady", "ready".into());
        ev.time = UNIX_EPOCH + Duration::from_nanos(0x1234_5678_9abc);
        let e = make_event(&ev, COMPONENT, "n1");
        assert_eq!(e.metadata.name.as_deref(), Some("n1.123456789abc"));
        assert_eq!(e.metadata.namespace.as_deref(), Some("default"));
        assert_eq!(e.involved_object.kind.as_deref(), Some("Node"));
        assert_eq!(e.involved_object.uid.as_deref(), Some("n1"));
        assert_eq!(e.involved_object.api_version.as_deref(), Some("v1"));
        assert_eq!(e.involved_object.namespace, None);
        let src = e.source.unwrap_or_default();
        assert_eq!(
            (src.component.as_deref(), src.host.as_deref()),
            (Some("kubelet"), Some("n1"))
        );
        assert_eq!(e.reporting_component.as_deref(), Some("kubelet"));
        assert_eq!(e.reporting_instance.as_deref(), Some("n1"));
        assert_eq!((e.count, e.type_.as_deref()), (Some(1), Some("Normal")));
    }

    #[test]
    fn an_invalid_name_becomes_a_uuid() {
        let long = "a".repeat(250);
        let n = event_name(&long, SystemTime::now());
        assert_eq!(n.len(), 36);
        assert_eq!(n.as_bytes()[14], b'4');
        assert!(event_name("web-1", SystemTime::now()).starts_with("web-1."));
    }
}
