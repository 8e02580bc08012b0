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
///
/// The appended part ends with its length and [`SENT_MARK`], so the receiver finds it from
/// the end: a stored snapshot written before its identity or parts sections existed keeps
/// reading as it did, without the history being taken for those sections.
pub fn append_sent(
    snapshot: &mut Vec<u8>,
    history: &[Contact],
    events: &[EventRecord],
    events_from: u64,
) {
    if !history.is_empty() || !events.is_empty() {
        let start = snapshot.len();
        postcard::to_io(&(history, events_from, events), &mut *snapshot)
            .expect("postcard encoding of Banyan types");
        let appended = (snapshot.len() - start) as u64;
        snapshot.extend_from_slice(&appended.to_be_bytes());
        snapshot.extend_from_slice(SENT_MARK);
    }
}

/// What ends the part a sender appends to a snapshot ([`append_sent`]).
pub const SENT_MARK: &[u8; 8] = b"BNYSENT1";

/// The appended part of a sent snapshot, if it ends with one: its bytes, and where the
/// stored snapshot before it ends.
fn sent_part(bytes: &[u8]) -> Option<(&[u8], usize)> {
    let body_end = bytes.len().checked_sub(SENT_MARK.len() + 8)?;
    if &bytes[body_end + 8..] != SENT_MARK {
        return None;
    }
    let len: [u8; 8] = bytes[body_end..body_end + 8].try_into().ok()?;
    let len = usize::try_from(u64::from_be_bytes(len)).ok()?;
    let start = body_end.checked_sub(len)?;
    // The stored snapshot keeps at least its version byte.
    (start >= 1).then(|| (&bytes[start..body_end], start))
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
        Some((&FORMAT_VERSION, _)) => {
            type Sent = (Vec<Contact>, u64, Vec<EventRecord>);
            // The appended part, if its mark is there and it decodes whole.
            let appended = sent_part(bytes).and_then(|(part, start)| {
                let (sent, rest) = postcard::take_from_bytes::<Sent>(part).ok()?;
                rest.is_empty().then_some((sent, start))
            });
            let ((history, events_from, events), stored_len) =
                appended.unwrap_or_else(|| (Sent::default(), bytes.len()));
            let (domain, rest) = postcard::take_from_bytes::<State>(&bytes[1..stored_len])?;
            let (cluster, rest) = section(rest)?;
            let (parts, _) = section(rest)?;
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

    /// Regression: the sent history followed the stored sections by position, so a stored
    /// snapshot written before its identity and parts sections existed had the history
    /// read as its identity when sent. The appended part is found from its end mark.
    #[test]
    fn a_sent_snapshot_of_an_older_stored_one_keeps_its_sections_apart() {
        let contact = {
            let mut state = State::default();
            let input = banyan_domain::ContactInput {
                id: "c-1".into(),
                channel: banyan_domain::Channel::Chat,
                self_served: true,
                ..Default::default()
            };
            let command = banyan_domain::Command::new(banyan_domain::Action::CreateContact(input));
            state
                .apply(&banyan_domain::Stamped { at_ms: 5, command })
                .unwrap();
            state.contact("c-1").unwrap().clone()
        };
        // Stored before the identity existed: the domain state alone.
        let older = encode(&State::default());
        let whole = encode_snapshot(
            &State::default(),
            &ClusterIdentity::default(),
            &PartialCommands::default(),
        );
        for stored in [older, whole] {
            let mut sent = stored.clone();
            append_sent(&mut sent, std::slice::from_ref(&contact), &[], 7);
            let read = decode_sent_snapshot(&sent).unwrap();
            assert_eq!(read.stored_len, stored.len());
            assert_eq!(read.history, std::slice::from_ref(&contact));
            assert_eq!(read.events_from, 7);
            assert_eq!(read.cluster, ClusterIdentity::default());
            // And unsent, the stored one reads as it always did.
            assert!(decode_sent_snapshot(&stored).unwrap().history.is_empty());
        }
    }

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
