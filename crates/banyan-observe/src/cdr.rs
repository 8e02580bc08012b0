//! Contact detail records on disk: every finished contact this node records in its
//! history store, written as one JSON line ([`DetailRecord`]) to hourly files under
//! `--cdr-dir`, for a data warehouse to load.
//!
//! Files are named `cdr-n<node>-<YYYYMMDD>T<HH>.jsonl` by the UTC hour they were written
//! in; a file is complete once the hour has passed. The writer follows the history store
//! in the order this node recorded contacts, and keeps its place in
//! `.cdr-n<node>.cursor` in the same directory, written after the lines it covers are
//! synced. Delivery is at least once: after a crash between the two, the lines of the last
//! batch are written again. Every node with `--cdr-dir` exports every finished contact it
//! holds, so a warehouse either loads one node's files or keys rows by `contact_id`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use banyan_domain::cdr::DetailRecord;
use banyan_env::{Clock, Shutdown};
use banyan_raft::{AppliedState, History};

/// How many records one pass writes before it syncs and moves its cursor.
const BATCH: usize = 1_000;
/// The longest the writer goes without looking for new records.
pub const LOOK_EVERY: Duration = Duration::from_secs(5);
/// How long the writer waits after the state changed before it looks, so a busy node
/// writes in batches rather than a line at a time.
const SETTLE: Duration = Duration::from_millis(500);

/// Where one node writes its contact detail records.
pub struct CdrWriter {
    dir: PathBuf,
    node: u64,
    history: History,
    clock: Clock,
}

impl CdrWriter {
    /// A writer of node `node`'s records from `history` into `dir` (created if missing),
    /// naming files by `clock`'s hour.
    pub fn new(dir: &Path, node: u64, history: History, clock: Clock) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(Self {
            dir: dir.to_owned(),
            node,
            history,
            clock,
        })
    }

    fn cursor_path(&self) -> PathBuf {
        self.dir.join(format!(".cdr-n{}.cursor", self.node))
    }

    /// The last record number written, if any.
    fn cursor(&self) -> std::io::Result<Option<u64>> {
        match std::fs::read_to_string(self.cursor_path()) {
            Ok(text) => text.trim().parse().map(Some).map_err(std::io::Error::other),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn set_cursor(&self, seq: u64) -> std::io::Result<()> {
        let tmp = self.dir.join(format!(".cdr-n{}.cursor.tmp", self.node));
        let mut file = std::fs::File::create(&tmp)?;
        writeln!(file, "{seq}")?;
        file.sync_all()?;
        std::fs::rename(&tmp, self.cursor_path())?;
        std::fs::File::open(&self.dir)?.sync_all()
    }

    /// The file records written now go to.
    pub fn file_for(&self, now_ms: i64) -> PathBuf {
        let (date, hour) = utc_hour(now_ms);
        self.dir
            .join(format!("cdr-n{}-{date}T{hour:02}.jsonl", self.node))
    }

    /// Writes every record recorded since the cursor; returns how many. Blocking.
    pub fn write_pending(&self) -> std::io::Result<usize> {
        let mut written = 0;
        loop {
            let batch = self
                .history
                .recorded_after(self.cursor()?, BATCH)
                .map_err(std::io::Error::other)?;
            let Some((last, _)) = batch.last() else {
                return Ok(written);
            };
            let last = *last;
            let mut lines = Vec::new();
            for (_, contact) in &batch {
                if let Some(record) = DetailRecord::of(contact) {
                    serde_json::to_writer(&mut lines, &record).map_err(std::io::Error::other)?;
                    lines.push(b'\n');
                    written += 1;
                }
            }
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.file_for((self.clock)()))?;
            file.write_all(&lines)?;
            file.sync_data()?;
            self.set_cursor(last)?;
            if batch.len() < BATCH {
                return Ok(written);
            }
        }
    }

    /// Writes what is pending now, whenever `state` applies more and at least every
    /// [`LOOK_EVERY`] (a state that stops advancing, such as a branch's own after it went
    /// back through the core, leaves the writer to that), until `shutdown` begins.
    pub async fn run(self, state: AppliedState, shutdown: Shutdown) {
        let writer = std::sync::Arc::new(self);
        let mut applied = Some(state.applied_index_changes());
        loop {
            let pass = writer.clone();
            match tokio::task::spawn_blocking(move || pass.write_pending()).await {
                Ok(Ok(0)) => {}
                Ok(Ok(n)) => tracing::debug!(records = n, "wrote contact detail records"),
                Ok(Err(e)) => {
                    tracing::error!(error = %e, dir = %writer.dir.display(), "writing contact detail records failed; trying again")
                }
                Err(e) => tracing::error!(error = %e, "the contact detail record writer failed"),
            }
            if shutdown.is_begun() {
                return;
            }
            let moved = async {
                match applied.as_mut() {
                    Some(rx) => rx.changed().await.is_ok(),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = shutdown.begun() => {}
                still = moved => if !still { applied = None },
                () = tokio::time::sleep(LOOK_EVERY) => {}
            }
            tokio::select! {
                () = shutdown.begun() => {}
                () = tokio::time::sleep(SETTLE) => {}
            }
        }
    }
}

/// The UTC date (`YYYYMMDD`) and hour of a time in ms since the Unix epoch.
fn utc_hour(ms: i64) -> (String, u32) {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let hour = (secs.rem_euclid(86_400) / 3_600) as u32;
    // Days since 1970-01-01 to a civil date (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (format!("{year:04}{month:02}{day:02}"), hour)
}

#[cfg(test)]
mod tests {
    use super::*;

    use banyan_domain::{Action, Channel, Command, ContactInput, QueueInput, Stamped, State};

    /// `n` self-served chats, finished.
    fn finished(state: &mut State, from: usize, n: usize) -> Vec<banyan_domain::Contact> {
        let mut out = Vec::new();
        for i in from..from + n {
            let input = ContactInput {
                id: format!("c-{i}"),
                channel: Channel::Chat,
                self_served: true,
                ..Default::default()
            };
            let stamped = Stamped {
                at_ms: 1_000 + i as i64,
                command: Command::new(Action::CreateContact(input)),
            };
            state.apply(&stamped).unwrap();
            out.extend(state.finished_by_last_command().cloned());
        }
        out
    }

    fn lines(dir: &Path) -> Vec<DetailRecord> {
        let mut all = Vec::new();
        for file in std::fs::read_dir(dir).unwrap() {
            let path = file.unwrap().path();
            if path.extension().is_some_and(|e| e == "jsonl") {
                let text = std::fs::read_to_string(&path).unwrap();
                all.extend(
                    text.lines()
                        .map(|l| serde_json::from_str::<DetailRecord>(l).unwrap()),
                );
            }
        }
        all.sort_by(|a, b| a.contact_id.cmp(&b.contact_id));
        all
    }

    #[test]
    fn every_recorded_contact_is_written_once_across_restarts() {
        let data = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let _guard = runtime.enter();
        let (_db, _log, sm) =
            banyan_raft::open_stores(data.path(), std::sync::Arc::new(banyan_events::Discard))
                .unwrap();
        let history = sm.applied_state().history().unwrap().clone();
        let mut state = State::default();
        let queue = QueueInput {
            id: "q".into(),
            name: "Q".into(),
            ..Default::default()
        };
        state
            .apply(&Stamped {
                at_ms: 1,
                command: Command::new(Action::UpsertQueue(queue)),
            })
            .unwrap();
        let clock: Clock = std::sync::Arc::new(|| 1_796_175_000_000);
        let writer = CdrWriter::new(out.path(), 7, history.clone(), clock.clone()).unwrap();
        history.record(&finished(&mut state, 0, 3)).unwrap();
        assert_eq!(writer.write_pending().unwrap(), 3);
        assert_eq!(writer.write_pending().unwrap(), 0, "nothing twice");
        history.record(&finished(&mut state, 3, 1)).unwrap();
        // A new writer (a restart) goes on from the cursor.
        let again = CdrWriter::new(out.path(), 7, history, clock).unwrap();
        assert_eq!(again.write_pending().unwrap(), 1);
        let records = lines(out.path());
        assert_eq!(
            records
                .iter()
                .map(|r| r.contact_id.as_str())
                .collect::<Vec<_>>(),
            ["c-0", "c-1", "c-2", "c-3"]
        );
        assert!(records
            .iter()
            .all(|r| r.outcome == "SELF_SERVED" && r.schema == 1));
        assert!(out.path().join("cdr-n7-20261202T01.jsonl").exists());
    }

    #[test]
    fn hours_are_named_by_their_utc_date() {
        assert_eq!(utc_hour(0), ("19700101".to_owned(), 0));
        // 2026-12-02 01:30 UTC.
        assert_eq!(utc_hour(1_796_175_000_000), ("20261202".to_owned(), 1));
        // 2024-02-29 23:59:59 UTC, a leap day.
        assert_eq!(utc_hour(1_709_251_199_000), ("20240229".to_owned(), 23));
        assert_eq!(utc_hour(-1), ("19691231".to_owned(), 23));
    }
}
