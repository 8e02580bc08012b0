//! Opens one node's sled database and the two Raft stores over it.

use std::path::Path;

use crate::durable::DurableDb;
use crate::log_store::LogStore;
use crate::state_machine::StateMachineStore;
use crate::types::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("opening the database at {path}: {source}")]
    Open { path: String, source: sled::Error },
    #[error("flushing the database: {0}")]
    Flush(String),
    #[error("loading the state machine: {0}")]
    StateMachine(#[from] StorageError),
}

/// A node's sled database, kept opaque so sled stays behind this crate.
#[derive(Clone)]
pub struct Database(DurableDb);

impl Database {
    /// Flushes everything written so far to disk.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.0
            .sync_async()
            .await
            .map_err(|e| StoreError::Flush(e.to_string()))
    }

    pub(crate) fn durable(&self) -> &DurableDb {
        &self.0
    }

    /// Bytes the database occupies on disk.
    pub fn size_on_disk(&self) -> u64 {
        self.0.db().size_on_disk().unwrap_or(0)
    }
}

/// Opens (or creates) the node's database under `dir` and both stores over it. Must run on
/// a tokio runtime: the log store starts its flusher task there.
pub fn open_stores(dir: &Path) -> Result<(Database, LogStore, StateMachineStore), StoreError> {
    let open_err = |source| StoreError::Open {
        path: dir.display().to_string(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(|e| open_err(sled::Error::Io(e)))?;
    let db = DurableDb::open(&dir.join("sled")).map_err(open_err)?;
    let log = LogStore::open(&db).map_err(open_err)?;
    let sm = StateMachineStore::open(&db)?;
    Ok((Database(db), log, sm))
}

#[cfg(test)]
mod tests {
    use openraft::testing::{StoreBuilder, Suite};

    use super::*;
    use crate::types::TypeConfig;

    /// Builds a fresh pair of stores in a temporary directory for each conformance test.
    struct TempStores;

    impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, tempfile::TempDir> for TempStores {
        async fn build(
            &self,
        ) -> Result<(tempfile::TempDir, LogStore, StateMachineStore), StorageError> {
            let dir = tempfile::tempdir().expect("temp dir");
            let (_db, log, sm) = open_stores(dir.path()).expect("open stores");
            Ok((dir, log, sm))
        }
    }

    /// The snapshot encoding keeps customers and idempotency keys, and rebuilds the
    /// lookup indexes.
    #[test]
    fn domain_state_round_trips_through_the_snapshot_codec() {
        use banyan_domain::{Action, Command, CustomerInput, Stamped, State};
        let mut state = State::default();
        for i in 0..3 {
            state
                .apply(&Stamped {
                    at_ms: 1_000 + i,
                    command: Command::with_request_id(
                        Action::UpsertCustomer(CustomerInput {
                            id: format!("c{i}"),
                            name: "Ada".into(),
                            emails: vec![format!("c{i}@example.com")],
                            ..Default::default()
                        }),
                        Some(format!("r{i}")),
                    ),
                })
                .unwrap();
        }
        let decoded: State = crate::codec::decode(&crate::codec::encode(&state)).unwrap();
        assert_eq!(decoded, state);
        assert_eq!(decoded.remembered_requests(), 3);
    }

    /// openraft's storage conformance suite against the sled stores.
    #[test]
    fn openraft_storage_suite() {
        Suite::test_all(TempStores).unwrap();
    }
}
