//! Hostile code archives against the real code store and the real API: chained links, links to folders,
//! writes through links, replaced entries, hard-link-like shared data, duplicates, `.` / `..` in every
//! spelling, absolute paths, backslashes, special files, bombs. One invariant holds for every archive, refused
//! or not: nothing outside the code store's folder is created, changed or read, and what is unpacked stays
//! inside it. A property test holds it over generated archives; `fuzz/fuzz_targets/code_archive.rs` over
//! arbitrary bytes.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use chaintrigger::runtime::code::{CodeError, CodeLimits, CodeStore, StoreAccess, StoredCode};
use proptest::prelude::*;
use serde_json::json;

use crate::support::runtime::{TestRuntime, test_dir, zip};

// ---------------------------------------------------------------------------------------------------------------
// Archives written byte by byte

/// One entry of a [`RawZip`].
#[derive(Debug, Clone)]
pub struct RawEntry {
    /// The name's bytes, as stored (anything: backslashes, NUL, `..`).
    pub name: Vec<u8>,
    /// The stored (uncompressed) data; a link's target.
    pub data: Vec<u8>,
    /// `st_mode` with its type bits, stored in the external attributes; 0 for an MS-DOS entry without one.
    pub mode: u32,
    /// Points the central directory entry at an earlier entry's data (two names, one content).
    pub alias_of: Option<usize>,
}

/// A zip archive written field by field, so a test can write what no zip library would.
#[derive(Debug, Clone, Default)]
pub struct RawZip {
    /// The entries, in order.
    pub entries: Vec<RawEntry>,
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

impl RawZip {
    fn push(mut self, name: &[u8], data: &[u8], mode: u32) -> Self {
        self.entries.push(RawEntry {
            name: name.to_vec(),
            data: data.to_vec(),
            mode,
            alias_of: None,
        });
        self
    }

    /// A regular file.
    pub fn file(self, name: &str, data: &str) -> Self {
        self.push(name.as_bytes(), data.as_bytes(), 0o100_644)
    }

    /// A folder (give the name its trailing `/`).
    pub fn dir(self, name: &str) -> Self {
        self.push(name.as_bytes(), b"", 0o040_755)
    }

    /// A symbolic link.
    pub fn link(self, name: &str, target: &str) -> Self {
        self.push(name.as_bytes(), target.as_bytes(), 0o120_777)
    }

    /// An entry with any mode and raw name.
    pub fn raw(self, name: &[u8], data: &[u8], mode: u32) -> Self {
        self.push(name, data, mode)
    }

    /// A second name for the data of entry `of` (no local header of its own).
    pub fn alias(mut self, name: &str, of: usize) -> Self {
        self.entries.push(RawEntry {
            name: name.as_bytes().to_vec(),
            data: Vec::new(),
            mode: 0o100_644,
            alias_of: Some(of),
        });
        self
    }

    /// The archive's bytes.
    pub fn build(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut offsets = Vec::new();
        for entry in &self.entries {
            if entry.alias_of.is_some() {
                offsets.push(0);
                continue;
            }
            offsets.push(out.len() as u32);
            out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
            out.extend_from_slice(&20u16.to_le_bytes()); // version needed
            out.extend_from_slice(&0u16.to_le_bytes()); // flags
            out.extend_from_slice(&0u16.to_le_bytes()); // stored
            out.extend_from_slice(&0u32.to_le_bytes()); // time, date
            out.extend_from_slice(&crc32(&entry.data).to_le_bytes());
            out.extend_from_slice(&(entry.data.len() as u32).to_le_bytes());
            out.extend_from_slice(&(entry.data.len() as u32).to_le_bytes());
            out.extend_from_slice(&(entry.name.len() as u16).to_le_bytes());
            out.extend_from_slice(&0u16.to_le_bytes()); // extra
            out.extend_from_slice(&entry.name);
            out.extend_from_slice(&entry.data);
        }
        let directory_start = out.len() as u32;
        for (index, entry) in self.entries.iter().enumerate() {
            let (data, offset) = match entry.alias_of {
                Some(of) => (&self.entries[of].data, offsets[of]),
                None => (&entry.data, offsets[index]),
            };
            let made_by: u16 = if entry.mode == 0 { 20 } else { (3 << 8) | 20 };
            out.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
            out.extend_from_slice(&made_by.to_le_bytes());
            out.extend_from_slice(&20u16.to_le_bytes());
            out.extend_from_slice(&0u16.to_le_bytes());
            out.extend_from_slice(&0u16.to_le_bytes());
            out.extend_from_slice(&0u32.to_le_bytes());
            out.extend_from_slice(&crc32(data).to_le_bytes());
            out.extend_from_slice(&(data.len() as u32).to_le_bytes());
            out.extend_from_slice(&(data.len() as u32).to_le_bytes());
            out.extend_from_slice(&(entry.name.len() as u16).to_le_bytes());
            out.extend_from_slice(&0u16.to_le_bytes()); // extra
            out.extend_from_slice(&0u16.to_le_bytes()); // comment
            out.extend_from_slice(&0u16.to_le_bytes()); // disk
            out.extend_from_slice(&0u16.to_le_bytes()); // internal attributes
            out.extend_from_slice(&(entry.mode << 16).to_le_bytes());
            out.extend_from_slice(&offset.to_le_bytes());
            out.extend_from_slice(&entry.name);
        }
        let directory_size = out.len() as u32 - directory_start;
        out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&(self.entries.len() as u16).to_le_bytes());
        out.extend_from_slice(&(self.entries.len() as u16).to_le_bytes());
        out.extend_from_slice(&directory_size.to_le_bytes());
        out.extend_from_slice(&directory_start.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The invariant

/// A code store with things around it that an archive must not touch: a secret file and a folder next to the
/// data folder, and a stand-in database next to `code/`.
struct Arena {
    dir: tempfile::TempDir,
    store: CodeStore,
    code_root: PathBuf,
    secret: String,
}

/// Path → what it is (kind, mode, contents or link target), not following links.
type Snapshot = BTreeMap<PathBuf, String>;

impl Arena {
    fn new() -> Arena {
        Self::with_limits(CodeLimits::default())
    }

    fn with_limits(limits: CodeLimits) -> Arena {
        let dir = test_dir("archives-");
        let secret = format!("SECRET-{}", uuid::Uuid::new_v4().simple());
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(outside.join("sub")).unwrap();
        std::fs::write(outside.join("secret.txt"), &secret).unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(data.join("runtime.sqlite"), "the database").unwrap();
        let code_root = data.join("code");
        let store = CodeStore::open(code_root.clone(), limits, StoreAccess::Private).unwrap();
        Arena {
            dir,
            store,
            code_root,
            secret,
        }
    }

    fn outside(&self) -> PathBuf {
        self.dir.path().join("outside")
    }

    /// Everything under the arena except the store's own folder.
    fn snapshot(&self) -> Snapshot {
        let mut out = Snapshot::new();
        let mut pending = vec![self.dir.path().to_path_buf()];
        while let Some(path) = pending.pop() {
            if path.starts_with(&self.code_root) {
                continue;
            }
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let what = if meta.file_type().is_symlink() {
                format!("link -> {}", std::fs::read_link(&path).unwrap().display())
            } else if meta.is_dir() {
                for entry in std::fs::read_dir(&path).unwrap() {
                    pending.push(entry.unwrap().path());
                }
                format!("dir {:o}", meta.mode())
            } else {
                format!(
                    "file {:o} {:?}",
                    meta.mode(),
                    String::from_utf8_lossy(&std::fs::read(&path).unwrap())
                )
            };
            out.insert(path, what);
        }
        out
    }

    /// Stores `zip` and checks the invariant whatever the outcome.
    fn store(&self, zip: &[u8]) -> Result<StoredCode, CodeError> {
        let before = self.snapshot();
        let result = self.store.store(zip);
        assert_eq!(
            before,
            self.snapshot(),
            "something outside the code store changed (result {result:?})"
        );
        let leftovers: Vec<String> = std::fs::read_dir(&self.code_root)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with(".staging"))
            .collect();
        assert!(leftovers.is_empty(), "staging left behind: {leftovers:?}");
        if let Ok(stored) = &result {
            self.check_unpacked(&self.store.dir(stored.checksum));
        }
        result
    }

    /// What an accepted archive unpacked stays inside its folder and copied nothing from outside.
    fn check_unpacked(&self, folder: &Path) {
        let root = std::fs::canonicalize(folder).unwrap();
        let mut pending = vec![folder.to_path_buf()];
        while let Some(path) = pending.pop() {
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.file_type().is_symlink() {
                match std::fs::canonicalize(&path) {
                    Ok(real) => assert!(
                        real.starts_with(&root),
                        "{} leads to {}",
                        path.display(),
                        real.display()
                    ),
                    Err(e) => assert_eq!(
                        e.kind(),
                        std::io::ErrorKind::NotFound,
                        "{}: {e}",
                        path.display()
                    ),
                }
            } else if meta.is_dir() {
                assert_eq!(meta.mode() & 0o7777, 0o755, "{}", path.display());
                for entry in std::fs::read_dir(&path).unwrap() {
                    pending.push(entry.unwrap().path());
                }
            } else {
                assert!(meta.is_file(), "only files, folders and links");
                assert_eq!(meta.nlink(), 1, "{} is hard-linked", path.display());
                assert!(
                    meta.mode() & 0o7777 == 0o644 || meta.mode() & 0o7777 == 0o755,
                    "{}: {:o}",
                    path.display(),
                    meta.mode()
                );
                let contents = std::fs::read(&path).unwrap();
                assert!(
                    !String::from_utf8_lossy(&contents).contains(&self.secret),
                    "{} holds the secret from outside",
                    path.display()
                );
            }
        }
    }

    /// Asserts an archive is refused with an error naming `entry` (and satisfying `kind`).
    fn refuses(&self, zip: &[u8], entry: &str, kind: impl Fn(&CodeError) -> bool) -> String {
        let error = self.store(zip).expect_err("the archive is refused");
        let message = error.to_string();
        assert!(kind(&error), "unexpected refusal: {message}");
        assert!(
            message.contains(&format!("'{entry}'")),
            "the message names '{entry}': {message}"
        );
        assert!(error.is_client_error(), "a bad archive is a 400: {message}");
        message
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Hostile archives, one by one

#[test]
fn chained_links_cannot_lead_out() {
    let arena = Arena::new();
    // A link to `..`, then a path through it.
    arena.refuses(
        &RawZip::default()
            .link("up", "..")
            .file("up/escaped.txt", "x")
            .build(),
        "up",
        |e| matches!(e, CodeError::EscapingSymlink { .. }),
    );
    // The same one level down, where `..` alone stays inside: the file through it is refused.
    arena.refuses(
        &RawZip::default()
            .dir("d/")
            .link("d/up", "..")
            .file("d/up/x.py", "x")
            .build(),
        "d/up/x.py",
        |e| matches!(e, CodeError::ThroughLink { link, .. } if link == "d/up"),
    );
    // Links that each read as inside, but climb out when the kernel follows the first.
    arena.refuses(
        &RawZip::default()
            .dir("d/")
            .link("d/up", "..")
            .link("d/up2", "up/..")
            .build(),
        "d/up2",
        |e| matches!(e, CodeError::EscapingSymlink { .. }),
    );
    arena.refuses(
        &RawZip::default()
            .dir("a/")
            .link("a/up", "..")
            .link("x", "a/up/../outside/secret.txt")
            .build(),
        "x",
        |e| matches!(e, CodeError::EscapingSymlink { .. }),
    );
    // Three levels above the code folder: `x` reads as `a`, the kernel climbs from `up`'s target. (Accepted
    // before, this archive wrote `x/escaped.txt` next to the data folder, as the runtime's user.)
    arena.refuses(
        &RawZip::default()
            .link("a/b/c/up", "../../..")
            .link("x", "a/b/c/up/../../..")
            .file("x/escaped.txt", "written outside")
            .build(),
        "x",
        |e| {
            matches!(
                e,
                CodeError::EscapingSymlink { .. } | CodeError::ThroughLink { .. }
            )
        },
    );
    assert!(!arena.dir.path().join("data/escaped.txt").exists());
    // A loop.
    arena.refuses(
        &RawZip::default().link("a", "b").link("b", "a").build(),
        "a",
        |e| matches!(e, CodeError::EscapingSymlink { .. }),
    );
    // Straight out: relative, absolute, to the secret.
    let absolute = arena.outside().join("secret.txt").display().to_string();
    for target in ["../../outside/secret.txt", "/etc/passwd", &absolute, "/"] {
        arena.refuses(
            &RawZip::default().link("leak", target).build(),
            "leak",
            |e| matches!(e, CodeError::EscapingSymlink { .. }),
        );
    }
}

#[test]
fn nothing_is_written_through_a_link_or_a_file() {
    let arena = Arena::new();
    // A link to a folder of the archive, then a file "in" it.
    arena.refuses(
        &RawZip::default()
            .dir("real/")
            .link("lib", "real")
            .file("lib/evil.py", "x")
            .build(),
        "lib/evil.py",
        |e| matches!(e, CodeError::ThroughLink { link, .. } if link == "lib"),
    );
    // A folder entry through a link.
    arena.refuses(
        &RawZip::default()
            .dir("real/")
            .link("lib", "real")
            .dir("lib/sub/")
            .build(),
        "lib/sub/",
        |e| matches!(e, CodeError::ThroughLink { .. }),
    );
    // Under a file.
    arena.refuses(
        &RawZip::default()
            .file("index.py", "x")
            .file("index.py/x", "y")
            .build(),
        "index.py/x",
        |e| matches!(e, CodeError::ThroughLink { link, .. } if link == "index.py"),
    );
}

#[test]
fn entries_never_replace_each_other() {
    let arena = Arena::new();
    let cases: [(RawZip, &str); 6] = [
        // A file written through a link of the same name.
        (
            RawZip::default()
                .file("target.py", "t")
                .link("f.py", "target.py")
                .file("f.py", "x"),
            "f.py",
        ),
        // A link replaced by a folder.
        (RawZip::default().dir("d/").link("l", "d").dir("l/"), "l/"),
        // A file replaced by a link.
        (RawZip::default().file("x", "1").link("x", "y"), "x"),
        // A folder replaced by a link.
        (RawZip::default().dir("d/").link("d", "."), "d"),
        // Two spellings of one path.
        (
            RawZip::default().file("a/b", "1").file("./a//b", "2"),
            "./a//b",
        ),
        // The code folder itself as a file.
        (RawZip::default().file(".", "x"), "."),
    ];
    for (zip, entry) in cases {
        arena.refuses(&zip.build(), entry, |e| {
            matches!(e, CodeError::Duplicate { .. } | CodeError::BadEntry { .. })
        });
    }
    // Exactly the same name twice in the central directory.
    arena.refuses(
        &RawZip::default()
            .file("index.py", "1")
            .file("index.py", "2")
            .build(),
        "index.py",
        |e| matches!(e, CodeError::Duplicate { .. }),
    );
    // A folder named after its files, and again in another spelling, is not a conflict.
    let stored = arena
        .store(
            &RawZip::default()
                .file("d/x.py", "x")
                .dir("d/")
                .dir("./d/")
                .build(),
        )
        .expect("folders may be named more than once");
    assert!(arena.store.dir(stored.checksum).join("d/x.py").is_file());
}

#[test]
fn dot_dot_absolute_and_backslash_names_are_refused_in_every_spelling() {
    let arena = Arena::new();
    for name in [
        "../escaped.txt",
        "../../../../../../tmp/escaped.txt",
        "a/../../escaped.txt",
        "./../escaped.txt",
        "a/./../../escaped.txt",
        "..",
        "../",
        "a/..",
        "/etc/cron.d/escaped",
        "//tmp/escaped",
        "/",
        "..\\escaped.txt",
        "a\\..\\..\\escaped.txt",
        "C:\\Windows\\escaped.txt",
    ] {
        arena.refuses(&RawZip::default().file(name, "x").build(), name, |e| {
            matches!(e, CodeError::EscapingPath { .. })
        });
        arena.refuses(&RawZip::default().dir(name).build(), name, |e| {
            matches!(e, CodeError::EscapingPath { .. })
        });
    }
    arena.refuses(
        &RawZip::default().raw(b"a\0/../x", b"x", 0o100_644).build(),
        "a\0/../x",
        |e| matches!(e, CodeError::EscapingPath { .. }),
    );
    // `.` and empty parts mean nothing: they are dropped.
    let stored = arena
        .store(&RawZip::default().file("./lib//./m.py", "x").build())
        .expect("./ is the code folder");
    assert!(arena.store.dir(stored.checksum).join("lib/m.py").is_file());
}

#[test]
fn special_files_are_refused_and_shared_data_is_copied() {
    let arena = Arena::new();
    for (mode, what) in [
        (0o010_644, "fifo"),
        (0o020_644, "char-device"),
        (0o060_644, "block-device"),
        (0o140_755, "socket"),
    ] {
        arena.refuses(
            &RawZip::default().raw(what.as_bytes(), b"", mode).build(),
            what,
            |e| matches!(e, CodeError::SpecialFile { .. }),
        );
    }
    arena.refuses(
        &RawZip::default()
            .raw(b"dirlink/", b"target", 0o120_777)
            .build(),
        "dirlink/",
        |e| matches!(e, CodeError::BadEntry { .. }),
    );
    // Two names for one piece of data (what a zip has closest to a hard link): two separate files.
    let stored = arena
        .store(
            &RawZip::default()
                .file("a.py", "shared")
                .alias("b.py", 0)
                .build(),
        )
        .expect("shared data is allowed");
    let folder = arena.store.dir(stored.checksum);
    let (a, b) = (
        std::fs::metadata(folder.join("a.py")).unwrap(),
        std::fs::metadata(folder.join("b.py")).unwrap(),
    );
    assert_ne!(a.ino(), b.ino());
    assert_eq!(std::fs::read(folder.join("b.py")).unwrap(), b"shared");
    // Set-user-id bits and world write are never kept.
    let stored = arena
        .store(
            &RawZip::default()
                .raw(b"tool", b"#!/bin/sh", 0o104_777)
                .build(),
        )
        .unwrap();
    let mode = std::fs::metadata(arena.store.dir(stored.checksum).join("tool"))
        .unwrap()
        .mode();
    assert_eq!(mode & 0o7777, 0o755);
}

#[test]
fn inner_links_are_kept_and_bounds_are_enforced_while_streaming() {
    let arena = Arena::with_limits(CodeLimits {
        max_unpacked_bytes: 64 * 1024 * 1024,
        max_entries: 100,
        ..CodeLimits::default()
    });
    let stored = arena
        .store(
            &RawZip::default()
                .dir("lib/")
                .file("lib/real.py", "x = 1")
                .link("lib/link.py", "real.py")
                .link("lib/cur", ".")
                .link("bin/tool", "../lib/cur/real.py")
                .link("dangling", "missing/file")
                .build(),
        )
        .expect("links inside are kept");
    let folder = arena.store.dir(stored.checksum);
    assert_eq!(
        std::fs::read_to_string(folder.join("bin/tool")).unwrap(),
        "x = 1"
    );

    // A deflate bomb: 50 MiB of zeros in a few kilobytes, refused at its first entry by the ratio.
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    writer.start_file("zeros.bin", options).unwrap();
    let megabyte = vec![0u8; 1024 * 1024];
    for _ in 0..50 {
        writer.write_all(&megabyte).unwrap();
    }
    let bomb = writer.finish().unwrap().into_inner();
    assert!(bomb.len() < 200 * 1024);
    arena.refuses(&bomb, "zeros.bin", |e| {
        matches!(e, CodeError::RatioTooHigh { .. })
    });

    // Too many entries: refused before anything is written.
    let mut many = RawZip::default();
    for i in 0..101 {
        many = many.file(&format!("f{i}"), "");
    }
    let message = arena.store(&many.build()).unwrap_err().to_string();
    assert!(message.contains("more than 100 entries"), "{message}");

    // Too much in total, named at the entry that crosses the bound.
    let tight = Arena::with_limits(CodeLimits {
        max_unpacked_bytes: 1000,
        ..CodeLimits::default()
    });
    tight.refuses(
        &RawZip::default()
            .file("a.txt", &"a".repeat(600))
            .file("b.txt", &"b".repeat(600))
            .build(),
        "b.txt",
        |e| matches!(e, CodeError::UnpackedTooLarge { .. }),
    );

    // Corrupt data (a wrong CRC) and a truncated archive.
    let mut corrupt = RawZip::default().file("x.py", "print(1)").build();
    let at = corrupt
        .windows(8)
        .position(|w| w == b"print(1)")
        .expect("stored data");
    corrupt[at] = b'P';
    arena.refuses(&corrupt, "x.py", |e| {
        matches!(e, CodeError::BadEntry { .. })
    });
    let whole = RawZip::default().file("x.py", "print(1)").build();
    assert!(matches!(
        arena.store(&whole[..whole.len() - 10]),
        Err(CodeError::NotZip(_))
    ));
    assert!(matches!(
        arena.store(b"PK\x03\x04"),
        Err(CodeError::NotZip(_))
    ));
}

#[test]
fn a_stored_checksum_is_reused_only_for_the_same_bytes() {
    let arena = Arena::new();
    let zip = RawZip::default().file("index.py", "v1").build();
    let first = arena.store(&zip).unwrap();
    assert_eq!(arena.store(&zip).unwrap(), first, "the same archive again");
    // Craft another archive with the same CRC-64: CRC is linear, 8 appended bytes can set it to anything.
    let other = forge_crc64(
        &RawZip::default().file("index.py", "evil").build(),
        first.checksum,
    );
    assert_eq!(chaintrigger::runtime::code::crc64(&other), first.checksum);
    let error = arena.store(&other).expect_err("a collision is refused");
    assert!(
        matches!(error, CodeError::ChecksumCollision { .. }),
        "{error}"
    );
    assert_eq!(
        std::fs::read_to_string(arena.store.dir(first.checksum).join("index.py")).unwrap(),
        "v1",
        "the stored code is untouched"
    );
}

/// Appends 8 bytes (a zip comment) to `zip` so that its CRC-64 becomes `wanted`.
fn forge_crc64(zip: &[u8], wanted: u64) -> Vec<u8> {
    use chaintrigger::runtime::code::crc64;
    // The end record's comment length goes from 0 to 8; then 8 free bytes follow.
    let mut base = zip.to_vec();
    let length_at = base.len() - 2;
    base[length_at..].copy_from_slice(&8u16.to_le_bytes());
    // crc(base ‖ x) is affine in x over GF(2): solve bit by bit from the 64 unit vectors.
    let with = |x: u64| {
        let mut bytes = base.clone();
        bytes.extend_from_slice(&x.to_le_bytes());
        crc64(&bytes)
    };
    let zero = with(0);
    let columns: Vec<u64> = (0..64).map(|bit| with(1 << bit) ^ zero).collect();
    let target = wanted ^ zero;
    // Gaussian elimination on the 64x64 matrix whose columns are `columns`.
    let mut rows: Vec<(u64, u64)> = Vec::new(); // (combination of columns as bits, its value)
    for (bit, column) in columns.iter().enumerate() {
        let mut value = *column;
        let mut combination = 1u64 << bit;
        for (row_combination, row_value) in &rows {
            let pivot = 63 - row_value.leading_zeros();
            if value >> pivot & 1 == 1 {
                value ^= row_value;
                combination ^= row_combination;
            }
        }
        if value != 0 {
            rows.push((combination, value));
            rows.sort_by_key(|(_, v)| std::cmp::Reverse(*v));
        }
    }
    let mut remaining = target;
    let mut x = 0u64;
    for (combination, value) in &rows {
        let pivot = 63 - value.leading_zeros();
        if remaining >> pivot & 1 == 1 {
            remaining ^= value;
            x ^= combination;
        }
    }
    assert_eq!(remaining, 0, "CRC-64 is invertible with 64 free bits");
    let mut out = base;
    out.extend_from_slice(&x.to_le_bytes());
    out
}

// ---------------------------------------------------------------------------------------------------------------
// Generated archives

/// Name parts an attacker would try.
const PARTS: &[&str] = &[
    "a", "b", "l", "x.py", "..", ".", "", "\\..", "..\\", "outside", "C:",
];
/// Link targets an attacker would try (`OUTSIDE` stands for the arena's outside folder, absolute).
const TARGETS: &[&str] = &[
    "..",
    "../..",
    "../../..",
    ".",
    "a",
    "a/..",
    "l/..",
    "l/../..",
    "b/../..",
    "a/l/..",
    "/etc",
    "/",
    "../outside/secret.txt",
    "../../outside/secret.txt",
    "../../../outside/secret.txt",
    "OUTSIDE/secret.txt",
    "OUTSIDE",
    "l",
    "x.py",
    "a/b/../../..",
];

#[derive(Debug, Clone)]
enum GeneratedKind {
    File,
    Dir,
    Link(usize),
    Special(u32),
    Alias(usize),
}

fn generated_name() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec!["", "/", "./", "//"]),
        prop::collection::vec(prop::sample::select(PARTS.to_vec()), 1..4),
        any::<bool>(),
    )
        .prop_map(|(prefix, parts, slash)| {
            let mut name = format!("{prefix}{}", parts.join("/"));
            if slash {
                name.push('/');
            }
            name
        })
}

fn generated_kind() -> impl Strategy<Value = GeneratedKind> {
    prop_oneof![
        4 => Just(GeneratedKind::File),
        2 => Just(GeneratedKind::Dir),
        5 => (0..TARGETS.len()).prop_map(GeneratedKind::Link),
        1 => prop::sample::select(vec![0o010_644u32, 0o020_644, 0o140_755, 0o104_755])
            .prop_map(GeneratedKind::Special),
        1 => (0usize..8).prop_map(GeneratedKind::Alias),
    ]
}

fn build_generated(entries: &[(String, GeneratedKind)], outside: &Path) -> Vec<u8> {
    let mut zip = RawZip::default();
    for (name, kind) in entries {
        zip = match kind {
            GeneratedKind::File => zip.file(name, "print('hi')"),
            GeneratedKind::Dir => zip.dir(name),
            GeneratedKind::Link(target) => zip.link(
                name,
                &TARGETS[*target].replace("OUTSIDE", &outside.display().to_string()),
            ),
            GeneratedKind::Special(mode) => zip.raw(name.as_bytes(), b"", *mode),
            GeneratedKind::Alias(of) => {
                let usable = zip
                    .entries
                    .iter()
                    .enumerate()
                    .filter(|(_, e)| e.alias_of.is_none())
                    .map(|(i, _)| i)
                    .nth(*of);
                match usable {
                    Some(of) => zip.alias(name, of),
                    None => zip.file(name, "x"),
                }
            }
        };
    }
    zip.build()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    /// Whatever the archive holds, and whether it is refused or not, nothing outside the code folder is
    /// created, changed or read (see `Arena::store`).
    #[test]
    fn generated_hostile_archives_never_reach_outside_the_code_folder(
        entries in prop::collection::vec((generated_name(), generated_kind()), 1..10)
    ) {
        let arena = Arena::new();
        let zip = build_generated(&entries, &arena.outside());
        let _ = arena.store(&zip);
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Through the API

const FUNCTIONS: &str = "/2016-08-15/services/svc/functions";

fn create_body(name: &str, zip: &[u8]) -> serde_json::Value {
    json!({
        "functionName": name,
        "runtime": "python3",
        "handler": "index.handler",
        "code": {"zipFile": base64::engine::general_purpose::STANDARD.encode(zip)},
    })
}

#[tokio::test]
async fn the_api_refuses_hostile_archives_naming_the_entry() {
    let dir = test_dir("rt-archives-");
    let rt = TestRuntime::start(&dir.path().join("data"), |_| {}).await;
    rt.create_service("svc").await;
    let escape = dir.path().join("escaped.txt");
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            RawZip::default()
                .file("index.py", "def handler(e, c): return 1")
                .dir("d/")
                .link("d/up", "..")
                .file("d/up/x.py", "x")
                .build(),
            "d/up/x.py",
        ),
        (
            RawZip::default()
                .link("up", "../../..")
                .file("up/escaped.txt", "x")
                .build(),
            "up",
        ),
        (
            RawZip::default().file("../../escaped.txt", "x").build(),
            "../../escaped.txt",
        ),
    ];
    for (zip, entry) in cases {
        let reply = rt.json("POST", FUNCTIONS, create_body("evil", &zip)).await;
        let message = reply.assert_error(400, "InvalidArgument");
        assert!(message.contains(&format!("'{entry}'")), "{message}");
        rt.send("GET", &format!("{FUNCTIONS}/evil"), &[], vec![])
            .await
            .assert_error(404, "FunctionNotFound");
    }
    assert!(!escape.exists());
    // A function with inner links works, through them.
    let zip = RawZip::default()
        .file(
            "real.py",
            "def handler(e, c):\n    return 'through the link'\n",
        )
        .link("index.py", "real.py")
        .build();
    let reply = rt
        .json("POST", FUNCTIONS, create_body("linked", &zip))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        rt.invoke("svc", "linked", "").await.text(),
        "through the link"
    );
    rt.stop().await;
}

#[tokio::test]
async fn large_uploads_are_read_in_place_and_escaped_ones_still_work() {
    let dir = test_dir("rt-large-upload-");
    let rt = TestRuntime::start(&dir.path().join("data"), |_| {}).await;
    rt.create_service("svc").await;
    // Over 64 KiB: the base64 is decoded where it lies in the body.
    let mut noise = String::new();
    for i in 0..20_000u32 {
        noise.push_str(&format!("{:08x}", i.wrapping_mul(2_654_435_761)));
    }
    let big = zip(&[
        ("index.py", "def handler(e, c):\n    return 'big'\n"),
        ("noise.txt", &noise),
    ]);
    let body = create_body("big", &big).to_string();
    assert!(body.len() > 64 * 1024);
    let reply = rt
        .send(
            "POST",
            FUNCTIONS,
            &[("content-type", "application/json")],
            body.into_bytes(),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(rt.invoke("svc", "big", "").await.text(), "big");
    // The same with every '/' of the base64 escaped as JSON allows ("\/"): parsed the usual way.
    let escaped = create_body("escaped", &big).to_string().replace('/', "\\/");
    assert!(escaped.contains("\\/"));
    let reply = rt
        .send(
            "POST",
            FUNCTIONS,
            &[("content-type", "application/json")],
            escaped.into_bytes(),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(rt.invoke("svc", "escaped", "").await.text(), "big");
    // Broken JSON and a wrong shape are named as before.
    let broken = format!("{{\"code\": \"{}\"}}", "A".repeat(70_000));
    let message = rt
        .send("POST", FUNCTIONS, &[], broken.into_bytes())
        .await
        .assert_error(400, "InvalidArgument");
    assert!(message.starts_with("invalid JSON body: "), "{message}");
    rt.stop().await;
}

#[tokio::test]
async fn code_nobody_uses_is_removed() {
    let dir = test_dir("rt-gc-");
    let data = dir.path().join("data");
    let rt = TestRuntime::start(&data, |_| {}).await;
    rt.create_service("svc").await;
    let code = |version: &str| {
        zip(&[(
            "index.py",
            &format!("def handler(e, c):\n    return '{version}'\n"),
        )])
    };
    let stored = |checksum: &str| {
        let folder = data.join("code").join(checksum);
        let zip = data.join("code").join(format!("{checksum}.zip"));
        (folder.is_dir(), zip.is_file())
    };
    let v1 = rt
        .json("POST", FUNCTIONS, create_body("a", &code("v1")))
        .await
        .json()["codeChecksum"]
        .as_str()
        .unwrap()
        .to_owned();
    // The same code for a second function: stored once, kept while either uses it.
    let shared = rt
        .json("POST", FUNCTIONS, create_body("b", &code("v1")))
        .await;
    assert_eq!(shared.json()["codeChecksum"], v1.as_str());
    assert_eq!(rt.invoke("svc", "a", "").await.text(), "v1");
    let v2 = rt
        .json(
            "PUT",
            &format!("{FUNCTIONS}/a"),
            json!({"code": {"zipFile": base64::engine::general_purpose::STANDARD.encode(code("v2"))}}),
        )
        .await
        .json()["codeChecksum"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(stored(&v1), (true, true), "b still uses v1");
    assert_eq!(rt.invoke("svc", "a", "").await.text(), "v2");
    let deleted = rt
        .send("DELETE", &format!("{FUNCTIONS}/b"), &[], vec![])
        .await;
    assert_eq!(deleted.status, 204);
    assert_eq!(stored(&v1), (false, false), "nobody uses v1 any more");
    assert_eq!(stored(&v2), (true, true));
    let deleted = rt
        .send("DELETE", &format!("{FUNCTIONS}/a"), &[], vec![])
        .await;
    assert_eq!(deleted.status, 204);
    assert_eq!(stored(&v2), (false, false));
    rt.stop().await;
}

#[tokio::test]
async fn uploads_over_the_bound_get_the_throttling_error() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let dir = test_dir("rt-uploads-");
    let rt = TestRuntime::start(&dir.path().join("data"), |config| {
        config.code_limits.max_concurrent_uploads = 1;
    })
    .await;
    rt.create_service("svc").await;
    let body = create_body(
        "slow",
        &zip(&[("index.py", "def handler(e, c): return 'slow'")]),
    )
    .to_string()
    .into_bytes();
    // The first upload holds the only slot: its body arrives in two parts, the second one later.
    let address = rt.url.trim_start_matches("http://").to_owned();
    let mut slow = tokio::net::TcpStream::connect(&address).await.unwrap();
    let head = format!(
        "POST {FUNCTIONS} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    slow.write_all(&body[..10]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = rt
        .json(
            "POST",
            FUNCTIONS,
            create_body("fast", &zip(&[("index.py", "x = 1")])),
        )
        .await;
    let message = second.assert_error(503, "ResourceThrottled");
    assert!(message.contains("1 code uploads"), "{message}");
    slow.write_all(&body[10..]).await.unwrap();
    let mut answer = String::new();
    slow.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(rt.invoke("svc", "slow", "").await.text(), "slow");
    let again = rt
        .json(
            "POST",
            FUNCTIONS,
            create_body("fast", &zip(&[("index.py", "x = 1")])),
        )
        .await;
    assert_eq!(
        again.status,
        200,
        "the slot is free again: {}",
        again.text()
    );
    rt.stop().await;
}
