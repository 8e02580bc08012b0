//! Commands too large for one log entry, applied once their last part is in.
//!
//! An entry must reach the followers within a heartbeat, so the leader's proposer cuts a
//! larger command (a branch's import after a long outage) into parts of at most
//! [`PART_BYTES`], each its own entry, proposed in order. Every replica keeps the parts
//! received so far here, in the replicated state (and in snapshots), and applies the whole
//! command when its last part arrives. A resend of the same command (its caller timed out,
//! or the leader changed) carries the same id: parts already in are skipped, so the whole
//! is applied once.

use std::collections::BTreeMap;

use banyan_domain::{CommandPart, DomainError, Stamped};
use serde::{Deserialize, Serialize};

use crate::codec;

/// The largest part; the rest of an entry's budget is for its envelope.
pub const PART_BYTES: usize = 256 * 1024;
/// The largest command accepted in parts (the forwarding limit is 64 MiB).
pub const MAX_WHOLE_BYTES: usize = 48 * 1024 * 1024;
/// Commands in parts at once; a new one past it drops the oldest.
pub const MAX_PENDING: usize = 4;
/// Commands in parts applied lately, remembered with their outcome: a part resent after
/// its command was whole answers as the command did.
pub const MAX_FINISHED: usize = 64;
/// A command whose next part has not come this long after its first is dropped.
pub const PENDING_FOR_MS: i64 = 10 * 60 * 1000;

/// One command's parts received so far.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Partial {
    /// How many parts the whole command was cut into.
    pub parts: u32,
    /// Parts 0..next, concatenated.
    pub bytes: Vec<u8>,
    /// The part expected next; parts are taken in order only.
    pub next: u32,
    /// The stamp of its first part.
    pub started_ms: i64,
}

/// Every command in parts not yet whole, by id. Deterministic: every replica holds the
/// same after the same entries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartialCommands {
    /// The commands with parts still to come, by the id their parts carry.
    pub pending: BTreeMap<String, Partial>,
    /// The last [`MAX_FINISHED`] commands made whole, oldest first, with the domain's
    /// answer (`Ok` or its refusal).
    pub finished: std::collections::VecDeque<(String, Result<(), DomainError>)>,
}

/// What a part brought.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// More parts are due (or the part was in already).
    More,
    /// The last part: the whole command, to apply, then to [`PartialCommands::finish`].
    Whole(Box<Stamped>),
    /// A part of a command applied already, and how the domain answered it then.
    Finished(Result<(), DomainError>),
}

impl PartialCommands {
    /// Takes one part stamped `at_ms`; `Err` for a part that does not fit what came
    /// before (a refused part is not kept). The whole command takes the last part's stamp.
    pub fn receive(&mut self, at_ms: i64, part: &CommandPart) -> Result<Received, DomainError> {
        self.pending
            .retain(|_, p| at_ms.saturating_sub(p.started_ms) <= PENDING_FOR_MS);
        if part.parts < 2 || part.part >= part.parts {
            return Err(DomainError::invalid(
                "part",
                format!(
                    "part {} of {} is not a part of a larger command",
                    part.part, part.parts
                ),
            ));
        }
        if part.bytes.is_empty() || part.bytes.len() > PART_BYTES {
            return Err(DomainError::invalid(
                "bytes",
                format!(
                    "a part holds 1 to {PART_BYTES} bytes, not {}",
                    part.bytes.len()
                ),
            ));
        }
        if part.id.is_empty() || part.id.len() > 256 {
            return Err(DomainError::invalid("id", "1 to 256 characters"));
        }
        if let Some((_, answer)) = self.finished.iter().find(|(id, _)| *id == part.id) {
            return Ok(Received::Finished(answer.clone()));
        }
        let next = self.pending.get(&part.id).map_or(0, |p| p.next);
        if let Some(pending) = self.pending.get(&part.id) {
            if pending.parts != part.parts {
                return Err(DomainError::precondition(
                    "parts",
                    format!(
                        "command {} comes in {} parts, not {}",
                        part.id, pending.parts, part.parts
                    ),
                ));
            }
        }
        if part.part < next {
            return Ok(Received::More);
        }
        if part.part > next {
            return Err(DomainError::precondition(
                "part",
                format!(
                    "part {} of command {} before part {next}",
                    part.part, part.id
                ),
            ));
        }
        if part.part == 0 {
            if self.pending.len() >= MAX_PENDING {
                let oldest = self
                    .pending
                    .iter()
                    .min_by_key(|(id, p)| (p.started_ms, (*id).clone()))
                    .map(|(id, _)| id.clone());
                if let Some(oldest) = oldest {
                    self.pending.remove(&oldest);
                }
            }
            self.pending.insert(
                part.id.clone(),
                Partial {
                    parts: part.parts,
                    bytes: Vec::new(),
                    next: 0,
                    started_ms: at_ms,
                },
            );
        }
        let Some(pending) = self.pending.get_mut(&part.id) else {
            return Ok(Received::More);
        };
        if pending.bytes.len().saturating_add(part.bytes.len()) > MAX_WHOLE_BYTES {
            self.pending.remove(&part.id);
            return Err(DomainError::invalid(
                "bytes",
                format!("command {} is larger than {MAX_WHOLE_BYTES} bytes", part.id),
            ));
        }
        pending.bytes.extend_from_slice(&part.bytes);
        pending.next += 1;
        if pending.next < pending.parts {
            return Ok(Received::More);
        }
        let whole = self
            .pending
            .remove(&part.id)
            .map(|p| p.bytes)
            .unwrap_or_default();
        let refusal = match codec::decode::<banyan_domain::Command>(&whole) {
            Ok(command) if !matches!(command.action, banyan_domain::Action::Part(_)) => {
                return Ok(Received::Whole(Box::new(Stamped { at_ms, command })));
            }
            Ok(_) => DomainError::invalid("bytes", "a command in parts cannot be parts itself"),
            Err(e) => {
                DomainError::invalid("bytes", format!("command {} does not decode: {e}", part.id))
            }
        };
        self.finish(&part.id, Err(refusal.clone()));
        Err(refusal)
    }

    /// Remembers how the domain answered the whole command `id`.
    pub fn finish(&mut self, id: &str, answer: Result<(), DomainError>) {
        if self.finished.len() >= MAX_FINISHED {
            self.finished.pop_front();
        }
        self.finished.push_back((id.to_owned(), answer));
    }
}

/// Cuts `command` into parts under `id`: its command, not its stamp (the whole takes its
/// last part's). Its principal rides on every part (the leader checked it for the whole).
pub fn split(command: &Stamped, id: &str) -> Vec<Stamped> {
    let bytes = codec::encode(&command.command);
    let chunks: Vec<&[u8]> = bytes.chunks(PART_BYTES).collect();
    let parts = chunks.len() as u32;
    chunks
        .into_iter()
        .enumerate()
        .map(|(i, chunk)| Stamped {
            at_ms: command.at_ms,
            command: banyan_domain::Command {
                request_id: None,
                action: banyan_domain::Action::Part(CommandPart {
                    id: id.to_owned(),
                    part: i as u32,
                    parts,
                    bytes: chunk.to_vec(),
                }),
                principal: command.command.principal.clone(),
            },
        })
        .collect()
}

/// The id of `command`'s parts: its request id and a digest of its bytes, so the same
/// command resent continues and another one never mixes with it.
pub fn part_id(command: &Stamped) -> String {
    let bytes = codec::encode(&command.command);
    // FNV-1a: stable across builds and platforms, enough to tell commands apart.
    let digest = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!(
        "{}#{digest:016x}",
        command.command.request_id.as_deref().unwrap_or("")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use banyan_domain::{Action, Command, CustomerInput};

    fn big() -> Stamped {
        Stamped {
            at_ms: 1_000,
            command: Command::with_request_id(
                Action::UpsertCustomer(CustomerInput {
                    id: "c-1".into(),
                    name: "x".repeat(2 * PART_BYTES + 10),
                    ..Default::default()
                }),
                Some("r-1".into()),
            ),
        }
    }

    fn part_of(s: &Stamped) -> &CommandPart {
        match &s.command.action {
            Action::Part(p) => p,
            _ => panic!("not a part"),
        }
    }

    #[test]
    fn parts_in_order_give_the_whole_once_and_resends_are_skipped() {
        let whole = big();
        let parts = split(&whole, &part_id(&whole));
        assert_eq!(parts.len(), 3);
        let mut pending = PartialCommands::default();
        assert_eq!(
            pending.receive(1_000, part_of(&parts[0])).unwrap(),
            Received::More
        );
        // The same part again (a resend after a timeout) is skipped.
        assert_eq!(
            pending.receive(1_001, part_of(&parts[0])).unwrap(),
            Received::More
        );
        // A gap is refused and changes nothing.
        let before = pending.clone();
        assert!(pending.receive(1_002, part_of(&parts[2])).is_err());
        assert_eq!(pending, before);
        assert_eq!(
            pending.receive(1_003, part_of(&parts[1])).unwrap(),
            Received::More
        );
        // The whole takes the last part's stamp.
        let mut stamped = whole.clone();
        stamped.at_ms = 1_004;
        assert_eq!(
            pending.receive(1_004, part_of(&parts[2])).unwrap(),
            Received::Whole(Box::new(stamped))
        );
        assert!(pending.pending.is_empty());
        // Resent once whole (its answer was lost), a part answers as the command did.
        pending.finish(&part_of(&parts[2]).id, Ok(()));
        for part in &parts {
            assert_eq!(
                pending.receive(1_005, part_of(part)).unwrap(),
                Received::Finished(Ok(()))
            );
        }
        assert!(pending.pending.is_empty(), "not started again");
    }

    #[test]
    fn stale_and_surplus_commands_in_parts_are_dropped() {
        let mut pending = PartialCommands::default();
        for n in 0..(MAX_PENDING + 2) {
            let mut whole = big();
            whole.command.request_id = Some(format!("r-{n}"));
            let parts = split(&whole, &part_id(&whole));
            pending.receive(n as i64, part_of(&parts[0])).unwrap();
        }
        assert_eq!(pending.pending.len(), MAX_PENDING);
        let whole = big();
        let parts = split(&whole, &part_id(&whole));
        pending
            .receive(PENDING_FOR_MS * 2, part_of(&parts[0]))
            .unwrap();
        assert_eq!(pending.pending.len(), 1, "the stale ones are gone");
    }

    /// Through the state machine: parts in separate entries, one of them twice, a
    /// snapshot between them; the whole reaches the domain when its last part is in (the
    /// cluster test t88 shows a real import landing once this way).
    #[tokio::test]
    async fn the_state_machine_applies_a_command_in_parts_once() {
        use openraft::storage::RaftStateMachine;
        use openraft::{CommittedLeaderId, EntryPayload, RaftSnapshotBuilder};

        let dir = tempfile::tempdir().unwrap();
        let (_db, _log, mut sm) =
            crate::open_stores(dir.path(), std::sync::Arc::new(banyan_events::Discard)).unwrap();
        let whole = big();
        let parts = split(&whole, &part_id(&whole));
        let entry = |index: u64, stamped: &Stamped| crate::Entry {
            log_id: crate::LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(crate::Batch(vec![stamped.clone()])),
        };
        let answers = sm
            .apply([
                entry(1, &parts[0]),
                entry(2, &parts[1]),
                entry(3, &parts[0]),
            ])
            .await
            .unwrap();
        assert!(
            answers.iter().all(|a| a.0 == vec![Ok(Vec::new())]),
            "{answers:?}"
        );
        assert!(sm.applied_state().read().domain.customer("c-1").is_none());
        // A node that joins now by snapshot continues with the parts already in.
        let snapshot = sm.build_snapshot().await.unwrap();
        let other = tempfile::tempdir().unwrap();
        let (_db, _log, mut joined) =
            crate::open_stores(other.path(), std::sync::Arc::new(banyan_events::Discard)).unwrap();
        joined
            .install_snapshot(&snapshot.meta, snapshot.snapshot)
            .await
            .unwrap();
        for replica in [&mut sm, &mut joined] {
            // The domain's own answer to the whole command (its name is past the
            // domain's limit, which only the whole shows).
            let answers = replica.apply([entry(4, &parts[2])]).await.unwrap();
            let answer = answers[0].0[0].as_ref().expect_err("the domain's answer");
            assert!(answer.to_string().contains("customer.name"), "{answer}");
            let applied = crate::StateMachineStore::applied_state(replica);
            assert!(applied.read().parts.pending.is_empty());
        }
    }

    #[test]
    fn malformed_parts_are_refused() {
        let mut pending = PartialCommands::default();
        let whole = big();
        let mut part = part_of(&split(&whole, "x")[0]).clone();
        part.parts = 1;
        assert!(pending.receive(0, &part).is_err());
        part.parts = 3;
        part.bytes = vec![0; PART_BYTES + 1];
        assert!(pending.receive(0, &part).is_err());
        // Parts that do not decode to a command are refused when whole.
        let garbage: Vec<CommandPart> = (0..2)
            .map(|i| CommandPart {
                id: "g".into(),
                part: i,
                parts: 2,
                bytes: vec![7; 10],
            })
            .collect();
        assert_eq!(pending.receive(0, &garbage[0]).unwrap(), Received::More);
        assert!(pending.receive(0, &garbage[1]).is_err());
        assert!(pending.pending.is_empty());
    }
}
