//! Unpacking an archive entry by entry, streamed from the zip to the disk, with every write made relative to
//! an open folder handle and never through a link.
//!
//! Each entry's folders are opened one component at a time with `O_NOFOLLOW | O_DIRECTORY` from the code
//! folder's own handle, files are created with `O_CREAT | O_EXCL | O_NOFOLLOW`, links with `symlinkat`, folders
//! with `mkdirat`: a path string is never resolved again, so a link the archive made earlier (or anything
//! else) cannot redirect a write, and an existing name is never replaced. The [`Tree`] refuses the same
//! conflicts by name first, so the error says which entry and why; the kernel's refusal stays as the guard.
//! Nothing is read outside the folder: the only reads are of the archive.

use std::io::{Read, Write as _};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

use super::tree::{self, BadName, Conflict, Node, Tree};
use super::{CodeError, CodeLimits};

/// An entry's unpacked size may exceed [`CodeLimits::max_ratio`] times its compressed size only below this:
/// tiny files compress "infinitely" (an empty line, a run of spaces) without being bombs.
pub const RATIO_FLOOR_BYTES: u64 = 1024 * 1024;

const S_IFMT: u32 = 0o170_000;
const S_IFREG: u32 = 0o100_000;
const S_IFDIR: u32 = 0o040_000;
const S_IFLNK: u32 = 0o120_000;

/// What an entry asks to create.
enum Kind {
    Dir,
    File { executable: bool },
    Link,
}

/// The kind of an entry from its name and Unix mode; devices, FIFOs and sockets are refused.
fn kind(name: &str, unix_mode: Option<u32>) -> Result<Kind, CodeError> {
    let named_dir = name.ends_with('/');
    let mode = unix_mode.unwrap_or(0);
    let bad = |reason: &str| CodeError::BadEntry {
        entry: name.to_owned(),
        reason: reason.to_owned(),
    };
    match mode & S_IFMT {
        S_IFLNK if named_dir => Err(bad(
            "it is both a folder (trailing '/') and a symbolic link",
        )),
        S_IFLNK => Ok(Kind::Link),
        S_IFDIR => Ok(Kind::Dir),
        0 | S_IFREG if named_dir => Ok(Kind::Dir),
        0 | S_IFREG => Ok(Kind::File {
            executable: mode & 0o111 != 0,
        }),
        _ => Err(CodeError::SpecialFile {
            entry: name.to_owned(),
        }),
    }
}

/// What was unpacked.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unpacked {
    /// Entries written (files, folders, links).
    pub entries: usize,
    /// Bytes of file contents written.
    pub bytes: u64,
}

fn open_dir(parent: BorrowedFd<'_>, name: &str) -> rustix::io::Result<OwnedFd> {
    rustix::fs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// The first name the central directory lists twice (classic zip only; `None` when it cannot tell).
fn duplicate_name<R: Read + std::io::Seek>(reader: &mut R) -> Option<String> {
    use std::io::SeekFrom;
    let length = reader.seek(SeekFrom::End(0)).ok()?;
    // The end-of-central-directory record: 22 bytes plus a comment of at most 65535.
    let tail_length = length.min(22 + 65_535);
    reader.seek(SeekFrom::Start(length - tail_length)).ok()?;
    let mut tail = vec![0u8; tail_length as usize];
    reader.read_exact(&mut tail).ok()?;
    let end = (0..tail.len().saturating_sub(21))
        .rev()
        .find(|&at| tail[at..at + 4] == [0x50, 0x4b, 0x05, 0x06])?;
    let u16_at = |b: &[u8], at: usize| u16::from_le_bytes([b[at], b[at + 1]]) as usize;
    let u32_at = |b: &[u8], at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    let count = u16_at(&tail, end + 10);
    let size = u32_at(&tail, end + 12) as usize;
    let offset = u64::from(u32_at(&tail, end + 16));
    if size > 64 * 1024 * 1024 {
        return None;
    }
    reader.seek(SeekFrom::Start(offset)).ok()?;
    let mut directory = vec![0u8; size];
    reader.read_exact(&mut directory).ok()?;
    let mut seen = std::collections::HashSet::new();
    let mut at = 0;
    for _ in 0..count {
        if directory.get(at..at + 4)? != [0x50, 0x4b, 0x01, 0x02] {
            return None;
        }
        let header = directory.get(at..at + 46)?;
        let (name_length, extra, comment) =
            (u16_at(header, 28), u16_at(header, 30), u16_at(header, 32));
        let name = directory.get(at + 46..at + 46 + name_length)?;
        if !seen.insert(name.to_vec()) {
            return Some(String::from_utf8_lossy(name).into_owned());
        }
        at += 46 + name_length + extra + comment;
    }
    None
}

/// Unpacks `archive` into the empty folder `into`, refusing the whole archive at the first entry that is
/// not acceptable (the caller removes the partly filled folder).
pub fn unpack<R: Read + std::io::Seek>(
    archive: R,
    into: &OwnedFd,
    limits: &CodeLimits,
) -> Result<Unpacked, CodeError> {
    let mut archive =
        zip::ZipArchive::new(archive).map_err(|e| CodeError::NotZip(e.to_string()))?;
    if archive.len() > limits.max_entries {
        return Err(CodeError::TooManyEntries {
            limit: limits.max_entries,
        });
    }
    if archive.has_duplicate_names() {
        // The zip reader keeps one entry per name: find the name ourselves to say which.
        let entry = duplicate_name(&mut archive.into_inner())
            .unwrap_or_else(|| "(a name given twice in the central directory)".to_owned());
        return Err(CodeError::Duplicate { entry });
    }
    let mut tree = Tree::default();
    let mut done = Unpacked::default();
    let mut buffer = vec![0u8; 64 * 1024];
    for index in 0..archive.len() {
        let mut file = archive
            .by_index(index)
            .map_err(|e| CodeError::NotZip(format!("entry #{index}: {e}")))?;
        let name = match file.name() {
            Ok(name) => name.into_owned(),
            Err(_) => format!("#{index}"),
        };
        let bad = |reason: String| CodeError::BadEntry {
            entry: name.clone(),
            reason,
        };
        if file.encrypted() {
            return Err(bad("encrypted entries are not supported".into()));
        }
        let path = tree::entry_path(&name).map_err(|why| match why {
            BadName::Escapes => CodeError::EscapingPath {
                entry: name.clone(),
            },
            BadName::TooLong => bad(format!(
                "the name is longer than {} bytes, or one of its parts longer than {}",
                tree::MAX_PATH_BYTES,
                tree::MAX_COMPONENT_BYTES
            )),
        })?;
        let kind = kind(&name, file.unix_mode())?;
        let link_target = match kind {
            Kind::Link => {
                let mut target = Vec::new();
                (&mut file)
                    .take(tree::MAX_PATH_BYTES as u64 + 1)
                    .read_to_end(&mut target)
                    .map_err(|e| bad(e.to_string()))?;
                let target = String::from_utf8(target)
                    .map_err(|_| bad("the symbolic link's target is not UTF-8".into()))?;
                if !tree::link_target_stays_inside(&path, &target) {
                    return Err(CodeError::EscapingSymlink {
                        entry: name,
                        target,
                    });
                }
                Some(target)
            }
            Kind::Dir | Kind::File { .. } => None,
        };
        let node = match (&kind, &link_target) {
            (Kind::Dir, _) => Node::Dir,
            (Kind::File { .. }, _) => Node::File,
            (Kind::Link, target) => Node::Link(target.clone().unwrap_or_default()),
        };
        let placement = tree.place(&path, node).map_err(|conflict| match conflict {
            Conflict::Through(link) => CodeError::ThroughLink {
                entry: name.clone(),
                link,
            },
            Conflict::Duplicate => CodeError::Duplicate {
                entry: name.clone(),
            },
        })?;
        if !placement.create {
            continue;
        }
        let Some((leaf, parents)) = path.split_last() else {
            continue;
        };
        // The parent folder, opened component by component without following links.
        let io = |source: Errno| CodeError::EntryIo {
            entry: name.clone(),
            source: source.into(),
        };
        let mut parent: Option<OwnedFd> = None;
        for (depth, part) in parents.iter().enumerate() {
            let at = parent.as_ref().map_or(into.as_fd(), AsFd::as_fd);
            if depth >= placement.new_parents_from {
                match rustix::fs::mkdirat(at, *part, Mode::from_raw_mode(0o700)) {
                    Ok(()) => {}
                    Err(Errno::EXIST) => {
                        return Err(CodeError::Duplicate {
                            entry: parents[..=depth].join("/"),
                        });
                    }
                    Err(e) => return Err(io(e)),
                }
            }
            let next = open_dir(at, part).map_err(|e| match e {
                Errno::LOOP | Errno::NOTDIR => CodeError::ThroughLink {
                    entry: name.clone(),
                    link: parents[..=depth].join("/"),
                },
                e => io(e),
            })?;
            if depth >= placement.new_parents_from {
                rustix::fs::fchmod(&next, Mode::from_raw_mode(0o755)).map_err(io)?;
            }
            parent = Some(next);
        }
        let at = parent.as_ref().map_or(into.as_fd(), AsFd::as_fd);
        let exists = |e: Errno| match e {
            Errno::EXIST => CodeError::Duplicate {
                entry: name.clone(),
            },
            e => io(e),
        };
        match kind {
            Kind::Dir => {
                rustix::fs::mkdirat(at, *leaf, Mode::from_raw_mode(0o700)).map_err(exists)?;
                let dir = open_dir(at, leaf).map_err(io)?;
                rustix::fs::fchmod(&dir, Mode::from_raw_mode(0o755)).map_err(io)?;
            }
            Kind::Link => {
                let target = link_target.unwrap_or_default();
                rustix::fs::symlinkat(target.as_str(), at, *leaf).map_err(exists)?;
            }
            Kind::File { executable } => {
                let fd = rustix::fs::openat(
                    at,
                    *leaf,
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(exists)?;
                let compressed = file.compressed_size().max(1);
                let mut out = std::fs::File::from(fd);
                let mut written = 0u64;
                loop {
                    let n = match file.read(&mut buffer) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(bad(e.to_string())),
                    };
                    written += n as u64;
                    done.bytes += n as u64;
                    if done.bytes > limits.max_unpacked_bytes {
                        return Err(CodeError::UnpackedTooLarge {
                            entry: name,
                            limit: limits.max_unpacked_bytes,
                        });
                    }
                    if written > RATIO_FLOOR_BYTES
                        && written > compressed.saturating_mul(limits.max_ratio)
                    {
                        return Err(CodeError::RatioTooHigh {
                            entry: name,
                            limit: limits.max_ratio,
                        });
                    }
                    out.write_all(&buffer[..n])
                        .map_err(|source| CodeError::EntryIo {
                            entry: name.clone(),
                            source,
                        })?;
                }
                let mode = if executable { 0o755 } else { 0o644 };
                rustix::fs::fchmod(&out, Mode::from_raw_mode(mode)).map_err(io)?;
            }
        }
        done.entries += 1;
    }
    if let Some((entry, target)) = tree.escaping_link() {
        return Err(CodeError::EscapingSymlink { entry, target });
    }
    Ok(done)
}
