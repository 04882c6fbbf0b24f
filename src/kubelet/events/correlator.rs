//! client-go's EventCorrelator (tools/record/events_cache.go), pure and with the clock
//! passed in: what to send to the API for each new event.
//!
//! - Aggregation: events alike but for their message (same source, object, type,
//!   reason and reporting component) seen with 10 different messages within 10 minutes
//!   of each other become one event "(combined from similar events): <msg>".
//! - Dedupe: an event identical to one already written is a PATCH of that Event with
//!   count + 1, the new lastTimestamp and the message.
//! - Spam filter: a token bucket per source and object, 25 events at once, then one
//!   every 5 minutes; what is over is dropped.
//!
//! Every cache holds at most 4096 keys, the least recently used going first.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::Event as CoreEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::json;

use super::make::{api_time, event_name};

const MAX_LRU_CACHE_ENTRIES: usize = 4096;
const AGGREGATE_MAX_EVENTS: usize = 10;
const AGGREGATE_INTERVAL: Duration = Duration::from_secs(600);
const SPAM_BURST: f64 = 25.0;
const SPAM_QPS: f64 = 1.0 / 300.0;

fn s(o: &Option<String>) -> &str {
    o.as_deref().unwrap_or("")
}

fn source(e: &CoreEvent) -> (&str, &str) {
    e.source.as_ref().map_or(("", ""), |s| {
        (
            s.component.as_deref().unwrap_or(""),
            s.host.as_deref().unwrap_or(""),
        )
    })
}

/// getEventKey: source, object (with field path), type, reason and message.
pub fn event_key(e: &CoreEvent) -> String {
    let (component, host) = source(e);
    let o = &e.involved_object;
    [
        component,
        host,
        s(&o.kind),
        s(&o.namespace),
        s(&o.name),
        s(&o.field_path),
        s(&o.uid),
        s(&o.api_version),
        s(&e.type_),
        s(&e.reason),
        s(&e.message),
    ]
    .concat()
}

/// getSpamKey: source and object (without field path).
pub fn spam_key(e: &CoreEvent) -> String {
    let (component, host) = source(e);
    let o = &e.involved_object;
    [
        component,
        host,
        s(&o.kind),
        s(&o.namespace),
        s(&o.name),
        s(&o.uid),
        s(&o.api_version),
    ]
    .concat()
}

/// EventAggregatorByReasonFunc: (aggregate key, local key = the message).
fn aggregate_key(e: &CoreEvent) -> (String, String) {
    let (component, host) = source(e);
    let o = &e.involved_object;
    let key = [
        component,
        host,
        s(&o.kind),
        s(&o.namespace),
        s(&o.name),
        s(&o.uid),
        s(&o.api_version),
        s(&e.type_),
        s(&e.reason),
        s(&e.reporting_component),
        s(&e.reporting_instance),
    ]
    .concat();
    (key, s(&e.message).to_string())
}

/// A least-recently-used map of bounded size (groupcache's lru.Cache).
#[derive(Debug)]
struct Lru<V> {
    cap: usize,
    tick: u64,
    map: HashMap<String, (u64, V)>,
    order: BTreeMap<u64, String>,
}

impl<V> Lru<V> {
    fn new(cap: usize) -> Self {
        Lru {
            cap,
            tick: 0,
            map: HashMap::new(),
            order: BTreeMap::new(),
        }
    }

    fn touch(&mut self, key: &str) {
        if let Some((t, _)) = self.map.get_mut(key) {
            self.order.remove(t);
            self.tick += 1;
            *t = self.tick;
            self.order.insert(self.tick, key.to_string());
        }
    }

    fn get_mut(&mut self, key: &str) -> Option<&mut V> {
        self.touch(key);
        self.map.get_mut(key).map(|(_, v)| v)
    }

    fn add(&mut self, key: String, v: V) {
        if let Some((t, _)) = self.map.remove(&key) {
            self.order.remove(&t);
        }
        self.tick += 1;
        self.order.insert(self.tick, key.clone());
        self.map.insert(key, (self.tick, v));
        while self.map.len() > self.cap {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            self.map.remove(&oldest);
        }
    }
}

/// The token bucket of golang.org/x/time/rate as flowcontrol uses it: full at first.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: SystemTime,
}

impl Bucket {
    fn try_accept(&mut self, now: SystemTime) -> bool {
        // A clock that stepped back refills nothing.
        let elapsed = now.duration_since(self.last).unwrap_or_default();
        self.last = self.last.max(now);
        self.tokens = (self.tokens + elapsed.as_secs_f64() * SPAM_QPS).min(SPAM_BURST);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[derive(Debug)]
struct AggregateRecord {
    local_keys: BTreeSet<String>,
    last: SystemTime,
}

/// What the logger remembers of an Event written (eventLog).
#[derive(Debug, Clone, Default)]
struct EventLog {
    count: i32,
    first_timestamp: Option<Time>,
    name: String,
    resource_version: Option<String>,
}

/// What to do with one event.
#[derive(Debug, Clone, PartialEq)]
pub struct Correlated {
    /// The Event to create, or the one a patch applies to (its name and namespace).
    pub event: CoreEvent,
    /// A strategic merge patch for an Event already written (count > 1).
    pub patch: Option<serde_json::Value>,
}

/// The correlator's state: one per sink.
#[derive(Debug)]
pub struct Correlator {
    aggregates: Lru<AggregateRecord>,
    logs: Lru<EventLog>,
    spam: Lru<Bucket>,
}

impl Default for Correlator {
    fn default() -> Self {
        Self::new()
    }
}

impl Correlator {
    pub fn new() -> Self {
        Correlator {
            aggregates: Lru::new(MAX_LRU_CACHE_ENTRIES),
            logs: Lru::new(MAX_LRU_CACHE_ENTRIES),
            spam: Lru::new(MAX_LRU_CACHE_ENTRIES),
        }
    }

    /// EventCorrelate: the event (maybe aggregated, maybe a patch of an earlier one), or
    /// `None` when the spam filter drops it.
    pub fn correlate(&mut self, event: CoreEvent, now: SystemTime) -> Option<Correlated> {
        let (event, key) = self.aggregate(event, now);
        let observed = self.observe(event, key);
        if self.filtered(&observed.event, now) {
            return None;
        }
        Some(observed)
    }

    /// updateState: what the server returned, so the next duplicate patches it.
    pub fn update_state(&mut self, written: &CoreEvent) {
        self.logs.add(
            event_key(written),
            EventLog {
                count: written.count.unwrap_or(1),
                first_timestamp: written.first_timestamp.clone(),
                name: written.metadata.name.clone().unwrap_or_default(),
                resource_version: written.metadata.resource_version.clone(),
            },
        );
    }

    /// EventAggregate: the event as it is, keyed by its full key, or once the tenth
    /// distinct message arrives, a new aggregate event keyed by the aggregate key.
    fn aggregate(&mut self, event: CoreEvent, now: SystemTime) -> (CoreEvent, String) {
        let full = event_key(&event);
        let (agg, local) = aggregate_key(&event);
        let fresh = || AggregateRecord {
            local_keys: BTreeSet::new(),
            last: now,
        };
        let mut record = match self.aggregates.get_mut(&agg) {
            Some(r) => std::mem::replace(r, fresh()),
            None => fresh(),
        };
        if now
            .duration_since(record.last)
            .is_ok_and(|d| d > AGGREGATE_INTERVAL)
        {
            record = fresh();
        }
        record.local_keys.insert(local);
        record.last = now;
        let len = record.local_keys.len();
        if len < AGGREGATE_MAX_EVENTS {
            self.aggregates.add(agg, record);
            return (event, full);
        }
        // Upstream pops one key from the set it just stored (a Go map is shared): the
        // set stays one below the maximum, so every further new message aggregates
        // again while a repeat of a remembered one does not.
        record.local_keys.pop_first();
        self.aggregates.add(agg.clone(), record);
        let t = api_time(now);
        let name = event_name(s(&event.involved_object.name), now);
        let combined = CoreEvent {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some(name),
                namespace: event.metadata.namespace.clone(),
                ..Default::default()
            },
            count: Some(1),
            first_timestamp: Some(t.clone()),
            last_timestamp: Some(t),
            involved_object: event.involved_object.clone(),
            message: Some(format!(
                "(combined from similar events): {}",
                s(&event.message)
            )),
            type_: event.type_.clone(),
            reason: event.reason.clone(),
            source: event.source.clone(),
            ..Default::default()
        };
        (combined, agg)
    }

    /// eventObserve: a repeat of a logged event takes its name, resourceVersion and
    /// firstTimestamp, one more count, and a patch.
    fn observe(&mut self, mut event: CoreEvent, key: String) -> Correlated {
        let last = self.logs.get_mut(&key).cloned().unwrap_or_default();
        let mut patch = None;
        if last.count > 0 {
            event.metadata.name = Some(last.name.clone());
            event.metadata.resource_version = last.resource_version.clone();
            event.first_timestamp = last.first_timestamp.clone();
            event.count = Some(last.count.saturating_add(1));
            // CreateTwoWayMergePatch against the same event with count, lastTimestamp
            // and message blanked: exactly those three fields.
            let mut p = json!({ "count": event.count, "lastTimestamp": event.last_timestamp });
            if let Some(m) = event.message.as_ref().filter(|m| !m.is_empty()) {
                p["message"] = json!(m);
            }
            patch = Some(p);
        }
        self.logs.add(
            key,
            EventLog {
                count: event.count.unwrap_or(1),
                first_timestamp: event.first_timestamp.clone(),
                name: event.metadata.name.clone().unwrap_or_default(),
                resource_version: event.metadata.resource_version.clone(),
            },
        );
        Correlated { event, patch }
    }

    /// EventSourceObjectSpamFilter.Filter: true when the event is dropped.
    fn filtered(&mut self, event: &CoreEvent, now: SystemTime) -> bool {
        let key = spam_key(event);
        if self.spam.get_mut(&key).is_none() {
            self.spam.add(
                key.clone(),
                Bucket {
                    tokens: SPAM_BURST,
                    last: now,
                },
            );
        }
        match self.spam.get_mut(&key) {
            Some(b) => !b.try_accept(now),
            None => false,
        }
    }
}

#[cfg(test)]
#[path = "correlator_tests.rs"]
mod tests;
