//! Function code: checksums, archive checks and the content-addressed store under `<data dir>/code/`.
//!
//! A function's code arrives as a zip (base64 in `code.zipFile`, or built from a `--functions` folder). It is
//! first written to a staging file in the store (decoded from base64 in blocks: the archive is never held a
//! second time in memory), checksummed on the way (CRC-64 for `codeChecksum`, SHA-256 to tell archives apart),
//! then unpacked entry by entry, streamed to disk, into a staging folder (see [`unpack`] for how a write can
//! never leave that folder or follow a link, and [`tree`] for the rules on names and links). An archive is
//! either unpacked whole or refused with an error naming the entry; a refused archive leaves nothing behind.
//! [`CodeStore::commit`] then moves the folder to `code/<crc64>/` and the zip to `code/<crc64>.zip` (served back
//! by GetFunctionCode), unless that checksum is already stored: then the stored zip must be the same bytes, so
//! a crafted CRC-64 collision cannot swap another function's code.
//!
//! What the store guarantees: nothing outside `code/` is created, changed or read while unpacking; unpacked
//! folders are `0755` and files `0644` (`0755` when the archive marks them executable), owned by the runtime's
//! user, so handlers running as another user cannot change them; `code/` itself is `0700` when handlers see
//! their code through a mount namespace (and `0711` otherwise, so they can reach their own folder by name);
//! zips are `0600`. Folders no function refers to any more are removed by [`CodeStore::remove`], called by
//! the registry's garbage collection.

pub mod tree;
pub mod unpack;

use std::io::{BufReader, Cursor, Read as _, Seek as _, Write as _};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{Mode, OFlags};
use sha2::{Digest as _, Sha256};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub use self::unpack::{RATIO_FLOOR_BYTES, Unpacked};

/// The table of the reflected ECMA-182 polynomial, one entry per byte value.
const CRC64_TABLE: [u64; 256] = {
    const POLY_REFLECTED: u64 = 0xC96C_5795_D787_0F42;
    let mut table = [0u64; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u64;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ POLY_REFLECTED
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

/// CRC-64 as Alibaba Cloud OSS computes it for `x-oss-hash-crc64ecma` and FC for `codeChecksum`: the ECMA-182
/// polynomial, reflected, initial value and final xor all ones (the parameters known as CRC-64/XZ).
pub fn crc64(bytes: &[u8]) -> u64 {
    let mut crc = Crc64::default();
    crc.update(bytes);
    crc.finish()
}

/// CRC-64 ([`crc64`]) computed over data given in pieces.
#[derive(Debug, Clone, Copy)]
pub struct Crc64(u64);

impl Default for Crc64 {
    fn default() -> Self {
        Crc64(u64::MAX)
    }
}

impl Crc64 {
    /// Adds `bytes` to the checksum.
    pub fn update(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = CRC64_TABLE[((self.0 ^ u64::from(byte)) & 0xff) as usize] ^ (self.0 >> 8);
        }
    }

    /// The checksum of everything added.
    pub fn finish(self) -> u64 {
        !self.0
    }
}

/// Bounds on an uploaded code archive, all enforced while it is read (nothing is unpacked whole first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodeLimits {
    /// Largest zip accepted (Function Compute: 100 MB through the API).
    pub max_zip_bytes: u64,
    /// Largest total of unpacked file sizes (Function Compute: 500 MB); stops zip bombs.
    pub max_unpacked_bytes: u64,
    /// Most entries in one archive; stops archives of millions of empty files.
    pub max_entries: usize,
    /// Largest ratio of an entry's unpacked to compressed size, past [`RATIO_FLOOR_BYTES`]: a deflate bomb
    /// (a gigabyte of zeros in a megabyte) is refused at its first entry instead of filling the disk up to
    /// `max_unpacked_bytes`.
    pub max_ratio: u64,
    /// Uploads (create / update with code) unpacked at the same time; more get Function Compute's
    /// throttling error (503 `ResourceThrottled`) at once. Each holds its request body in memory while it
    /// is parsed, so this bounds the memory uploads can take.
    pub max_concurrent_uploads: usize,
}

impl Default for CodeLimits {
    fn default() -> Self {
        CodeLimits {
            max_zip_bytes: 100 * 1024 * 1024,
            max_unpacked_bytes: 500 * 1024 * 1024,
            max_entries: 10_000,
            max_ratio: 250,
            max_concurrent_uploads: 4,
        }
    }
}

/// Why an archive was refused, or could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum CodeError {
    #[error("code.zipFile is not valid base64: {0}")]
    Base64(String),
    #[error("code.zipFile is not a readable zip archive: {0}")]
    NotZip(String),
    #[error("the code archive is {size} bytes; the limit is {limit} bytes")]
    ZipTooLarge { size: u64, limit: u64 },
    #[error("the code archive has more than {limit} entries")]
    TooManyEntries { limit: usize },
    #[error("the code archive unpacks to more than {limit} bytes (at entry '{entry}')")]
    UnpackedTooLarge { entry: String, limit: u64 },
    #[error(
        "zip entry '{entry}' unpacks to more than {limit} times its compressed size: refused as a zip bomb"
    )]
    RatioTooHigh { entry: String, limit: u64 },
    #[error(
        "zip entry '{entry}' escapes the code folder (an absolute path, a '..' part, a backslash or a NUL byte)"
    )]
    EscapingPath { entry: String },
    #[error(
        "zip entry '{entry}' is a symbolic link to '{target}', which leads outside the code folder (or loops)"
    )]
    EscapingSymlink { entry: String, target: String },
    #[error(
        "zip entry '{entry}' would be written through '{link}', which the archive made a file or a symbolic \
         link: entries can only be placed in folders"
    )]
    ThroughLink { entry: String, link: String },
    #[error(
        "zip entry '{entry}' names a path an earlier entry already created (duplicate entries, or a link, file \
         or folder replaced by another are refused)"
    )]
    Duplicate { entry: String },
    #[error(
        "zip entry '{entry}' is a device, FIFO or socket: only files, folders and symbolic links are accepted"
    )]
    SpecialFile { entry: String },
    #[error("zip entry '{entry}' cannot be read: {reason}")]
    BadEntry { entry: String, reason: String },
    #[error(
        "another archive with the same CRC-64 ({checksum}) is already stored; the code store keeps one archive \
         per codeChecksum: change a byte of the archive"
    )]
    ChecksumCollision { checksum: u64 },
    #[error("cannot write zip entry '{entry}' into the code store: {source}")]
    EntryIo {
        entry: String,
        source: std::io::Error,
    },
    #[error("cannot write the code store at {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl CodeError {
    /// True when the archive itself is at fault (answer 400), false for our own storage failures.
    pub fn is_client_error(&self) -> bool {
        !matches!(self, CodeError::Io { .. } | CodeError::EntryIo { .. })
    }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> CodeError + '_ {
    move |source| CodeError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A stored archive: what `codeChecksum` / `codeSize` report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredCode {
    /// CRC-64 of the zip.
    pub checksum: u64,
    /// Size of the zip in bytes.
    pub size: u64,
}

/// An archive unpacked into the store's staging area, not yet visible under its checksum. Dropped without
/// [`CodeStore::commit`], its folder and zip are removed.
#[derive(Debug)]
pub struct StagedCode {
    /// Checksum and size of the zip.
    pub stored: StoredCode,
    /// SHA-256 of the zip, compared with a stored zip of the same checksum.
    sha256: [u8; 32],
    /// The unpacked folder (`code/.staging-<id>`).
    dir: PathBuf,
    /// The zip (`code/.staging-<id>.zip`).
    zip: PathBuf,
}

impl Drop for StagedCode {
    fn drop(&mut self) {
        let _ = remove_tree(&self.dir);
        let _ = std::fs::remove_file(&self.zip);
    }
}

/// Removes a folder of the store (or a staging folder), whatever permissions its archive gave its folders.
fn remove_tree(dir: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
        Ok(_) => crate::runtime::pool::remove_code_dir(dir),
    }
}

/// The right to unpack one upload; see [`CodeLimits::max_concurrent_uploads`].
#[derive(Debug)]
pub struct UploadPermit(#[allow(dead_code)] OwnedSemaphorePermit);

/// Whether handlers reach their code through a mount namespace (the store can then be private to the runtime)
/// or by its path (they must be able to traverse `code/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreAccess {
    /// `code/` is `0700`.
    Private,
    /// `code/` is `0711`: others may reach a folder whose name they know, not list them.
    Traversable,
}

/// The content-addressed code store.
#[derive(Debug, Clone)]
pub struct CodeStore {
    /// `<data dir>/code`: one folder and one zip per checksum.
    root: PathBuf,
    /// Bounds applied to every archive.
    limits: CodeLimits,
    /// Uploads being unpacked.
    uploads: Arc<Semaphore>,
}

fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// Writes the zip to its staging file while checksumming it.
struct ZipSink {
    file: std::fs::File,
    crc: Crc64,
    sha: Sha256,
    size: u64,
    limit: u64,
}

impl ZipSink {
    fn push(&mut self, bytes: &[u8], path: &Path) -> Result<(), CodeError> {
        self.size += bytes.len() as u64;
        if self.size > self.limit {
            return Err(CodeError::ZipTooLarge {
                size: self.size,
                limit: self.limit,
            });
        }
        self.crc.update(bytes);
        self.sha.update(bytes);
        self.file.write_all(bytes).map_err(io_error(path))
    }
}

impl CodeStore {
    /// Creates the store's folder and removes what an interrupted upload left in it.
    pub fn open(root: PathBuf, limits: CodeLimits, access: StoreAccess) -> Result<Self, CodeError> {
        std::fs::create_dir_all(&root).map_err(io_error(&root))?;
        let mode = match access {
            StoreAccess::Private => 0o700,
            StoreAccess::Traversable => 0o711,
        };
        set_mode(&root, mode).map_err(io_error(&root))?;
        for entry in std::fs::read_dir(&root).map_err(io_error(&root))? {
            let entry = entry.map_err(io_error(&root))?;
            if entry.file_name().to_string_lossy().starts_with(".staging-") {
                let path = entry.path();
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    remove_tree(&path).map_err(io_error(&path))?;
                } else {
                    std::fs::remove_file(&path).map_err(io_error(&path))?;
                }
            }
        }
        Ok(CodeStore {
            root,
            uploads: Arc::new(Semaphore::new(limits.max_concurrent_uploads.max(1))),
            limits,
        })
    }

    /// The bounds archives are held to.
    pub fn limits(&self) -> &CodeLimits {
        &self.limits
    }

    /// The folder a checksum's code is unpacked in.
    pub fn dir(&self, checksum: u64) -> PathBuf {
        self.root.join(checksum.to_string())
    }

    /// The stored zip of a checksum.
    pub fn zip_path(&self, checksum: u64) -> PathBuf {
        self.root.join(format!("{checksum}.zip"))
    }

    /// A slot to unpack an upload in, if one is free.
    pub fn try_upload(&self) -> Option<UploadPermit> {
        self.uploads
            .clone()
            .try_acquire_owned()
            .ok()
            .map(UploadPermit)
    }

    /// A slot to unpack an upload in, waiting for one (the operator's own deployments).
    pub async fn upload(&self) -> UploadPermit {
        UploadPermit(
            self.uploads
                .clone()
                .acquire_owned()
                .await
                .expect("the upload semaphore is never closed"),
        )
    }

    /// A staging folder and zip for one upload (removed again unless committed), and the sink its zip is
    /// written through.
    fn begin_staging(&self) -> Result<(StagedCode, ZipSink), CodeError> {
        use std::os::unix::fs::OpenOptionsExt as _;
        let id = uuid::Uuid::new_v4().simple();
        let staged = StagedCode {
            stored: StoredCode {
                checksum: 0,
                size: 0,
            },
            sha256: [0; 32],
            dir: self.root.join(format!(".staging-{id}")),
            zip: self.root.join(format!(".staging-{id}.zip")),
        };
        let file = std::fs::OpenOptions::new()
            .write(true)
            .read(true)
            .create_new(true)
            .mode(0o600)
            .open(&staged.zip)
            .map_err(io_error(&staged.zip))?;
        let sink = ZipSink {
            file,
            crc: Crc64::default(),
            sha: Sha256::new(),
            size: 0,
            limit: self.limits.max_zip_bytes,
        };
        Ok((staged, sink))
    }

    /// Decodes `code.zipFile` into a staging zip, block by block, and unpacks it.
    pub fn stage_base64(&self, zip_base64: &str) -> Result<StagedCode, CodeError> {
        use base64::Engine as _;
        let text = zip_base64.trim();
        let max_base64 = self.limits.max_zip_bytes.saturating_mul(4) / 3 + 4;
        if text.len() as u64 > max_base64 {
            return Err(CodeError::ZipTooLarge {
                size: text.len() as u64 * 3 / 4,
                limit: self.limits.max_zip_bytes,
            });
        }
        let (staged, mut sink) = self.begin_staging()?;
        // 64 KiB of base64 is a whole number of 4-character groups: only the last block may carry padding.
        const BLOCK: usize = 64 * 1024;
        let mut decoded = Vec::with_capacity(BLOCK / 4 * 3);
        for (n, block) in text.as_bytes().chunks(BLOCK).enumerate() {
            decoded.clear();
            base64::engine::general_purpose::STANDARD
                .decode_vec(block, &mut decoded)
                .map_err(|e| {
                    CodeError::Base64(format!(
                        "{e} (in the block starting at character {})",
                        n * BLOCK
                    ))
                })?;
            sink.push(&decoded, &staged.zip)?;
        }
        self.unpack_staged(staged, sink)
    }

    /// Writes an archive given whole to a staging zip and unpacks it.
    pub fn stage(&self, zip_bytes: &[u8]) -> Result<StagedCode, CodeError> {
        if zip_bytes.len() as u64 > self.limits.max_zip_bytes {
            return Err(CodeError::ZipTooLarge {
                size: zip_bytes.len() as u64,
                limit: self.limits.max_zip_bytes,
            });
        }
        let (staged, mut sink) = self.begin_staging()?;
        sink.push(zip_bytes, &staged.zip)?;
        self.unpack_staged(staged, sink)
    }

    fn unpack_staged(
        &self,
        mut staged: StagedCode,
        sink: ZipSink,
    ) -> Result<StagedCode, CodeError> {
        let ZipSink {
            mut file,
            crc,
            sha,
            size,
            ..
        } = sink;
        staged.stored = StoredCode {
            checksum: crc.finish(),
            size,
        };
        staged.sha256 = sha.finalize().into();
        file.rewind().map_err(io_error(&staged.zip))?;
        let root = rustix::fs::open(
            &self.root,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| CodeError::Io {
            path: self.root.clone(),
            source: e.into(),
        })?;
        let name = staged
            .dir
            .file_name()
            .expect("a staging folder has a name")
            .to_owned();
        rustix::fs::mkdirat(&root, name.as_os_str(), Mode::from_raw_mode(0o700)).map_err(|e| {
            CodeError::Io {
                path: staged.dir.clone(),
                source: e.into(),
            }
        })?;
        let into: OwnedFd = rustix::fs::openat(
            &root,
            name.as_os_str(),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| CodeError::Io {
            path: staged.dir.clone(),
            source: e.into(),
        })?;
        unpack::unpack(BufReader::new(file), &into, &self.limits)?;
        rustix::fs::fchmod(&into, Mode::from_raw_mode(0o755)).map_err(|e| CodeError::Io {
            path: staged.dir.clone(),
            source: e.into(),
        })?;
        Ok(staged)
    }

    /// Makes a staged archive the code of its checksum. When that checksum is already stored, the stored
    /// zip must be the same archive (a different one with the same CRC-64 is refused) and the staged copy is
    /// dropped. Callers serialize commits with removals (see the registry's code lock).
    pub fn commit(&self, staged: StagedCode) -> Result<StoredCode, CodeError> {
        let stored = staged.stored;
        let dir = self.dir(stored.checksum);
        let zip = self.zip_path(stored.checksum);
        if dir.is_dir() && zip.is_file() {
            if sha256_file(&zip).map_err(io_error(&zip))? == staged.sha256 {
                return Ok(stored);
            }
            return Err(CodeError::ChecksumCollision {
                checksum: stored.checksum,
            });
        }
        // A half-stored checksum (interrupted between the two renames): replace it.
        remove_tree(&dir).map_err(io_error(&dir))?;
        std::fs::rename(&staged.dir, &dir).map_err(io_error(&dir))?;
        std::fs::rename(&staged.zip, &zip).map_err(io_error(&zip))?;
        Ok(stored)
    }

    /// Checks an archive given whole and stores it under its checksum (unless already stored).
    pub fn store(&self, zip: &[u8]) -> Result<StoredCode, CodeError> {
        self.commit(self.stage(zip)?)
    }

    /// Decodes `code.zipFile` and stores it.
    pub fn store_base64(&self, zip_base64: &str) -> Result<StoredCode, CodeError> {
        self.commit(self.stage_base64(zip_base64)?)
    }

    /// The checksums the store holds (a folder, a zip, or both).
    pub fn checksums(&self) -> std::io::Result<Vec<u64>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.root)? {
            let name = entry?.file_name();
            let name = name.to_string_lossy();
            if let Ok(checksum) = name.strip_suffix(".zip").unwrap_or(&name).parse::<u64>() {
                out.push(checksum);
            }
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    /// Removes a checksum's folder and zip.
    pub fn remove(&self, checksum: u64) -> std::io::Result<()> {
        remove_tree(&self.dir(checksum))?;
        match std::fs::remove_file(self.zip_path(checksum)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

fn sha256_file(path: &Path) -> std::io::Result<[u8; 32]> {
    let mut file = std::fs::File::open(path)?;
    let mut sha = Sha256::new();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            return Ok(sha.finalize().into());
        }
        sha.update(&buffer[..n]);
    }
}

/// Zips a folder (sorted, fixed timestamps, so the same files always give the same checksum), leaving out the
/// names in `skip` at its top level. Used for `--functions` folders and by the daemon.
pub fn zip_folder(folder: &Path, skip: &[&str]) -> std::io::Result<Vec<u8>> {
    let mut files = Vec::new();
    collect(folder, Path::new(""), skip, &mut files)?;
    files.sort();
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .last_modified_time(zip::DateTime::default());
    for relative in files {
        let path = folder.join(&relative);
        let name = relative.to_string_lossy().replace('\\', "/");
        let metadata = std::fs::symlink_metadata(&path)?;
        if metadata.file_type().is_symlink() {
            let target = std::fs::read_link(&path)?;
            writer
                .add_symlink(name, target.to_string_lossy(), options)
                .map_err(std::io::Error::other)?;
        } else {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = metadata.permissions().mode() & 0o777;
            writer
                .start_file(name, options.unix_permissions(mode))
                .map_err(std::io::Error::other)?;
            writer.write_all(&std::fs::read(&path)?)?;
        }
    }
    Ok(writer.finish().map_err(std::io::Error::other)?.into_inner())
}

fn collect(
    folder: &Path,
    relative: &Path,
    skip: &[&str],
    out: &mut Vec<PathBuf>,
) -> std::io::Result<()> {
    for entry in std::fs::read_dir(folder.join(relative))? {
        let entry = entry?;
        let name = entry.file_name();
        if relative.as_os_str().is_empty() && skip.iter().any(|s| name == *s) {
            continue;
        }
        let path = relative.join(&name);
        if entry.file_type()?.is_dir() {
            collect(folder, &path, skip, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for (name, data) in entries {
            writer
                .start_file(*name, zip::write::SimpleFileOptions::default())
                .unwrap();
            writer.write_all(data).unwrap();
        }
        writer.finish().unwrap().into_inner()
    }

    fn store(limits: CodeLimits) -> (tempfile::TempDir, CodeStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = CodeStore::open(dir.path().join("code"), limits, StoreAccess::Private).unwrap();
        (dir, store)
    }

    #[test]
    fn crc64_matches_the_crc64_xz_check_value() {
        // The catalogue check value of CRC-64/XZ for "123456789" (what OSS's crc64ecma gives).
        assert_eq!(crc64(b"123456789"), 0x995D_C9BB_DF19_39FA);
        assert_eq!(crc64(b"123456789").to_string(), "11051210869376104954");
        assert_eq!(crc64(b""), 0);
    }

    #[test]
    fn stores_an_archive_under_its_checksum() {
        let (_dir, store) = store(CodeLimits::default());
        let zip = zip_of(&[
            ("index.py", b"def handler(e, c): return e"),
            ("lib/x.py", b""),
        ]);
        let stored = store.store(&zip).unwrap();
        assert_eq!(stored.checksum, crc64(&zip));
        assert_eq!(stored.size, zip.len() as u64);
        let dir = store.dir(stored.checksum);
        assert_eq!(
            std::fs::read(dir.join("index.py")).unwrap(),
            b"def handler(e, c): return e"
        );
        assert!(dir.join("lib/x.py").is_file());
        assert_eq!(std::fs::read(store.zip_path(stored.checksum)).unwrap(), zip);
        assert_eq!(
            store.store(&zip).unwrap(),
            stored,
            "storing twice is a no-op"
        );
    }

    #[test]
    fn refuses_entries_that_escape_and_names_them() {
        let (dir, store) = store(CodeLimits::default());
        for name in ["../evil.py", "/etc/evil", "a/../../evil"] {
            let error = store.store(&zip_of(&[(name, b"x")])).unwrap_err();
            assert!(
                matches!(error, CodeError::EscapingPath { .. }),
                "{name}: {error}"
            );
            assert!(error.to_string().contains(name), "{error}");
        }
        assert!(!dir.path().join("evil.py").exists());
    }

    #[test]
    fn refuses_symlinks_pointing_out_but_keeps_inner_ones() {
        let (_dir, store) = store(CodeLimits::default());
        let with_link = |target: &str| {
            let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
            let options = zip::write::SimpleFileOptions::default();
            writer.start_file("lib/real.py", options).unwrap();
            writer.write_all(b"x = 1").unwrap();
            writer.add_symlink("lib/link.py", target, options).unwrap();
            writer.finish().unwrap().into_inner()
        };
        for target in ["/etc/passwd", "../../outside", "../../../x"] {
            let error = store.store(&with_link(target)).unwrap_err();
            assert!(
                error.to_string().contains("lib/link.py") && error.to_string().contains(target),
                "{error}"
            );
        }
        let stored = store.store(&with_link("real.py")).unwrap();
        let link = store.dir(stored.checksum).join("lib/link.py");
        assert_eq!(std::fs::read_to_string(link).unwrap(), "x = 1");
    }

    #[test]
    fn enforces_size_and_entry_limits() {
        let limits = CodeLimits {
            max_zip_bytes: 10_000,
            max_unpacked_bytes: 1000,
            max_entries: 3,
            ..CodeLimits::default()
        };
        let (_dir, store) = store(limits);
        let big = vec![b'a'; 5000];
        let error = store.store(&zip_of(&[("big.txt", &big)])).unwrap_err();
        assert!(
            matches!(error, CodeError::UnpackedTooLarge { ref entry, .. } if entry == "big.txt")
        );
        let many: Vec<(String, &[u8])> = (0..4).map(|i| (format!("f{i}"), &b""[..])).collect();
        let many: Vec<(&str, &[u8])> = many.iter().map(|(n, d)| (n.as_str(), *d)).collect();
        assert!(matches!(
            store.store(&zip_of(&many)).unwrap_err(),
            CodeError::TooManyEntries { limit: 3 }
        ));
        let (_dir, tiny) = self::store(CodeLimits {
            max_zip_bytes: 100,
            ..limits
        });
        assert!(matches!(
            tiny.store(&zip_of(&[
                ("a.txt", b"0123456789"),
                ("b.txt", b"0123456789")
            ]))
            .unwrap_err(),
            CodeError::ZipTooLarge { limit: 100, .. }
        ));
        assert!(matches!(
            store.store(b"not a zip").unwrap_err(),
            CodeError::NotZip(_)
        ));
        assert!(matches!(
            store.store_base64("%%%").unwrap_err(),
            CodeError::Base64(_)
        ));
    }

    #[test]
    fn zipping_a_folder_is_deterministic_and_skips_names() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("index.js"), "exports.handler = () => 1").unwrap();
        std::fs::write(dir.path().join("sub/a.js"), "1").unwrap();
        std::fs::write(dir.path().join("function.toml"), "x").unwrap();
        let first = zip_folder(dir.path(), &["function.toml"]).unwrap();
        assert_eq!(first, zip_folder(dir.path(), &["function.toml"]).unwrap());
        let (_d, store) = store(CodeLimits::default());
        let stored = store.store(&first).unwrap();
        let out = store.dir(stored.checksum);
        assert!(out.join("index.js").is_file() && out.join("sub/a.js").is_file());
        assert!(!out.join("function.toml").exists());
    }
}
