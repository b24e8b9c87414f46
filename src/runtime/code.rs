//! Function code: checksums, archive checks and the content-addressed store under `<data dir>/code/`.
//!
//! A function's code arrives as a zip (base64 in `code.zipFile`, or built from a `--functions` folder). It is
//! checked entry by entry before anything is written (no path leaving the code folder, no symlink pointing out
//! of it, bounded sizes and entry count), then unpacked once per checksum into `code/<crc64>/`, next to the zip
//! itself (`code/<crc64>.zip`) that GetFunctionCode serves back.

use std::collections::BTreeSet;
use std::io::{Cursor, Read, Write as _};
use std::path::{Component, Path, PathBuf};

/// CRC-64 as Alibaba Cloud OSS computes it for `x-oss-hash-crc64ecma` and FC for `codeChecksum`: the ECMA-182
/// polynomial, reflected, initial value and final xor all ones (the parameters known as CRC-64/XZ).
pub fn crc64(bytes: &[u8]) -> u64 {
    const TABLE: [u64; 256] = {
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
    let mut crc = u64::MAX;
    for &byte in bytes {
        crc = TABLE[((crc ^ u64::from(byte)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

/// Bounds on an uploaded code archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodeLimits {
    /// Largest zip accepted (Function Compute: 100 MB through the API).
    pub max_zip_bytes: u64,
    /// Largest total of unpacked file sizes (Function Compute: 500 MB); stops zip bombs.
    pub max_unpacked_bytes: u64,
    /// Most entries in one archive; stops archives of millions of empty files.
    pub max_entries: usize,
}

impl Default for CodeLimits {
    fn default() -> Self {
        CodeLimits {
            max_zip_bytes: 100 * 1024 * 1024,
            max_unpacked_bytes: 500 * 1024 * 1024,
            max_entries: 10_000,
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
    #[error("zip entry '{entry}' escapes the code folder (absolute path or '..')")]
    EscapingPath { entry: String },
    #[error("zip entry '{entry}' is a symlink to '{target}', which points outside the code folder")]
    EscapingSymlink { entry: String, target: String },
    #[error("zip entry '{entry}' cannot be read: {reason}")]
    BadEntry { entry: String, reason: String },
    #[error("cannot write the code store at {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl CodeError {
    /// True when the archive itself is at fault (answer 400), false for our own storage failures.
    pub fn is_client_error(&self) -> bool {
        !matches!(self, CodeError::Io { .. })
    }
}

/// A stored archive: what `codeChecksum` / `codeSize` report and where the code was unpacked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCode {
    /// CRC-64 of the zip.
    pub checksum: u64,
    /// Size of the zip in bytes.
    pub size: u64,
}

enum EntryKind {
    Dir,
    File { executable: bool },
    Symlink { target: String },
}

struct Entry {
    path: PathBuf,
    kind: EntryKind,
    contents: Vec<u8>,
}

/// Reads and checks every entry of an archive without touching the disk.
fn read_entries(zip: &[u8], limits: &CodeLimits) -> Result<Vec<Entry>, CodeError> {
    if zip.len() as u64 > limits.max_zip_bytes {
        return Err(CodeError::ZipTooLarge {
            size: zip.len() as u64,
            limit: limits.max_zip_bytes,
        });
    }
    let mut archive =
        zip::ZipArchive::new(Cursor::new(zip)).map_err(|e| CodeError::NotZip(e.to_string()))?;
    if archive.len() > limits.max_entries {
        return Err(CodeError::TooManyEntries {
            limit: limits.max_entries,
        });
    }
    let mut unpacked = 0u64;
    let mut entries = Vec::with_capacity(archive.len());
    for index in 0..archive.len() {
        let mut file = archive
            .by_index(index)
            .map_err(|e| CodeError::NotZip(format!("entry #{index}: {e}")))?;
        let name = file
            .name()
            .map(|n| n.into_owned())
            .unwrap_or_else(|_| format!("#{index}"));
        let path = relative_path(&name).ok_or_else(|| CodeError::EscapingPath {
            entry: name.clone(),
        })?;
        let bad = |reason: String| CodeError::BadEntry {
            entry: name.clone(),
            reason,
        };
        if file.encrypted() {
            return Err(bad("encrypted entries are not supported".into()));
        }
        let is_dir = file.is_dir();
        let is_symlink = file.is_symlink();
        let executable = file.unix_mode().is_some_and(|mode| mode & 0o111 != 0);
        let remaining = limits.max_unpacked_bytes.saturating_sub(unpacked);
        let mut contents = Vec::new();
        (&mut file)
            .take(remaining.saturating_add(1))
            .read_to_end(&mut contents)
            .map_err(|e| bad(e.to_string()))?;
        unpacked += contents.len() as u64;
        if unpacked > limits.max_unpacked_bytes {
            return Err(CodeError::UnpackedTooLarge {
                entry: name,
                limit: limits.max_unpacked_bytes,
            });
        }
        let kind = if is_dir {
            EntryKind::Dir
        } else if is_symlink {
            let target = String::from_utf8(std::mem::take(&mut contents))
                .map_err(|_| bad("the symlink target is not UTF-8".into()))?;
            if !symlink_stays_inside(&path, &target) {
                return Err(CodeError::EscapingSymlink {
                    entry: name,
                    target,
                });
            }
            EntryKind::Symlink { target }
        } else {
            EntryKind::File { executable }
        };
        entries.push(Entry {
            path,
            kind,
            contents,
        });
    }
    Ok(entries)
}

/// The entry's path relative to the code folder, or `None` when it is absolute or climbs out with `..`.
fn relative_path(name: &str) -> Option<PathBuf> {
    if name.contains('\\') || name.contains('\0') {
        return None;
    }
    let mut out = PathBuf::new();
    for component in Path::new(name).components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

/// Whether a symlink at `link` (relative to the code folder) pointing at `target` resolves inside the folder.
fn symlink_stays_inside(link: &Path, target: &str) -> bool {
    if target.is_empty() || target.starts_with('/') || target.contains('\\') {
        return false;
    }
    let mut depth: Vec<&std::ffi::OsStr> = link
        .parent()
        .map(|parent| parent.iter().collect())
        .unwrap_or_default();
    for component in Path::new(target).components() {
        match component {
            Component::Normal(part) => depth.push(part),
            Component::CurDir => {}
            Component::ParentDir => {
                if depth.pop().is_none() {
                    return false;
                }
            }
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

/// The content-addressed code store.
#[derive(Debug, Clone)]
pub struct CodeStore {
    /// `<data dir>/code`: one folder and one zip per checksum.
    root: PathBuf,
    /// Bounds applied to every archive.
    limits: CodeLimits,
}

impl CodeStore {
    /// Creates the store's folder.
    pub fn open(root: PathBuf, limits: CodeLimits) -> Result<Self, CodeError> {
        std::fs::create_dir_all(&root).map_err(|source| CodeError::Io {
            path: root.clone(),
            source,
        })?;
        Ok(CodeStore { root, limits })
    }

    /// The folder a checksum's code is unpacked in.
    pub fn dir(&self, checksum: u64) -> PathBuf {
        self.root.join(checksum.to_string())
    }

    /// The stored zip of a checksum.
    pub fn zip_path(&self, checksum: u64) -> PathBuf {
        self.root.join(format!("{checksum}.zip"))
    }

    /// Decodes `code.zipFile` and stores it.
    pub fn store_base64(&self, zip_base64: &str) -> Result<StoredCode, CodeError> {
        use base64::Engine as _;
        let max_base64 = self.limits.max_zip_bytes.saturating_mul(4) / 3 + 4;
        if zip_base64.len() as u64 > max_base64 {
            return Err(CodeError::ZipTooLarge {
                size: zip_base64.len() as u64 * 3 / 4,
                limit: self.limits.max_zip_bytes,
            });
        }
        let zip = base64::engine::general_purpose::STANDARD
            .decode(zip_base64.trim())
            .map_err(|e| CodeError::Base64(e.to_string()))?;
        self.store(&zip)
    }

    /// Checks an archive and unpacks it under its checksum, unless that checksum is already stored.
    pub fn store(&self, zip: &[u8]) -> Result<StoredCode, CodeError> {
        let entries = read_entries(zip, &self.limits)?;
        let stored = StoredCode {
            checksum: crc64(zip),
            size: zip.len() as u64,
        };
        let dir = self.dir(stored.checksum);
        if dir.is_dir() && self.zip_path(stored.checksum).is_file() {
            return Ok(stored);
        }
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| CodeError::Io { path, source }
        };
        let staging = self
            .root
            .join(format!(".staging-{}", uuid::Uuid::new_v4().simple()));
        write_entries(&staging, &entries).inspect_err(|_| {
            let _ = std::fs::remove_dir_all(&staging);
        })?;
        let zip_staging = staging.with_extension("zip");
        std::fs::write(&zip_staging, zip).map_err(io(&zip_staging))?;
        set_mode(&zip_staging, 0o644).map_err(io(&zip_staging))?;
        if dir.exists() {
            // Another upload of the same archive won the race; its copy is identical.
            let _ = std::fs::remove_dir_all(&staging);
        } else {
            std::fs::rename(&staging, &dir).map_err(io(&dir))?;
        }
        let zip_path = self.zip_path(stored.checksum);
        std::fs::rename(&zip_staging, &zip_path).map_err(io(&zip_path))?;
        Ok(stored)
    }
}

fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// Writes checked entries below `root`; folders and files are world-readable so handlers running as an
/// unprivileged user can load them, and nothing is writable but by the runtime.
fn write_entries(root: &Path, entries: &[Entry]) -> Result<(), CodeError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| CodeError::Io { path, source }
    };
    std::fs::create_dir_all(root).map_err(io(root))?;
    set_mode(root, 0o755).map_err(io(root))?;
    let mut made = BTreeSet::new();
    let mut make_dirs = |dir: &Path| -> Result<(), CodeError> {
        let mut current = root.to_path_buf();
        for part in dir.iter() {
            current.push(part);
            if made.insert(current.clone()) && !current.is_dir() {
                std::fs::create_dir(&current).map_err(io(&current))?;
                set_mode(&current, 0o755).map_err(io(&current))?;
            }
        }
        Ok(())
    };
    for entry in entries {
        let target = root.join(&entry.path);
        match &entry.kind {
            EntryKind::Dir => make_dirs(&entry.path)?,
            EntryKind::File { executable } => {
                if let Some(parent) = entry.path.parent() {
                    make_dirs(parent)?;
                }
                let mut file = std::fs::File::create(&target).map_err(io(&target))?;
                file.write_all(&entry.contents).map_err(io(&target))?;
                set_mode(&target, if *executable { 0o755 } else { 0o644 }).map_err(io(&target))?;
            }
            EntryKind::Symlink { target: link_to } => {
                if let Some(parent) = entry.path.parent() {
                    make_dirs(parent)?;
                }
                std::os::unix::fs::symlink(link_to, &target).map_err(io(&target))?;
            }
        }
    }
    Ok(())
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
        let store = CodeStore::open(dir.path().join("code"), limits).unwrap();
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
