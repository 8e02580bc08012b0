//! Idempotency keys: recent `request_id`s and what their command produced, so a retry
//! gets the first result instead of applying twice, whoever wrote in between.
//!
//! Entries expire after [`RETENTION_MS`] of leader-stamped time, far longer than any
//! client keeps retrying one call. Expiry uses the largest stamp applied so far, so it is
//! the same on every replica even if a new leader's clock is behind the old one's.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::command::Command;
use crate::event::Event;

/// How long a request id is remembered: two minutes of leader-stamped time.
pub const RETENTION_MS: i64 = 2 * 60 * 1000;

/// What a request produced the first time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// When it was first applied, by the state machine's clock; the record expires [`RETENTION_MS`]
    /// later.
    pub at_ms: i64,
    /// The command as first applied; a retry must carry the same one.
    pub command: Command,
    /// The events it produced, returned again to a retry.
    pub events: Vec<Event>,
}

/// Recent request ids, with an index by time for expiry. Serialized as its records alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestLog {
    by_id: BTreeMap<String, RequestRecord>,
    by_time: BTreeSet<(i64, String)>,
}

impl RequestLog {
    /// The record of `request_id`, even if it is past the retention window and not yet expired.
    pub fn get(&self, request_id: &str) -> Option<&RequestRecord> {
        self.by_id.get(request_id)
    }

    /// The record of `request_id` if it is still within the retention window at `now_ms`,
    /// whether or not [`expire`](Self::expire) has run for that time yet.
    pub fn live(&self, request_id: &str, now_ms: i64) -> Option<&RequestRecord> {
        let cutoff = now_ms.saturating_sub(RETENTION_MS);
        self.get(request_id).filter(|record| record.at_ms >= cutoff)
    }

    /// Remembers what `request_id` produced, replacing an earlier record of the same id.
    pub fn record(&mut self, request_id: &str, record: RequestRecord) {
        self.by_time.insert((record.at_ms, request_id.to_owned()));
        if let Some(old) = self.by_id.insert(request_id.to_owned(), record) {
            self.by_time.remove(&(old.at_ms, request_id.to_owned()));
        }
    }

    /// Forgets requests stamped before `now_ms - RETENTION_MS`.
    pub fn expire(&mut self, now_ms: i64) {
        let cutoff = now_ms.saturating_sub(RETENTION_MS);
        while let Some((at, _)) = self.by_time.first() {
            if *at >= cutoff {
                break;
            }
            if let Some((_, id)) = self.by_time.pop_first() {
                self.by_id.remove(&id);
            }
        }
    }

    /// Keeps only the records `keep` accepts.
    pub fn retain(&mut self, mut keep: impl FnMut(&str, &RequestRecord) -> bool) {
        self.by_id.retain(|id, record| keep(id, record));
        let by_id = &self.by_id;
        self.by_time.retain(|(_, id)| by_id.contains_key(id));
    }

    /// How many request ids are remembered.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether no request id is remembered.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// The records, for serialization.
    pub fn records(&self) -> &BTreeMap<String, RequestRecord> {
        &self.by_id
    }

    /// Rebuilds the log, time index included, from its serialized records.
    pub fn from_records(records: BTreeMap<String, RequestRecord>) -> Self {
        let by_time = records
            .iter()
            .map(|(id, r)| (r.at_ms, id.clone()))
            .collect();
        Self {
            by_id: records,
            by_time,
        }
    }
}

impl Serialize for RequestLog {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.by_id.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for RequestLog {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        BTreeMap::deserialize(deserializer).map(Self::from_records)
    }
}
