//! Data dir files: the 0700 directory, 0600 files, and the node's ed25519 key pair.

use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use rand_core::OsRng;

use crate::error::{CorruptError, FileError, InsecureError, StoreError};

pub(crate) const DB_FILE: &str = "portcullis.db";
/// Budget counters and reservations, in their own file (see `sqlite_budget`).
pub(crate) const BUDGET_DB_FILE: &str = "budgets.db";
pub(crate) const NODE_KEY_FILE: &str = "node.key";
pub(crate) const NODE_PUB_FILE: &str = "node.pub";

/// Creates `dir` (and missing parents) with mode 0700. An existing dir is used as it is unless
/// group or others may write to it; its mode is never changed.
pub(crate) fn ensure_data_dir(dir: &Path) -> Result<(), StoreError> {
    match fs::metadata(dir) {
        Ok(meta) if !meta.is_dir() => Err(StoreError::Insecure(InsecureError::NotADirectory {
            path: dir.to_path_buf(),
        })),
        Ok(meta) => {
            let mode = meta.permissions().mode() & 0o7777;
            if mode & 0o022 != 0 {
                return Err(StoreError::Insecure(InsecureError::TooOpen {
                    path: dir.to_path_buf(),
                    mode,
                }));
            }
            Ok(())
        }
        Err(err) if err.kind() == ErrorKind::NotFound => DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(file_error("create", dir)),
        Err(err) => Err(file_error("inspect", dir)(err)),
    }
}

/// Makes sure `path` exists with mode 0600 before SQLite opens it, so SQLite's own `-wal` and
/// `-shm` files inherit 0600. A looser existing file is tightened, never widened.
pub(crate) fn ensure_private_file(path: &Path) -> Result<(), StoreError> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(file_error("create", path))?;
    tighten(&file, path)
}

/// Loads `node.key`, creating it on first open, and keeps `node.pub` beside it.
pub(crate) fn load_or_create_node_key(dir: &Path) -> Result<SigningKey, StoreError> {
    let key_path = dir.join(NODE_KEY_FILE);
    let key = match fs::read_to_string(&key_path) {
        Ok(text) => {
            let mut secret = [0u8; 32];
            hex::decode_to_slice(text.trim(), &mut secret).map_err(|_| {
                StoreError::Corrupt(CorruptError::KeyFile {
                    path: key_path.clone(),
                })
            })?;
            let file = File::open(&key_path).map_err(file_error("open", &key_path))?;
            tighten(&file, &key_path)?;
            SigningKey::from_bytes(&secret)
        }
        Err(err) if err.kind() == ErrorKind::NotFound => {
            let key = SigningKey::generate(&mut OsRng);
            write_new_private(dir, NODE_KEY_FILE, &hex::encode(key.to_bytes()))?;
            key
        }
        Err(err) => return Err(file_error("read", &key_path)(err)),
    };
    let public_hex = hex::encode(key.verifying_key().to_bytes());
    let pub_path = dir.join(NODE_PUB_FILE);
    match fs::read_to_string(&pub_path) {
        Ok(text) if text.trim() == public_hex => Ok(key),
        Ok(_) => Err(StoreError::Insecure(InsecureError::KeyMismatch {
            dir: dir.to_path_buf(),
        })),
        Err(err) if err.kind() == ErrorKind::NotFound => {
            write_new_private(dir, NODE_PUB_FILE, &public_hex)?;
            Ok(key)
        }
        Err(err) => Err(file_error("read", &pub_path)(err)),
    }
}

/// Reads the hex public key in `node.pub`.
pub(crate) fn read_node_public_key(dir: &Path) -> Result<Option<[u8; 32]>, FileError> {
    let path = dir.join(NODE_PUB_FILE);
    let text = fs::read_to_string(&path).map_err(|source| FileError {
        action: "read",
        path: path.clone(),
        source,
    })?;
    let mut public = [0u8; 32];
    Ok(hex::decode_to_slice(text.trim(), &mut public)
        .ok()
        .map(|()| public))
}

/// Writes `name` in `dir` atomically (temp file, fsync, rename, fsync dir) with mode 0600.
fn write_new_private(dir: &Path, name: &str, contents: &str) -> Result<(), StoreError> {
    let final_path = dir.join(name);
    let tmp_path = dir.join(format!("{name}.tmp"));
    // A temp file left by a crash during a previous first start holds nothing we need.
    match fs::remove_file(&tmp_path) {
        Ok(()) => {}
        Err(err) if err.kind() == ErrorKind::NotFound => {}
        Err(err) => return Err(file_error("remove", &tmp_path)(err)),
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp_path)
        .map_err(file_error("create", &tmp_path))?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.write_all(b"\n"))
        .and_then(|()| file.sync_all())
        .map_err(file_error("write", &tmp_path))?;
    fs::rename(&tmp_path, &final_path).map_err(file_error("rename", &final_path))?;
    File::open(dir)
        .and_then(|handle| handle.sync_all())
        .map_err(file_error("sync", dir))
}

fn tighten(file: &File, path: &Path) -> Result<(), StoreError> {
    let mode = file
        .metadata()
        .map_err(file_error("inspect", path))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        file.set_permissions(Permissions::from_mode(0o600))
            .map_err(file_error("restrict", path))?;
    }
    Ok(())
}

fn file_error(action: &'static str, path: &Path) -> impl Fn(std::io::Error) -> StoreError {
    let path: PathBuf = path.to_path_buf();
    move |source| {
        StoreError::Io(FileError {
            action,
            path: path.clone(),
            source,
        })
    }
}
