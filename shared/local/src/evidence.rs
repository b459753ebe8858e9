//! Evidence in a local directory, written once and read-only, with the same keys, checksums and
//! retention records as the S3 store.
//!
//! Layout under the root: `evidence/{cycle}/{client}/{tier}/{name}` holds the bytes;
//! `.meta/{same path}.json` what the store recorded (size, SHA-256, retention, content type);
//! `.legal-hold/{same path}` exists while a legal hold is on. Key segments cannot start with a
//! dot, so the bookkeeping folders never collide with evidence.
//!
//! Put-once is atomic: the bytes are written to a temporary file and hard-linked to their name,
//! which fails if the name exists. A local file system cannot enforce retention against its
//! owner; the files are made read-only and `audit verify` checks them against their records.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use patchflow_core::ids::CycleId;
use patchflow_core::ports::evidence::{
    EvidenceHead, EvidenceKey, EvidencePrefix, EvidenceStore, NewEvidence, Retention, Sha256Digest,
};
use patchflow_core::ports::PortError;
use serde::{Deserialize, Serialize};

/// Evidence in a directory.
#[derive(Debug, Clone)]
pub struct FsEvidenceStore {
    root: PathBuf,
}

#[derive(Debug, Serialize, Deserialize)]
struct Meta {
    size: u64,
    sha256: Sha256Digest,
    content_type: String,
    retention: Retention,
}

static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

fn io_err(context: impl Into<String>, e: io::Error) -> PortError {
    // A local disk has no passing failures worth retrying blindly, except running out of space
    // or a descriptor limit, which an operator clears.
    match e.kind() {
        io::ErrorKind::NotFound => PortError::NotFound(context.into()),
        io::ErrorKind::AlreadyExists => PortError::Conflict(context.into()),
        io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            PortError::transient(context, e)
        }
        _ => PortError::permanent(context, e),
    }
}

impl FsEvidenceStore {
    /// A store rooted at `root` (created if missing).
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, PortError> {
        let root = root.into();
        fs::create_dir_all(root.join("evidence"))
            .map_err(|e| io_err(format!("create {}", root.display()), e))?;
        Ok(Self { root })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the bytes of a key live.
    pub fn path_of(&self, key: &EvidenceKey) -> PathBuf {
        self.root.join(key.as_path())
    }

    fn meta_path(&self, key: &EvidenceKey) -> PathBuf {
        self.root
            .join(".meta")
            .join(format!("{}.json", key.as_path()))
    }

    fn hold_path(&self, key: &EvidenceKey) -> PathBuf {
        self.root.join(".legal-hold").join(key.as_path())
    }

    fn put_sync(&self, obj: NewEvidence) -> Result<EvidenceHead, PortError> {
        let key = obj.key;
        let path = self.path_of(&key);
        let meta = Meta {
            size: obj.bytes.len() as u64,
            sha256: Sha256Digest::of(&obj.bytes),
            content_type: obj.content_type,
            retention: obj.retention,
        };
        let meta_text = serde_json::to_vec_pretty(&meta)
            .map_err(|e| PortError::permanent("encode metadata", e))?;
        // Metadata first, under the same put-once rule: a crash between the two leaves a record
        // without bytes, which `head` reports, never bytes without a checksum.
        write_once(&self.meta_path(&key), &meta_text).map_err(|e| match e {
            PortError::Conflict(_) => PortError::Conflict(format!("{key} already exists")),
            other => other,
        })?;
        write_once(&path, &obj.bytes)?;
        Ok(EvidenceHead {
            key,
            size: meta.size,
            sha256: meta.sha256,
            retention: Some(meta.retention),
            legal_hold: false,
            content_type: Some(meta.content_type),
        })
    }

    fn head_sync(&self, key: &EvidenceKey) -> Result<EvidenceHead, PortError> {
        let meta_path = self.meta_path(key);
        let text = fs::read(&meta_path).map_err(|e| io_err(format!("{key}"), e))?;
        let meta: Meta = serde_json::from_slice(&text).map_err(|e| {
            PortError::permanent(
                format!("{key}: metadata {} is corrupt", meta_path.display()),
                e,
            )
        })?;
        let size = fs::metadata(self.path_of(key))
            .map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => {
                    PortError::permanent(format!("{key}: recorded but its bytes are missing"), e)
                }
                _ => io_err(format!("{key}"), e),
            })?
            .len();
        Ok(EvidenceHead {
            key: key.clone(),
            size,
            sha256: meta.sha256,
            retention: Some(meta.retention),
            legal_hold: self.hold_path(key).exists(),
            content_type: Some(meta.content_type),
        })
    }

    /// The local equivalent of an object's lock: the retention recorded at write time, in force
    /// while the file is read-only as the store left it (a file made writable again has lost
    /// what little protection a directory gives, and reads back as unlocked).
    fn retention_sync(&self, key: &EvidenceKey) -> Result<Option<Retention>, PortError> {
        let head = self.head_sync(key)?;
        let meta = fs::metadata(self.path_of(key)).map_err(|e| io_err(format!("{key}"), e))?;
        Ok(if meta.permissions().readonly() {
            head.retention
        } else {
            None
        })
    }

    fn get_sync(&self, key: &EvidenceKey) -> Result<(Vec<u8>, EvidenceHead), PortError> {
        let head = self.head_sync(key)?;
        let bytes = fs::read(self.path_of(key)).map_err(|e| io_err(format!("{key}"), e))?;
        let actual = Sha256Digest::of(&bytes);
        if actual != head.sha256 {
            return Err(PortError::permanent(
                format!("{key}"),
                format!(
                    "content SHA-256 {actual} does not match the recorded {}",
                    head.sha256
                ),
            ));
        }
        Ok((bytes, head))
    }

    fn list_sync(&self, prefix: &EvidencePrefix) -> Result<Vec<EvidenceKey>, PortError> {
        let base = self.root.join("evidence");
        let start = self.root.join(prefix.as_path());
        let mut keys = Vec::new();
        let mut stack = vec![start];
        while let Some(dir) = stack.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err(format!("list {}", dir.display()), e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| io_err(format!("list {}", dir.display()), e))?;
                let path = entry.path();
                let kind = entry
                    .file_type()
                    .map_err(|e| io_err(format!("stat {}", path.display()), e))?;
                if kind.is_dir() {
                    stack.push(path);
                } else if !entry.file_name().to_string_lossy().starts_with('.') {
                    let rel = path
                        .strip_prefix(&base)
                        .map_err(|e| PortError::permanent("list", e.to_string()))?;
                    let text = format!("evidence/{}", rel.to_string_lossy());
                    let key = EvidenceKey::try_from(text.clone()).map_err(|e| {
                        PortError::permanent(
                            format!("foreign file in the evidence store: {text}"),
                            e,
                        )
                    })?;
                    keys.push(key);
                }
            }
        }
        keys.sort();
        Ok(keys)
    }

    fn cycles_sync(&self) -> Result<Vec<CycleId>, PortError> {
        let base = self.root.join("evidence");
        let entries = match fs::read_dir(&base) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(format!("list {}", base.display()), e)),
        };
        let mut cycles = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| io_err(format!("list {}", base.display()), e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            // Temporary files of an interrupted write start with a dot, like `list` skips them.
            if name.starts_with('.') {
                continue;
            }
            let kind = entry
                .file_type()
                .map_err(|e| io_err(format!("stat {}", entry.path().display()), e))?;
            let cycle = name.parse::<CycleId>().ok().filter(|_| kind.is_dir());
            let cycle = cycle.ok_or_else(|| {
                PortError::permanent(
                    format!("foreign entry in the evidence store: evidence/{name}"),
                    "not a YYYY-MM cycle folder",
                )
            })?;
            cycles.push(cycle);
        }
        cycles.sort();
        Ok(cycles)
    }

    fn set_legal_hold_sync(&self, key: &EvidenceKey, on: bool) -> Result<(), PortError> {
        self.head_sync(key)?;
        let hold = self.hold_path(key);
        if on {
            if let Some(dir) = hold.parent() {
                fs::create_dir_all(dir).map_err(|e| io_err(format!("{key}: legal hold"), e))?;
            }
            fs::write(&hold, b"ON\n").map_err(|e| io_err(format!("{key}: legal hold"), e))
        } else {
            match fs::remove_file(&hold) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    Err(io_err(format!("{key}: legal hold"), e))
                }
                _ => Ok(()),
            }
        }
    }
}

/// Writes `bytes` to `path` only if nothing is there: write a temporary file, make it read-only,
/// then hard-link it to the name (which fails if the name exists).
fn write_once(path: &Path, bytes: &[u8]) -> Result<(), PortError> {
    let dir = path.parent().ok_or_else(|| {
        PortError::permanent("write", format!("{} has no parent", path.display()))
    })?;
    fs::create_dir_all(dir).map_err(|e| io_err(format!("create {}", dir.display()), e))?;
    let tmp = dir.join(format!(
        ".tmp-{}-{}",
        std::process::id(),
        TMP_SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        let mut perms = f.metadata()?.permissions();
        perms.set_readonly(true);
        fs::set_permissions(&tmp, perms)?;
        fs::hard_link(&tmp, path)
    })();
    // The temporary name is only ever ours; failing to remove it leaves litter, not a wrong answer.
    if let Err(e) = fs::remove_file(&tmp) {
        if e.kind() != io::ErrorKind::NotFound {
            return Err(io_err(format!("remove {}", tmp.display()), e));
        }
    }
    result.map_err(|e| match e.kind() {
        io::ErrorKind::AlreadyExists => {
            PortError::Conflict(format!("{} already exists", path.display()))
        }
        _ => io_err(format!("write {}", path.display()), e),
    })
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, PortError> + Send + 'static,
) -> Result<T, PortError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| PortError::permanent("local evidence store task", e))?
}

impl EvidenceStore for FsEvidenceStore {
    async fn put(&self, object: NewEvidence) -> Result<EvidenceHead, PortError> {
        let me = self.clone();
        blocking(move || me.put_sync(object)).await
    }

    async fn get(&self, key: &EvidenceKey) -> Result<(Vec<u8>, EvidenceHead), PortError> {
        let (me, key) = (self.clone(), key.clone());
        blocking(move || me.get_sync(&key)).await
    }

    async fn head(&self, key: &EvidenceKey) -> Result<EvidenceHead, PortError> {
        let (me, key) = (self.clone(), key.clone());
        blocking(move || me.head_sync(&key)).await
    }

    async fn list(&self, prefix: &EvidencePrefix) -> Result<Vec<EvidenceKey>, PortError> {
        let (me, prefix) = (self.clone(), prefix.clone());
        blocking(move || me.list_sync(&prefix)).await
    }

    async fn cycles(&self) -> Result<Vec<CycleId>, PortError> {
        let me = self.clone();
        blocking(move || me.cycles_sync()).await
    }

    async fn versions_beyond_one(&self, _prefix: &str) -> Result<Vec<(String, usize)>, PortError> {
        // A directory keeps one version of a file: a changed file is caught by its hashes.
        Ok(Vec::new())
    }

    async fn retention(&self, key: &EvidenceKey) -> Result<Option<Retention>, PortError> {
        let (me, key) = (self.clone(), key.clone());
        blocking(move || me.retention_sync(&key)).await
    }

    async fn set_legal_hold(&self, key: &EvidenceKey, on: bool) -> Result<(), PortError> {
        let (me, key) = (self.clone(), key.clone());
        blocking(move || me.set_legal_hold_sync(&key, on)).await
    }
}
