use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};

use super::*;
use crate::kubelet::events::make::{COMPONENT, make_event};
use crate::kubelet::events::{Event, EventKind};

fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

fn pod(name: &str) -> Pod {
    let mut p = Pod::default();
    p.metadata.name = Some(name.into());
    p.metadata.namespace = Some("ns".into());
    p.metadata.uid = Some(format!("uid-{name}"));
    p.spec = Some(PodSpec {
        containers: vec![Container {
            name: "app".into(),
            ..Default::default()
        }],
        ..Default::default()
    });
    p
}

fn ev(pod_name: &str, reason: &str, message: &str, at: SystemTime) -> CoreEvent {
    let mut e = Event::pod(
        &pod(pod_name),
        Some("app"),
        EventKind::Warning,
        reason,
        message.into(),
    );
    e.time = at;
    make_event(&e, COMPONENT, "node-1")
}

/// What the server would return after a create or patch.
fn written(mut e: CoreEvent, rv: &str) -> CoreEvent {
    e.metadata.resource_version = Some(rv.into());
    e
}

#[test]
fn a_new_event_is_created_as_is() {
    let mut c = Correlator::new();
    let e = ev(
        "web",
        "BackOff",
        "Back-off restarting failed container",
        t0(),
    );
    let r = c.correlate(e.clone(), t0());
    assert_eq!(
        r,
        Some(Correlated {
            event: e,
            patch: None
        })
    );
}

#[test]
fn an_identical_event_patches_the_first_with_count_and_last_timestamp() {
    let mut c = Correlator::new();
    let first = ev("web", "BackOff", "Back-off", t0());
    let r = c.correlate(first.clone(), t0()).expect("not filtered");
    c.update_state(&written(r.event.clone(), "10"));

    let later = t0() + Duration::from_secs(30);
    let second = ev("web", "BackOff", "Back-off", later);
    assert_ne!(second.metadata.name, first.metadata.name);
    let r = c.correlate(second, later).expect("not filtered");
    assert_eq!(
        r.event.metadata.name, first.metadata.name,
        "patches the first Event"
    );
    assert_eq!(r.event.metadata.resource_version.as_deref(), Some("10"));
    assert_eq!(r.event.count, Some(2));
    assert_eq!(r.event.first_timestamp, first.first_timestamp);
    let patch = r.patch.expect("a patch");
    assert_eq!(patch["count"], 2);
    assert_eq!(patch["message"], "Back-off");
    assert_eq!(
        patch["lastTimestamp"],
        serde_json::to_value(api_time(later)).unwrap_or_default()
    );
    assert_eq!(patch.as_object().map(|o| o.len()), Some(3));

    c.update_state(&written(r.event.clone(), "11"));
    let third = c
        .correlate(ev("web", "BackOff", "Back-off", later), later)
        .expect("kept");
    assert_eq!(third.event.count, Some(3));
    assert_eq!(third.event.metadata.resource_version.as_deref(), Some("11"));
}

#[test]
fn a_different_message_is_a_new_event() {
    let mut c = Correlator::new();
    let r = c
        .correlate(ev("web", "Failed", "one", t0()), t0())
        .expect("kept");
    c.update_state(&r.event);
    let r = c
        .correlate(ev("web", "Failed", "two", t0()), t0())
        .expect("kept");
    assert_eq!((r.event.count, r.patch), (Some(1), None));
}

#[test]
fn ten_similar_events_within_ten_minutes_aggregate() {
    let mut c = Correlator::new();
    let mut at = t0();
    for i in 0..9 {
        let r = c
            .correlate(ev("web", "Failed", &format!("msg {i}"), at), at)
            .expect("kept");
        assert_eq!(
            r.event.message.as_deref(),
            Some(format!("msg {i}").as_str())
        );
        c.update_state(&r.event);
        at += Duration::from_secs(10);
    }
    // The tenth distinct message: one combined event under a new name.
    let r = c
        .correlate(ev("web", "Failed", "msg 9", at), at)
        .expect("kept");
    assert_eq!(
        r.event.message.as_deref(),
        Some("(combined from similar events): msg 9")
    );
    assert_eq!((r.event.count, r.patch.is_none()), (Some(1), true));
    assert_eq!(r.event.reason.as_deref(), Some("Failed"));
    assert_eq!(r.event.metadata.namespace.as_deref(), Some("ns"));
    let combined_name = r.event.metadata.name.clone();
    assert!(
        combined_name
            .as_deref()
            .is_some_and(|n| n.starts_with("web."))
    );
    c.update_state(&r.event);

    // The next one patches that combined event, whatever its message.
    at += Duration::from_secs(10);
    let r = c
        .correlate(ev("web", "Failed", "msg 10", at), at)
        .expect("kept");
    assert_eq!(r.event.metadata.name, combined_name);
    assert_eq!(r.event.count, Some(2));
    assert_eq!(
        r.patch.map(|p| p["message"].clone()),
        Some(serde_json::json!("(combined from similar events): msg 10"))
    );
}

#[test]
fn similar_events_spread_beyond_ten_minutes_do_not_aggregate() {
    let mut c = Correlator::new();
    let mut at = t0();
    for i in 0..12 {
        let r = c
            .correlate(ev("web", "Failed", &format!("msg {i}"), at), at)
            .expect("kept");
        assert_eq!(
            r.event.message.as_deref(),
            Some(format!("msg {i}").as_str())
        );
        // Each gap is longer than the aggregation interval.
        at += Duration::from_secs(601);
    }
}

#[test]
fn other_reasons_and_objects_aggregate_apart() {
    let mut c = Correlator::new();
    for i in 0..9 {
        c.correlate(ev("web", "Failed", &format!("a {i}"), t0()), t0());
        c.correlate(ev("db", "Failed", &format!("b {i}"), t0()), t0());
        c.correlate(ev("web", "BackOff", &format!("c {i}"), t0()), t0());
    }
    let r = c
        .correlate(ev("api", "Failed", "x", t0()), t0())
        .expect("kept");
    assert_eq!(r.event.message.as_deref(), Some("x"));
}

#[test]
fn spam_filter_allows_a_burst_of_25_then_one_per_five_minutes() {
    let mut c = Correlator::new();
    let mut kept = 0;
    for i in 0..40 {
        // Distinct reasons so neither dedupe nor aggregation hides the count.
        if c.correlate(ev("web", &format!("R{i}"), "m", t0()), t0())
            .is_some()
        {
            kept += 1;
        }
    }
    assert_eq!(kept, 25);
    // Another object has its own bucket.
    assert!(c.correlate(ev("db", "R0", "m", t0()), t0()).is_some());

    let soon = t0() + Duration::from_secs(299);
    assert!(c.correlate(ev("web", "S1", "m", soon), soon).is_none());
    let later = t0() + Duration::from_secs(300);
    assert!(c.correlate(ev("web", "S2", "m", later), later).is_some());
    assert!(c.correlate(ev("web", "S3", "m", later), later).is_none());
    let much_later = later + Duration::from_secs(3600);
    let mut kept = 0;
    for i in 0..20 {
        if c.correlate(ev("web", &format!("T{i}"), "m", much_later), much_later)
            .is_some()
        {
            kept += 1;
        }
    }
    assert_eq!(kept, 12, "an hour refills 12 tokens");
}

#[test]
fn spam_filter_counts_duplicates_too() {
    let mut c = Correlator::new();
    let mut kept = 0;
    for _ in 0..30 {
        if let Some(r) = c.correlate(ev("web", "BackOff", "same", t0()), t0()) {
            c.update_state(&r.event);
            kept += 1;
        }
    }
    assert_eq!(kept, 25);
}

#[test]
fn keys_follow_client_go() {
    let e = ev("web", "BackOff", "msg", t0());
    assert_eq!(
        event_key(&e),
        "kubeletnode-1Podnswebspec.containers{app}uid-webv1WarningBackOffmsg"
    );
    assert_eq!(spam_key(&e), "kubeletnode-1Podnswebuid-webv1");
}

#[test]
fn the_cache_forgets_the_least_recently_used() {
    let mut l: Lru<u32> = Lru::new(2);
    l.add("a".into(), 1);
    l.add("b".into(), 2);
    assert!(l.get_mut("a").is_some());
    l.add("c".into(), 3);
    assert!(l.get_mut("b").is_none());
    assert!(l.get_mut("a").is_some() && l.get_mut("c").is_some());
}

#[test]
fn after_aggregating_a_remembered_message_still_dedupes_on_its_own() {
    let mut c = Correlator::new();
    for i in 0..10 {
        if let Some(r) = c.correlate(ev("web", "Failed", &format!("msg {i}"), t0()), t0()) {
            c.update_state(&r.event);
        }
    }
    // The set kept nine of the ten messages; "msg 5" is one of them.
    let r = c
        .correlate(ev("web", "Failed", "msg 5", t0()), t0())
        .expect("kept");
    assert_eq!(r.event.message.as_deref(), Some("msg 5"));
    assert_eq!(r.event.count, Some(2));
}
