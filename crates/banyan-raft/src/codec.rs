//! Banyan's on-disk and on-wire binary encoding: one format-version byte, then postcard.
//!
//! Every log entry, snapshot and Raft RPC payload starts with the version byte, so a node
//! of the next release can still read what this one wrote during a rolling upgrade: a new
//! version adds a decoding arm here and keeps the old one. The golden files under
//! `tests/golden/vN/` hold each version's log entries, snapshot and RPC payloads; their
//! test fails when today's code can no longer read one of them.

use banyan_domain::{Contact, State};
use banyan_events::EventRecord;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::identity::ClusterIdentity;
use crate::parts::PartialCommands;

/// The format this build writes. Version 3 adds the principal to every command and
/// timeline step, and agents' token revocations. Version 2 (the whole contact-center
/// domain without principals) and version 1 (customers only) were never released, so they
/// are not read.
pub const FORMAT_VERSION: u8 = 3;

/// Why stored or received bytes could not be read: the node must not guess at a log entry or
/// snapshot it cannot decode.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// No bytes at all, not even the version byte.
    #[error("empty record")]
    Empty,
    /// Written by a format this build does not read (a newer release, or a never-released one).
    #[error("unknown format version {0} (this build reads version {FORMAT_VERSION})")]
    UnknownVersion(u8),
    /// The version byte is known but the postcard body does not decode as the expected type.
    #[error("malformed record: {0}")]
    Malformed(#[from] postcard::Error),
}

/// Encodes a log entry, snapshot or RPC payload in this build's format, version byte first.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = vec![FORMAT_VERSION];
    // Serializing plain data into a Vec cannot fail: postcard errors only on unsupported
    // serde features, which the encoded types do not use.
    postcard::to_io(value, &mut out).expect("postcard encoding of Banyan types");
    out
}

/// Reads what [`encode`] wrote, refusing bytes of a format version this build does not know.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    match bytes.split_first() {
        None => Err(CodecError::Empty),
        Some((&FORMAT_VERSION, body)) => Ok(postcard::from_bytes(body)?),
        Some((&version, _)) => Err(CodecError::UnknownVersion(version)),
    }
}

/// A snapshot: the domain state, then the cluster's identity, then the commands whose
/// parts are not all in. Each section after the domain state may be missing at the end (a
/// snapshot written before it existed) and then reads empty.
pub fn encode_snapshot(
    domain: &State,
    cluster: &ClusterIdentity,
    parts: &PartialCommands,
) -> Vec<u8> {
    let mut out = encode(domain);
    postcard::to_io(cluster, &mut out).expect("postcard encoding of Banyan types");
    postcard::to_io(parts, &mut out).expect("postcard encoding of Banyan types");
    out
}

/// Reads what [`encode_snapshot`] wrote, sections missing at the end read as empty.
pub fn decode_snapshot(
    bytes: &[u8],
) -> Result<(State, ClusterIdentity, PartialCommands), CodecError> {
    let whole = decode_sent_snapshot(bytes)?;
    Ok((whole.domain, whole.cluster, whole.parts))
}

/// A node sending its snapshot to another appends the finished contacts of its history
/// store and the events of its event log as two last sections, so a node that joins by
/// snapshot can answer for contacts that finished, and serve events applied, before it
/// joined. A node keeps only the sections before them: its own are in its stores, and a
/// restart does not read them again.
/// `events_from` is the first log index from which the sender's `events` are complete.
pub fn append_sent(
    snapshot: &mut Vec<u8>,
    history: &[Contact],
    events: &[EventRecord],
    events_from: u64,
) {
    if !history.is_empty() || !events.is_empty() {
        postcard::to_io(history, &mut *snapshot).expect("postcard encoding of Banyan types");
        postcard::to_io(&(events_from, events), &mut *snapshot)
            .expect("postcard encoding of Banyan types");
    }
}

/// A snapshot as another node sent it: its sections and the history appended to them.
pub struct SentSnapshot {
    /// The domain state.
    pub domain: State,
    /// The cluster's identity.
    pub cluster: ClusterIdentity,
    /// Commands in parts.
    pub parts: PartialCommands,
    /// The sender's history (empty if it sent none).
    pub history: Vec<Contact>,
    /// The sender's event log (empty if it sent none).
    pub events: Vec<EventRecord>,
    /// The first log index from which `events` are complete (0 if none were sent).
    pub events_from: u64,
    /// How many of the bytes are the snapshot itself, without the history: what the
    /// receiver stores.
    pub stored_len: usize,
}

/// Reads a snapshot with the history and events a sender may have appended ([`append_sent`]).
pub fn decode_sent_snapshot(bytes: &[u8]) -> Result<SentSnapshot, CodecError> {
    match bytes.split_first() {
        None => Err(CodecError::Empty),
        Some((&FORMAT_VERSION, body)) => {
            let (domain, rest) = postcard::take_from_bytes::<State>(body)?;
            let (cluster, rest) = section(rest)?;
            let (parts, rest) = section(rest)?;
            let stored_len = bytes.len() - rest.len();
            let (history, rest) = section(rest)?;
            let ((events_from, events), _) = section::<(u64, Vec<EventRecord>)>(rest)?;
            Ok(SentSnapshot {
                domain,
                cluster,
                parts,
                history,
                events,
                events_from,
                stored_len,
            })
        }
        Some((&version, _)) => Err(CodecError::UnknownVersion(version)),
    }
}

/// The next section of a snapshot, or an empty one at its end.
fn section<T: DeserializeOwned + Default>(bytes: &[u8]) -> Result<(T, &[u8]), CodecError> {
    if bytes.is_empty() {
        return Ok((T::default(), bytes));
    }
    Ok(postcard::take_from_bytes(bytes)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_unknown_versions() {
        let bytes = encode(&(7u64, "x".to_string()));
        assert_eq!(bytes[0], FORMAT_VERSION);
        assert_eq!(decode::<(u64, String)>(&bytes).unwrap(), (7, "x".into()));
        let mut future = bytes.clone();
        future[0] = FORMAT_VERSION + 1;
        assert!(matches!(
            decode::<(u64, String)>(&future),
            Err(CodecError::UnknownVersion(_))
        ));
        assert!(matches!(decode::<u64>(&[]), Err(CodecError::Empty)));
    }
}
