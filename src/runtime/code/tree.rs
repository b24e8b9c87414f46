//! The pure part of unpacking an archive: what an entry's name means inside the code folder, and a model of
//! what the archive has created so far, so that every conflict is refused by name before (and independently
//! of) the kernel refusing it.
//!
//! Invariants the unpacker relies on:
//! - [`entry_path`] accepts only names made of plain components: no absolute path, no `..` anywhere, no
//!   backslash, no NUL; `.` and empty components are dropped (`./a//b` is `a/b`), so two spellings of one
//!   path are the same key in the [`Tree`];
//! - [`Tree::place`] refuses an entry under anything but a folder of the same archive (a file, or a link,
//!   whatever it points to) and refuses a second entry at a path already taken (a link replaced by a file or
//!   a folder, a file by a link...), except a folder named again;
//! - [`Tree::escaping_link`] follows every link the way the kernel would (a `..` after a link climbs from
//!   the link's target, not from the link) and reports one that leads out of the folder or loops.

use std::collections::HashMap;

/// Longest file name component Linux accepts (NAME_MAX).
pub const MAX_COMPONENT_BYTES: usize = 255;
/// Longest entry name accepted (PATH_MAX), also the longest symbolic link target.
pub const MAX_PATH_BYTES: usize = 4096;
/// How many links one resolution may follow before it counts as a loop (the kernel's own limit).
const MAX_LINK_HOPS: usize = 40;

/// Why an entry name cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadName {
    /// Absolute, `..`, backslash or NUL: it would leave the code folder (or mean something else elsewhere).
    Escapes,
    /// A component longer than [`MAX_COMPONENT_BYTES`] or a name longer than [`MAX_PATH_BYTES`].
    TooLong,
}

/// The components of an entry name inside the code folder (empty for the folder itself, `./`).
pub fn entry_path(name: &str) -> Result<Vec<&str>, BadName> {
    if name.starts_with('/') || name.contains('\\') || name.contains('\0') {
        return Err(BadName::Escapes);
    }
    if name.len() > MAX_PATH_BYTES {
        return Err(BadName::TooLong);
    }
    let mut parts = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(BadName::Escapes),
            part if part.len() > MAX_COMPONENT_BYTES => return Err(BadName::TooLong),
            part => parts.push(part),
        }
    }
    Ok(parts)
}

/// Whether a link target is acceptable on its own: relative, no NUL or backslash, and not climbing above
/// the folder when read as plain text from the link's own folder (links it passes through are checked later,
/// by [`Tree::escaping_link`], once the whole archive is known).
pub fn link_target_stays_inside(link: &[&str], target: &str) -> bool {
    if target.is_empty()
        || target.starts_with('/')
        || target.contains('\\')
        || target.contains('\0')
        || target.len() > MAX_PATH_BYTES
    {
        return false;
    }
    let mut depth = link.len().saturating_sub(1);
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => match depth.checked_sub(1) {
                Some(up) => depth = up,
                None => return false,
            },
            _ => depth += 1,
        }
    }
    true
}

/// What an entry created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A folder: named by an entry, or made for the entries below it.
    Dir,
    /// A regular file.
    File,
    /// A symbolic link and its target, as written.
    Link(String),
}

/// Why an entry cannot be placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conflict {
    /// The entry lies below `0`, which is a file or a link of the archive, not a folder.
    Through(String),
    /// The path is already taken by an earlier entry.
    Duplicate,
}

/// Everything an archive has created so far, by path (`a/b/c`).
#[derive(Debug, Default)]
pub struct Tree {
    nodes: HashMap<String, Node>,
}

/// What placing an entry requires from the disk: the folders to create on the way (in order), and whether
/// the entry itself is new (a folder named again needs nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// How many leading components are folders that do not exist yet (they follow the existing ones).
    pub new_parents_from: usize,
    /// False when the entry is a folder that already exists.
    pub create: bool,
}

impl Tree {
    /// Records an entry at `path` (its components) as `node`, or says why it cannot be there.
    pub fn place(&mut self, path: &[&str], node: Node) -> Result<Placement, Conflict> {
        let mut new_parents_from = path.len().saturating_sub(1);
        for end in 1..path.len() {
            let prefix = path[..end].join("/");
            match self.nodes.get(&prefix) {
                Some(Node::Dir) => {}
                Some(Node::File | Node::Link(_)) => return Err(Conflict::Through(prefix)),
                None => {
                    new_parents_from = new_parents_from.min(end - 1);
                    self.nodes.insert(prefix, Node::Dir);
                }
            }
        }
        if path.is_empty() {
            // `./`: the code folder itself.
            return match node {
                Node::Dir => Ok(Placement {
                    new_parents_from: 0,
                    create: false,
                }),
                Node::File | Node::Link(_) => Err(Conflict::Duplicate),
            };
        }
        let key = path.join("/");
        match (self.nodes.get(&key), &node) {
            (Some(Node::Dir), Node::Dir) => Ok(Placement {
                new_parents_from,
                create: false,
            }),
            (Some(_), _) => Err(Conflict::Duplicate),
            (None, _) => {
                self.nodes.insert(key, node);
                Ok(Placement {
                    new_parents_from,
                    create: true,
                })
            }
        }
    }

    /// The first link (by path, sorted) whose target, followed through the archive's own links, leads out
    /// of the folder or loops, with its target.
    pub fn escaping_link(&self) -> Option<(String, String)> {
        let mut links: Vec<(&String, &String)> = self
            .nodes
            .iter()
            .filter_map(|(path, node)| match node {
                Node::Link(target) => Some((path, target)),
                _ => None,
            })
            .collect();
        links.sort();
        links
            .into_iter()
            .find(|(path, target)| !self.resolves_inside(path, target))
            .map(|(path, target)| (path.clone(), target.clone()))
    }

    /// Follows `target` from the folder of the link at `link` as the kernel would.
    fn resolves_inside(&self, link: &str, target: &str) -> bool {
        let mut at: Vec<String> = link.split('/').map(str::to_owned).collect();
        at.pop();
        let mut pending: Vec<String> = target.split('/').rev().map(str::to_owned).collect();
        let mut hops = 0;
        while let Some(part) = pending.pop() {
            match part.as_str() {
                "" | "." => {}
                ".." => {
                    if at.pop().is_none() {
                        return false;
                    }
                }
                _ => {
                    at.push(part);
                    if let Some(Node::Link(next)) = self.nodes.get(&at.join("/")) {
                        hops += 1;
                        if hops > MAX_LINK_HOPS || next.starts_with('/') {
                            return false;
                        }
                        at.pop();
                        pending.extend(next.split('/').rev().map(str::to_owned));
                    }
                }
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_plain_relative_paths() {
        assert_eq!(entry_path("a/b.py"), Ok(vec!["a", "b.py"]));
        assert_eq!(entry_path("./a//b/"), Ok(vec!["a", "b"]));
        assert_eq!(entry_path("./"), Ok(vec![]));
        assert_eq!(entry_path("..."), Ok(vec!["..."]));
        for bad in [
            "/etc/passwd",
            "../x",
            "a/../b",
            "a/..",
            "..",
            "a\\..\\b",
            "..\\x",
            "a\0b",
            "//x",
        ] {
            assert_eq!(entry_path(bad), Err(BadName::Escapes), "{bad:?}");
        }
        assert_eq!(entry_path(&"x".repeat(256)), Err(BadName::TooLong));
        assert_eq!(
            entry_path(&"a/".repeat(2100)),
            Err(BadName::TooLong),
            "over PATH_MAX"
        );
    }

    #[test]
    fn link_targets_are_read_from_the_links_folder() {
        assert!(link_target_stays_inside(&["lib", "l"], "real.py"));
        assert!(link_target_stays_inside(&["lib", "l"], "../index.py"));
        assert!(link_target_stays_inside(&["l"], "."));
        assert!(!link_target_stays_inside(&["l"], ".."));
        assert!(!link_target_stays_inside(&["lib", "l"], "../.."));
        assert!(!link_target_stays_inside(&["l"], "/etc/passwd"));
        assert!(!link_target_stays_inside(&["l"], ""));
        assert!(!link_target_stays_inside(&["l"], "a\\b"));
        assert!(!link_target_stays_inside(&["l"], "b/../../x"));
    }

    #[test]
    fn nothing_is_placed_through_a_file_or_a_link() {
        let mut tree = Tree::default();
        assert_eq!(
            tree.place(&["d", "f"], Node::File),
            Ok(Placement {
                new_parents_from: 0,
                create: true
            })
        );
        assert_eq!(
            tree.place(&["d"], Node::Dir),
            Ok(Placement {
                new_parents_from: 0,
                create: false
            }),
            "a folder named after its files"
        );
        assert_eq!(
            tree.place(&["d", "e", "g"], Node::File),
            Ok(Placement {
                new_parents_from: 1,
                create: true
            })
        );
        tree.place(&["l"], Node::Link("d".into())).unwrap();
        assert_eq!(
            tree.place(&["l", "x"], Node::File),
            Err(Conflict::Through("l".into()))
        );
        assert_eq!(
            tree.place(&["d", "f", "x"], Node::Dir),
            Err(Conflict::Through("d/f".into()))
        );
        for node in [Node::File, Node::Dir, Node::Link("d".into())] {
            assert_eq!(tree.place(&["l"], node), Err(Conflict::Duplicate));
        }
        assert_eq!(tree.place(&["d", "f"], Node::Dir), Err(Conflict::Duplicate));
        assert_eq!(tree.place(&[], Node::File), Err(Conflict::Duplicate));
    }

    fn tree_of(links: &[(&str, &str)], dirs: &[&str]) -> Tree {
        let mut tree = Tree::default();
        for dir in dirs {
            let path: Vec<&str> = dir.split('/').collect();
            tree.place(&path, Node::Dir).unwrap();
        }
        for (link, target) in links {
            let path: Vec<&str> = link.split('/').collect();
            tree.place(&path, Node::Link((*target).to_owned())).unwrap();
        }
        tree
    }

    #[test]
    fn chained_links_are_followed_like_the_kernel_does() {
        // Each link stays inside read as text; `d/up2 -> up/..` climbs from `up`'s target (the folder itself).
        let tree = tree_of(&[("d/up", ".."), ("d/up2", "up/..")], &["d"]);
        assert_eq!(
            tree.escaping_link(),
            Some(("d/up2".to_owned(), "up/..".to_owned()))
        );
        let tree = tree_of(&[("a", "b"), ("b", "a")], &[]);
        assert!(tree.escaping_link().is_some(), "a loop is refused");
        let tree = tree_of(
            &[
                ("lib/cur", "."),
                ("lib/up", ".."),
                ("bin/tool", "../lib/cur/x.py"),
                ("dangling", "missing/file"),
            ],
            &["lib", "bin"],
        );
        assert_eq!(tree.escaping_link(), None);
        // `a/up` leads to the folder itself, so `a/up/..` is its parent, although `x` reads as `a`.
        let tree = tree_of(&[("a/up", ".."), ("x", "a/up/..")], &["a"]);
        assert_eq!(
            tree.escaping_link(),
            Some(("x".to_owned(), "a/up/..".to_owned()))
        );
        let tree = tree_of(&[("a/b/l", "../../a/b/../.."), ("x", "a/b/l")], &["a/b"]);
        assert_eq!(tree.escaping_link(), None, "climbing back down is fine");
    }
}
