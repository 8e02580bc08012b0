//! sled with a real sync to disk.
//!
//! sled 0.34's `Db::flush()` writes its buffers and, on Linux, waits with
//! `sync_file_range`, which neither flushes the device's write cache nor the file's
//! metadata (such as its growing size). That survives a process crash but not a power
//! loss. [`DurableDb::sync`] follows the flush with `fdatasync` on sled's data file, so an
//! acknowledged append survives both.

use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::Arc;

/// A sled database and a handle on its data file for `fdatasync`. Cheap to clone.
#[derive(Clone)]
pub struct DurableDb {
    db: sled::Db,
    data_file: Arc<File>,
}

impl DurableDb {
    /// Opens (or creates) the database in directory `path`.
    pub fn open(path: &Path) -> Result<Self, sled::Error> {
        let db = sled::Config::new()
            .path(path)
            // Durability comes from explicit syncs; sled's timer flush is not needed.
            .flush_every_ms(None)
            .open()?;
        let data_file = File::open(path.join("db"))?;
        Ok(Self {
            db,
            data_file: Arc::new(data_file),
        })
    }

    pub fn db(&self) -> &sled::Db {
        &self.db
    }

    /// Makes everything written so far durable. Blocking: call from a blocking thread.
    pub fn sync(&self) -> io::Result<()> {
        self.db.flush().map_err(io::Error::other)?;
        self.data_file.sync_data()
    }

    /// [`sync`](Self::sync) on tokio's blocking pool (sled 0.34's `flush_async` can
    /// deadlock, so the blocking call is used).
    pub async fn sync_async(&self) -> io::Result<()> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.sync())
            .await
            .map_err(io::Error::other)?
    }
}
