//! The certificates directory (`--certs-dir`), one file per credential:
//!
//! | file | what | who holds it |
//! |---|---|---|
//! | `ca.crt` | the cluster's CA certificate | every node and client |
//! | `ca.key` | the CA's key | the operator only (kept off the nodes in production) |
//! | `token.key` | the key that signs bearer tokens | the operator only |
//! | `token.pub` | its public half, to check tokens | every node |
//! | `node.N.crt`, `node.N.key` | node N (core voter or branch) | node N |
//! | `client.NAME.crt`, `client.NAME.key` | a client certificate (role and scope inside) | that client |
//!
//! Keys are written mode 0600, and nothing is overwritten unless asked.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::TrustError;

/// A certificates directory.
#[derive(Debug, Clone)]
pub struct CertsDir(PathBuf);

impl CertsDir {
    /// The certificates directory at `path` (`--certs-dir`); nothing is read until asked.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self(path.into())
    }

    /// The directory itself, for messages that name it.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// `ca.crt`: the CA certificate every node and client verifies peers against.
    pub fn ca_cert(&self) -> PathBuf {
        self.0.join("ca.crt")
    }

    /// `ca.key`: the CA's key, which signs every certificate; the operator's, not the nodes'.
    pub fn ca_key(&self) -> PathBuf {
        self.0.join("ca.key")
    }

    /// `token.key`: the key that signs bearer tokens; the operator's only.
    pub fn token_key(&self) -> PathBuf {
        self.0.join("token.key")
    }

    /// `token.pub`: the public half of the token key, with which every node checks tokens.
    pub fn token_pub(&self) -> PathBuf {
        self.0.join("token.pub")
    }

    /// `node.ID.crt`: the certificate node `id` serves and connects with (a core voter or a
    /// branch).
    pub fn node_cert(&self, id: u64) -> PathBuf {
        self.0.join(format!("node.{id}.crt"))
    }

    /// `node.ID.key`: node `id`'s private key.
    pub fn node_key(&self, id: u64) -> PathBuf {
        self.0.join(format!("node.{id}.key"))
    }

    /// `client.NAME.crt`: a client's certificate, with its role and scope inside.
    pub fn client_cert(&self, name: &str) -> PathBuf {
        self.0.join(format!("client.{name}.crt"))
    }

    /// `client.NAME.key`: a client's private key.
    pub fn client_key(&self, name: &str) -> PathBuf {
        self.0.join(format!("client.{name}.key"))
    }

    /// Reads one file of the directory, naming it when it cannot.
    pub fn read(&self, path: &Path) -> Result<String, TrustError> {
        std::fs::read_to_string(path).map_err(|e| TrustError::io(path, e))
    }

    /// Fails if any of `paths` exists and `overwrite` is false, before anything is written,
    /// so a refused command leaves the directory as it was.
    pub fn check_new(&self, paths: &[&Path], overwrite: bool) -> Result<(), TrustError> {
        if overwrite {
            return Ok(());
        }
        match paths.iter().find(|p| p.exists()) {
            Some(p) => Err(TrustError::Exists(p.to_path_buf())),
            None => Ok(()),
        }
    }

    /// Writes a certificate or a public key (mode 0644).
    pub fn write_public(&self, path: &Path, contents: &str) -> Result<(), TrustError> {
        write(path, contents, 0o644)
    }

    /// Writes a private key (mode 0600 from the start: never readable by others).
    pub fn write_secret(&self, path: &Path, contents: &str) -> Result<(), TrustError> {
        write(path, contents, 0o600)
    }

    /// Creates the directory (mode 0700) if it is missing.
    pub fn create(&self) -> Result<(), TrustError> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.0)
            .map_err(|e| TrustError::io(&self.0, e))
    }
}

/// Writes `contents` through a temporary file renamed into place, so a reader never sees
/// half a key and a rotation replaces a file at once.
fn write(path: &Path, contents: &str, mode: u32) -> Result<(), TrustError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| TrustError::io(&tmp, e))?;
    // The mode given at creation is filtered by the umask; set it exactly.
    file.set_permissions(std::fs::Permissions::from_mode(mode))
        .and_then(|()| file.write_all(contents.as_bytes()))
        .and_then(|()| file.sync_all())
        .map_err(|e| TrustError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| TrustError::io(path, e))
}
