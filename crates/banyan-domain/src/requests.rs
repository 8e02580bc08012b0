//! Idempotency keys: recent `request_id`s and what their command produced, so a retry
//! gets the first result instead of applying twice, whoever wrote in between.
//!
//! Entries expire after [`RETENTION_MS`] of leader-stamped time, far longer than any
//! client keeps retrying one call. Expiry uses the largest stamp applied so far, so it is
//! the same on every replica even if a new leader's clock is behind the old one's.
//!
//! The log is also bounded by bytes ([`MAX_BYTES`], counted as each record's encoded
//! size): past it the oldest records go early, and are counted. A retry of one of those
//! within the time window would apply anew, so the bound is far above what a busy
//! center's two minutes of writes hold; it exists so that a burst of huge commands
//! cannot take a node's memory.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::command::Command;
use crate::event::Event;

/// How long a request id is remembered: two minutes of leader-stamped time.
pub const RETENTION_MS: i64 = 2 * 60 * 1000;
/// The most bytes of records the log holds (their encoded size).
pub const MAX_BYTES: usize = 128 << 20;

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
#[derive(Debug, Clone, Default)]
pub struct RequestLog {
    by_id: BTreeMap<String, RequestRecord>,
    by_time: BTreeSet<(i64, String)>,
    /// The encoded size of the records and their ids.
    bytes: usize,
    /// Records let go before their time because of [`MAX_BYTES`], since this log was
    /// loaded.
    evicted_early: u64,
}

/// Two logs are equal when they remember the same requests.
impl PartialEq for RequestLog {
    fn eq(&self, other: &Self) -> bool {
        self.by_id == other.by_id
    }
}

impl Eq for RequestLog {}

fn record_bytes(id: &str, record: &RequestRecord) -> usize {
    crate::size::encoded_len(id) + crate::size::encoded_len(record)
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

    /// Remembers what `request_id` produced, replacing an earlier record of the same id;
    /// past [`MAX_BYTES`] the oldest records go.
    pub fn record(&mut self, request_id: &str, record: RequestRecord) {
        self.bytes += record_bytes(request_id, &record);
        self.by_time.insert((record.at_ms, request_id.to_owned()));
        if let Some(old) = self.by_id.insert(request_id.to_owned(), record) {
            self.bytes = self.bytes.saturating_sub(record_bytes(request_id, &old));
            self.by_time.remove(&(old.at_ms, request_id.to_owned()));
        }
        while self.bytes > MAX_BYTES && self.by_id.len() > 1 {
            if self.pop_oldest().is_some() {
                self.evicted_early += 1;
            }
        }
    }

    /// Takes the oldest record out.
    fn pop_oldest(&mut self) -> Option<RequestRecord> {
        let (_, id) = self.by_time.pop_first()?;
        let record = self.by_id.remove(&id)?;
        self.bytes = self.bytes.saturating_sub(record_bytes(&id, &record));
        Some(record)
    }

    /// Forgets requests stamped before `now_ms - RETENTION_MS`.
    pub fn expire(&mut self, now_ms: i64) {
        let cutoff = now_ms.saturating_sub(RETENTION_MS);
        while let Some((at, _)) = self.by_time.first() {
            if *at >= cutoff {
                break;
            }
            self.pop_oldest();
        }
    }

    /// Keeps only the records `keep` accepts.
    pub fn retain(&mut self, mut keep: impl FnMut(&str, &RequestRecord) -> bool) {
        self.by_id.retain(|id, record| keep(id, record));
        let by_id = &self.by_id;
        self.by_time.retain(|(_, id)| by_id.contains_key(id));
        self.bytes = by_id.iter().map(|(id, r)| record_bytes(id, r)).sum();
    }

    /// The encoded size of what the log holds.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Records let go before their two minutes because the log was full, since it was
    /// loaded.
    pub fn evicted_early(&self) -> u64 {
        self.evicted_early
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
        let bytes = records.iter().map(|(id, r)| record_bytes(id, r)).sum();
        Self {
            by_id: records,
            by_time,
            bytes,
            evicted_early: 0,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::Action;
    use crate::customer::CustomerInput;

    fn big(at_ms: i64, megabytes: usize) -> RequestRecord {
        RequestRecord {
            at_ms,
            command: Command::new(Action::UpsertCustomer(CustomerInput {
                id: "c".into(),
                name: "x".repeat(megabytes << 20),
                ..Default::default()
            })),
            events: Vec::new(),
        }
    }

    /// Regression: the log was bounded by time only, so two minutes of huge commands held
    /// any amount of memory on every replica. Past MAX_BYTES the oldest go, counted.
    #[test]
    fn the_log_is_bounded_by_bytes_as_well_as_time() {
        let mut log = RequestLog::default();
        for n in 0..5 {
            log.record(&format!("r{n}"), big(n, 40));
        }
        assert!(log.bytes() <= MAX_BYTES, "{} bytes", log.bytes());
        assert_eq!(log.len(), 3, "the two oldest went");
        assert_eq!(log.evicted_early(), 2);
        assert!(log.get("r0").is_none() && log.get("r4").is_some());
        // The size follows replacements, expiry and a reload.
        log.record("r4", big(5, 1));
        log.expire(4 + RETENTION_MS);
        assert_eq!(log.len(), 1);
        let reloaded = RequestLog::from_records(log.records().clone());
        assert_eq!(reloaded.bytes(), log.bytes());
        assert!(log.bytes() > 1 << 20 && log.bytes() < 2 << 20);
    }
}
