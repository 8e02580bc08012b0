//! Opens one node's sled database and the two Raft stores over it.

use std::path::Path;
use std::sync::Arc;

use banyan_events::ApplyHook;

use crate::durable::DurableDb;
use crate::log_store::LogStore;
use crate::state_machine::StateMachineStore;
use crate::types::StorageError;

/// Why a node's database could not be opened, read, written or synced.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database under the node's data directory could not be created or opened.
    #[error("opening the database at {path}: {source}")]
    Open {
        /// The node's data directory.
        path: String,
        /// What sled, or the file system under it, said.
        source: sled::Error,
    },
    /// A read, write or sync of the database failed.
    #[error("flushing the database: {0}")]
    Flush(String),
    /// The state machine could not be loaded from its last snapshot.
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

    /// The tree `name` in this database (created if missing), for records a node keeps
    /// beside Raft's (a branch's outbox and journal).
    pub fn tree(&self, name: &str) -> Result<DurableTree, StoreError> {
        let tree = self.0.db().open_tree(name).map_err(flush_err)?;
        Ok(DurableTree {
            db: self.0.clone(),
            tree,
        })
    }
}

fn flush_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Flush(e.to_string())
}

/// A key and its value, as stored.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// A named tree of byte keys and values in a node's database. Writes reach the disk when
/// [`sync`](Self::sync) returns, the same way Raft's own writes do; one call's writes land
/// together or not at all after a crash.
#[derive(Clone)]
pub struct DurableTree {
    db: DurableDb,
    tree: sled::Tree,
}

impl DurableTree {
    /// The value stored under `key`, if any.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.tree.get(key).map_err(flush_err)?.map(|v| v.to_vec()))
    }

    /// Writes every `(key, value)` pair at once.
    pub fn insert_all(&self, writes: &[(&[u8], &[u8])]) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for (key, value) in writes {
            batch.insert(*key, *value);
        }
        self.tree.apply_batch(batch).map_err(flush_err)
    }

    /// Removes `key`; durable once [`sync`](Self::sync) returns.
    pub fn remove(&self, key: &[u8]) -> Result<(), StoreError> {
        self.tree.remove(key).map(drop).map_err(flush_err)
    }

    /// Up to `limit` pairs whose key starts with `prefix`, in key order.
    pub fn scan_prefix(&self, prefix: &[u8], limit: usize) -> Result<Vec<KeyValue>, StoreError> {
        self.tree
            .scan_prefix(prefix)
            .take(limit)
            .map(|item| {
                let (k, v) = item.map_err(flush_err)?;
                Ok((k.to_vec(), v.to_vec()))
            })
            .collect()
    }

    /// The greatest key that starts with `prefix`.
    pub fn last_key_with_prefix(&self, prefix: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.tree
            .scan_prefix(prefix)
            .keys()
            .next_back()
            .transpose()
            .map(|k| k.map(|k| k.to_vec()))
            .map_err(flush_err)
    }

    /// How many keys start with `prefix`.
    pub fn count_prefix(&self, prefix: &[u8]) -> u64 {
        self.tree.scan_prefix(prefix).count() as u64
    }

    /// Returns once everything written so far is on disk.
    pub async fn sync(&self) -> Result<(), StoreError> {
        self.db.sync_async().await.map_err(flush_err)
    }
}

/// Opens (or creates) the node's database under `dir` and both stores over it; the state
/// machine hands what it applies to `hook`. Must run on a tokio runtime: the log store
/// starts its flusher task there.
pub fn open_stores(
    dir: &Path,
    hook: Arc<dyn ApplyHook>,
) -> Result<(Database, LogStore, StateMachineStore), StoreError> {
    let open_err = |source| StoreError::Open {
        path: dir.display().to_string(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(|e| open_err(sled::Error::Io(e)))?;
    let db = DurableDb::open(&dir.join("sled")).map_err(open_err)?;
    let log = LogStore::open(&db).map_err(open_err)?;
    let sm = StateMachineStore::open(&db, hook)?;
    Ok((Database(db), log, sm))
}

#[cfg(test)]
mod tests {
    use openraft::testing::{StoreBuilder, Suite};

    use banyan_events::Discard;

    use super::*;
    use crate::types::TypeConfig;

    /// Builds a fresh pair of stores in a temporary directory for each conformance test.
    struct TempStores;

    impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, tempfile::TempDir> for TempStores {
        async fn build(
            &self,
        ) -> Result<(tempfile::TempDir, LogStore, StateMachineStore), StorageError> {
            let dir = tempfile::tempdir().expect("temp dir");
            let (_db, log, sm) = open_stores(dir.path(), Arc::new(Discard)).expect("open stores");
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
