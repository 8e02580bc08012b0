//! Opens one node's sled database and the two Raft stores over it.

use std::path::Path;

use crate::log_store::LogStore;
use crate::state_machine::StateMachineStore;
use crate::types::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("opening the database at {path}: {source}")]
    Open { path: String, source: sled::Error },
    #[error("loading the state machine: {0}")]
    StateMachine(#[from] StorageError),
}

/// Opens (or creates) the node's database under `dir` and both stores over it. Must run on
/// a tokio runtime: the log store starts its flusher task there.
pub fn open_stores(dir: &Path) -> Result<(sled::Db, LogStore, StateMachineStore), StoreError> {
    let open_err = |source| StoreError::Open {
        path: dir.display().to_string(),
        source,
    };
    let db = sled::Config::new()
        .path(dir.join("sled"))
        // Durability comes from explicit flushes; sled's own timer flush is not needed.
        .flush_every_ms(None)
        .open()
        .map_err(open_err)?;
    let log = LogStore::open(&db).map_err(open_err)?;
    let sm = StateMachineStore::open(&db)?;
    Ok((db, log, sm))
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

    /// openraft's storage conformance suite against the sled stores.
    #[test]
    fn openraft_storage_suite() {
        Suite::test_all(TempStores).unwrap();
    }
}
