//! The object store: every object as JSON by resource, namespace and name, one global
//! resourceVersion counter (as etcd's revision), and a bounded event history that watches
//! resume from. Watchers are registered under the same lock as writes, so a watch never
//! misses or repeats an event between its replay and its live part.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::mpsc;

/// What happened to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One write, as kept in the history. `prev` is the object before it, so a watcher
/// with a selector can tell an object that stopped matching (sent as DELETED).
#[derive(Debug)]
pub struct Event {
    pub rv: u64,
    pub resource: String,
    pub kind: EventType,
    pub object: Value,
    pub prev: Option<Value>,
}

/// A resourceVersion older than what the history still holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too old resource version: {requested} ({oldest})")]
pub struct Expired {
    pub requested: u64,
    pub oldest: u64,
}

type Key = (String, String);

/// The store. Namespace is "" for cluster-scoped objects.
#[derive(Debug)]
pub struct Store {
    objects: HashMap<String, BTreeMap<Key, Value>>,
    rv: u64,
    history: VecDeque<Arc<Event>>,
    history_limit: usize,
    /// A watch may resume from any rv >= this one: every later event is in `history`.
    oldest: u64,
    watchers: Vec<(String, mpsc::UnboundedSender<Arc<Event>>)>,
}

impl Store {
    pub fn new(history_limit: usize) -> Self {
        Store {
            objects: HashMap::new(),
            rv: 1,
            history: VecDeque::new(),
            history_limit: history_limit.max(1),
            oldest: 1,
            watchers: Vec::new(),
        }
    }

    pub fn current_rv(&self) -> u64 {
        self.rv
    }

    pub fn oldest_rv(&self) -> u64 {
        self.oldest
    }

    pub fn get(&self, resource: &str, ns: &str, name: &str) -> Option<&Value> {
        self.objects
            .get(resource)?
            .get(&(ns.to_string(), name.to_string()))
    }

    /// Every object of a resource, in one namespace or all, ordered by namespace and name.
    pub fn list(&self, resource: &str, ns: Option<&str>) -> Vec<Value> {
        let Some(objs) = self.objects.get(resource) else {
            return Vec::new();
        };
        objs.iter()
            .filter(|((n, _), _)| ns.is_none_or(|want| want == n))
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// The objects of a resource as they were at `rv`, rebuilt by undoing the later events
    /// of the history; Err when the history no longer reaches back that far.
    pub fn list_at(
        &self,
        resource: &str,
        ns: Option<&str>,
        rv: u64,
    ) -> Result<Vec<Value>, Expired> {
        if rv < self.oldest {
            return Err(Expired {
                requested: rv,
                oldest: self.oldest,
            });
        }
        let mut objs = self.objects.get(resource).cloned().unwrap_or_default();
        for e in self.history.iter().rev().take_while(|e| e.rv > rv) {
            if e.resource != resource {
                continue;
            }
            let key = |o: &Value| {
                let s = |p: &str| {
                    o.pointer(p)
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string()
                };
                (s("/metadata/namespace"), s("/metadata/name"))
            };
            match (&e.kind, &e.prev) {
                (EventType::Added, _) => {
                    objs.remove(&key(&e.object));
                }
                (_, Some(prev)) => {
                    objs.insert(key(prev), prev.clone());
                }
                (_, None) => {}
            }
        }
        Ok(objs
            .into_iter()
            .filter(|((n, _), _)| ns.is_none_or(|want| want == n))
            .map(|(_, v)| v)
            .collect())
    }

    /// Writes `object` (created or replaced) with a new resourceVersion; returns it as stored.
    pub fn put(&mut self, resource: &str, ns: &str, name: &str, mut object: Value) -> Value {
        self.rv += 1;
        let rv = self.rv;
        if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("resourceVersion".into(), Value::String(rv.to_string()));
        }
        let key = (ns.to_string(), name.to_string());
        let prev = self
            .objects
            .entry(resource.to_string())
            .or_default()
            .insert(key, object.clone());
        let kind = if prev.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        self.record(resource, kind, object.clone(), prev);
        object
    }

    /// Removes an object; the DELETED event carries it with the deletion's resourceVersion.
    pub fn remove(&mut self, resource: &str, ns: &str, name: &str) -> Option<Value> {
        let key = (ns.to_string(), name.to_string());
        let mut object = self.objects.get_mut(resource)?.remove(&key)?;
        self.rv += 1;
        let prev = object.clone();
        if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("resourceVersion".into(), Value::String(self.rv.to_string()));
        }
        self.record(resource, EventType::Deleted, object.clone(), Some(prev));
        Some(object)
    }

    fn record(&mut self, resource: &str, kind: EventType, object: Value, prev: Option<Value>) {
        let ev = Arc::new(Event {
            rv: self.rv,
            resource: resource.to_string(),
            kind,
            object,
            prev,
        });
        self.history.push_back(ev.clone());
        while self.history.len() > self.history_limit {
            if let Some(dropped) = self.history.pop_front() {
                self.oldest = dropped.rv;
            }
        }
        self.watchers
            .retain(|(res, tx)| res != resource || tx.send(ev.clone()).is_ok());
    }

    /// Registers a watcher of `resource`: the events after `from` still in the history (none
    /// when `from` is None), then every later one through the receiver.
    pub fn watch(
        &mut self,
        resource: &str,
        from: Option<u64>,
    ) -> Result<(Vec<Arc<Event>>, mpsc::UnboundedReceiver<Arc<Event>>), Expired> {
        let replay = match from {
            Some(rv) if rv < self.oldest => {
                return Err(Expired {
                    requested: rv,
                    oldest: self.oldest,
                });
            }
            Some(rv) => self
                .history
                .iter()
                .filter(|e| e.rv > rv && e.resource == resource)
                .cloned()
                .collect(),
            None => Vec::new(),
        };
        let (tx, rx) = mpsc::unbounded_channel();
        self.watchers.push((resource.to_string(), tx));
        Ok((replay, rx))
    }

    /// Drops the whole history: a watch or exact list from an earlier rv gets 410.
    pub fn compact(&mut self) {
        self.history.clear();
        self.oldest = self.rv;
    }

    /// Ends every watch (their streams see the channel close).
    pub fn drop_watchers(&mut self) {
        self.watchers.clear();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn rv_grows_and_history_bounds_resume() {
        let mut s = Store::new(2);
        let a = s.put("pods", "ns", "a", json!({"metadata": {"name": "a"}}));
        assert_eq!(a["metadata"]["resourceVersion"], "2");
        s.put(
            "pods",
            "ns",
            "a",
            json!({"metadata": {"name": "a"}, "x": 1}),
        );
        s.put("pods", "ns", "b", json!({"metadata": {"name": "b"}}));
        assert!(s.watch("pods", Some(1)).is_err());
        assert_eq!(s.watch("pods", Some(2)).unwrap().0.len(), 2);
        let (replay, _rx) = s.watch("pods", Some(3)).unwrap();
        assert_eq!(replay.len(), 1);
        assert_eq!(replay[0].kind, EventType::Added);
        s.compact();
        assert!(s.watch("pods", Some(3)).is_err());
        assert!(s.watch("pods", Some(4)).is_ok());
    }

    #[test]
    fn delete_event_carries_new_rv() {
        let mut s = Store::new(10);
        s.put("cm", "ns", "a", json!({"metadata": {"name": "a"}}));
        let (_, mut rx) = s.watch("cm", None).unwrap();
        let gone = s.remove("cm", "ns", "a").unwrap();
        assert_eq!(gone["metadata"]["resourceVersion"], "3");
        assert_eq!(rx.try_recv().unwrap().kind, EventType::Deleted);
    }
}
