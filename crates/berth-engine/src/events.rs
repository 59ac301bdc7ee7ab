//! The daemon's event stream (`GET /events`, `docker events`, `docker stats`, compose).
//!
//! Every event is broadcast to live subscribers and kept in a ring of the last 256 (as
//! moby does) so `since` can replay recent history.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use serde::Serialize;
use tokio::sync::broadcast;

const KEEP: usize = 256;

/// One event, in the Engine API's shape (with the legacy `status`/`id`/`from` keys that
/// docker-compose 1.29 still reads).
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(rename = "Action")]
    pub action: String,
    #[serde(rename = "Actor")]
    pub actor: Actor,
    pub scope: String,
    pub time: i64,
    #[serde(rename = "timeNano")]
    pub time_nano: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Actor {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Attributes")]
    pub attributes: BTreeMap<String, String>,
}

/// Filters of `GET /events`, already parsed: key → accepted values.
pub type Filters = BTreeMap<String, Vec<String>>;

impl Event {
    /// Does the event pass `filters` (values of one key are alternatives, keys must all
    /// match)?
    pub fn matches(&self, filters: &Filters) -> bool {
        filters.iter().all(|(key, values)| {
            values.is_empty()
                || values.iter().any(|v| match key.as_str() {
                    "type" => self.kind == *v,
                    "event" => {
                        self.action == *v || self.action.split(':').next() == Some(v.as_str())
                    }
                    "container" => {
                        self.kind == "container"
                            && (self.actor.id.starts_with(v.as_str())
                                || self.actor.attributes.get("name") == Some(v))
                    }
                    "image" => {
                        self.actor.attributes.get("image") == Some(v)
                            || (self.kind == "image" && self.actor.id == *v)
                    }
                    "volume" => self.kind == "volume" && self.actor.id == *v,
                    "network" => self.kind == "network" && self.actor.id == *v,
                    "daemon" => self.kind == "daemon",
                    "scope" => self.scope == *v,
                    "label" => match v.split_once('=') {
                        Some((k, val)) => self.actor.attributes.get(k) == Some(&val.to_string()),
                        None => self.actor.attributes.contains_key(v.as_str()),
                    },
                    _ => true,
                })
        })
    }
}

/// The event bus.
pub struct Events {
    tx: broadcast::Sender<Event>,
    recent: Mutex<VecDeque<Event>>,
}

impl Default for Events {
    fn default() -> Self {
        Events::new()
    }
}

impl Events {
    pub fn new() -> Events {
        let (tx, _) = broadcast::channel(1024);
        Events {
            tx,
            recent: Mutex::new(VecDeque::with_capacity(KEEP)),
        }
    }

    /// Publish an event of `kind` (`container`, `image`, `volume`, `network`, `daemon`).
    pub fn emit(&self, kind: &str, action: &str, id: &str, attributes: BTreeMap<String, String>) {
        let now = chrono::Utc::now();
        let time_nano = now.timestamp_nanos_opt().unwrap_or_default();
        let legacy = matches!(kind, "container" | "image");
        let event = Event {
            status: legacy.then(|| action.to_owned()),
            id: legacy.then(|| id.to_owned()),
            from: (kind == "container")
                .then(|| attributes.get("image").cloned())
                .flatten(),
            kind: kind.to_owned(),
            action: action.to_owned(),
            actor: Actor {
                id: id.to_owned(),
                attributes,
            },
            scope: "local".into(),
            time: now.timestamp(),
            time_nano,
        };
        {
            let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
            if recent.len() == KEEP {
                recent.pop_front();
            }
            recent.push_back(event.clone());
        }
        let _ = self.tx.send(event);
    }

    /// Past events at or after `since_nanos`, and a receiver for what comes next.
    pub fn subscribe(&self, since_nanos: Option<i64>) -> (Vec<Event>, broadcast::Receiver<Event>) {
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        let rx = self.tx.subscribe();
        let past = match since_nanos {
            Some(s) => recent
                .iter()
                .filter(|e| e.time_nano >= s)
                .cloned()
                .collect(),
            None => Vec::new(),
        };
        (past, rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_and_replay() {
        let ev = Events::new();
        let mut attrs = BTreeMap::new();
        attrs.insert("name".to_string(), "web".to_string());
        attrs.insert("image".to_string(), "busybox".to_string());
        attrs.insert("a".to_string(), "b".to_string());
        ev.emit("container", "start", "abc123", attrs);
        let (past, _) = ev.subscribe(Some(0));
        assert_eq!(past.len(), 1);
        let e = &past[0];
        assert_eq!(e.status.as_deref(), Some("start"));
        assert_eq!(e.from.as_deref(), Some("busybox"));
        let f = |k: &str, v: &str| -> Filters {
            let mut m = Filters::new();
            m.insert(k.into(), vec![v.into()]);
            m
        };
        assert!(e.matches(&f("type", "container")));
        assert!(!e.matches(&f("type", "image")));
        assert!(e.matches(&f("container", "web")));
        assert!(e.matches(&f("container", "abc")));
        assert!(e.matches(&f("label", "a=b")));
        assert!(!e.matches(&f("label", "a=c")));
        assert!(e.matches(&f("event", "start")));
        let v = serde_json::to_value(e).unwrap();
        assert_eq!(v["Actor"]["Attributes"]["name"], "web");
        assert!(v["timeNano"].as_i64().unwrap() > 0);
    }
}
