//! sled with a real sync to disk.
//!
//! sled 0.34's `Db::flush()` writes its buffers and, on Linux, waits with
//! `sync_file_range`, which neither flushes the device's write cache nor the file's
//! metadata (such as its growing size); pages too large for a segment go to files under
//! `blobs/` that sled never syncs. That survives a process crash but not a power loss.
//! [`DurableDb::sync`] follows the flush with `fdatasync` on every blob file not synced yet
//! (they are written once and never changed) and on sled's data file, so an acknowledged
//! append survives both.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A sled database and a handle on its data file for `fdatasync`. Cheap to clone.
#[derive(Clone)]
pub struct DurableDb {
    db: sled::Db,
    data_file: Arc<File>,
    blob_dir: PathBuf,
    /// Blob files already synced.
    synced_blobs: Arc<Mutex<HashSet<OsString>>>,
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
        // The files sled just created must survive as directory entries too.
        data_file.sync_all()?;
        File::open(path)?.sync_all()?;
        if let Some(parent) = path.parent() {
            File::open(parent)?.sync_all()?;
        }
        Ok(Self {
            db,
            data_file: Arc::new(data_file),
            blob_dir: path.join("blobs"),
            synced_blobs: Arc::default(),
        })
    }

    /// The sled database itself, for the stores that open their trees on it.
    pub fn db(&self) -> &sled::Db {
        &self.db
    }

    /// The directory the database lives in.
    pub fn dir(&self) -> &Path {
        self.blob_dir.parent().unwrap_or(&self.blob_dir)
    }

    /// Makes everything written so far durable. Blocking: call from a blocking thread.
    pub fn sync(&self) -> io::Result<()> {
        // List blobs before the flush: a blob file is being written until the flush that
        // covers its reservation returns, so only blobs listed before it are known whole.
        let blobs = self.blob_names()?;
        self.db.flush().map_err(io::Error::other)?;
        // Blobs first: the data file refers to them.
        self.sync_blobs(blobs)?;
        self.data_file.sync_data()
    }

    fn blob_names(&self) -> io::Result<Vec<OsString>> {
        match std::fs::read_dir(&self.blob_dir) {
            Ok(entries) => entries.map(|e| e.map(|e| e.file_name())).collect(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    fn sync_blobs(&self, names: Vec<OsString>) -> io::Result<()> {
        let mut synced = self.synced_blobs.lock().unwrap_or_else(|p| p.into_inner());
        let mut present = HashSet::new();
        let mut any_new = false;
        for name in names {
            if !synced.contains(&name) {
                match File::open(self.blob_dir.join(&name)) {
                    Ok(file) => file.sync_data()?,
                    // Removed by sled's garbage collection meanwhile: nothing to keep.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                }
                any_new = true;
            }
            present.insert(name);
        }
        if any_new {
            // The new directory entries must survive too.
            File::open(&self.blob_dir)?.sync_all()?;
        }
        *synced = present;
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_covers_blob_files() {
        let dir = tempfile::tempdir().unwrap();
        let durable = DurableDb::open(dir.path()).unwrap();
        // Larger than a quarter segment: sled stores it as a blob file.
        durable.db().insert(b"big", vec![7u8; 300 * 1024]).unwrap();
        durable.sync().unwrap();
        // Blobs written during a sync are taken by the next one.
        durable.sync().unwrap();
        let synced = durable.synced_blobs.lock().unwrap().clone();
        assert!(!synced.is_empty(), "the blob file was found and synced");
        drop(durable);
        let reopened = DurableDb::open(dir.path()).unwrap();
        assert_eq!(
            reopened.db().get(b"big").unwrap().unwrap().len(),
            300 * 1024
        );
    }
}
