//! `run_as`: the user (and group) handlers run as when the runtime is root, written `user[:group]` with names or
//! numbers, as `[runtime] run_as` and `chaintrigger runtime --run-as`.
//!
//! Parsing checks only the text (so a configuration can be checked on another machine); [`RunAs::resolve`]
//! looks the names up on this one. Root (`root`, `0`) is refused in both: handlers would run with every
//! privilege of the machine. Without a group, the user's primary group is used.

use std::ffi::CString;
use std::fmt;
use std::str::FromStr;

/// A user or a group: a name, or a numeric id.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Id {
    Name(String),
    Number(u32),
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Id::Name(name) => f.write_str(name),
            Id::Number(id) => write!(f, "{id}"),
        }
    }
}

/// Who handlers run as, as written.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct RunAs {
    user: Id,
    group: Option<Id>,
}

/// Why a `run_as` value cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunAsError {
    #[error(
        "'{0}' is not `user` or `user:group` (names of letters, digits, '_', '-', '.', or numeric ids)"
    )]
    Syntax(String),
    #[error("'{0}' is root: handlers must not run with every privilege of the machine")]
    Root(String),
    #[error("there is no user '{0}' on this machine")]
    NoUser(String),
    #[error("there is no group '{0}' on this machine")]
    NoGroup(String),
}

fn parse_id(text: &str) -> Option<Id> {
    if text.is_empty() || text.len() > 64 {
        return None;
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().ok().map(Id::Number);
    }
    let first_ok = text
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_');
    let rest_ok = text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    (first_ok && rest_ok).then(|| Id::Name(text.to_owned()))
}

impl FromStr for RunAs {
    type Err = RunAsError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let syntax = || RunAsError::Syntax(text.to_owned());
        let (user, group) = match text.split_once(':') {
            Some((user, group)) => (user, Some(group)),
            None => (text, None),
        };
        let user = parse_id(user).ok_or_else(syntax)?;
        let group = group.map(|g| parse_id(g).ok_or_else(syntax)).transpose()?;
        if matches!(&user, Id::Number(0)) || matches!(&user, Id::Name(n) if n == "root") {
            return Err(RunAsError::Root(text.to_owned()));
        }
        Ok(RunAs { user, group })
    }
}

impl TryFrom<String> for RunAs {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse().map_err(|e: RunAsError| e.to_string())
    }
}

impl fmt::Display for RunAs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.user)?;
        if let Some(group) = &self.group {
            write!(f, ":{group}")?;
        }
        Ok(())
    }
}

impl RunAs {
    /// The (uid, gid) on this machine.
    pub fn resolve(&self) -> Result<(u32, u32), RunAsError> {
        let (uid, primary_gid) = match &self.user {
            Id::Number(uid) => (*uid, lookup_user_by_id(*uid).unwrap_or(*uid)),
            Id::Name(name) => lookup_user(name).ok_or_else(|| RunAsError::NoUser(name.clone()))?,
        };
        if uid == 0 {
            return Err(RunAsError::Root(self.to_string()));
        }
        let gid = match &self.group {
            None => primary_gid,
            Some(Id::Number(gid)) => *gid,
            Some(Id::Name(name)) => {
                lookup_group(name).ok_or_else(|| RunAsError::NoGroup(name.clone()))?
            }
        };
        Ok((uid, gid))
    }
}

/// (uid, primary gid) of a user name.
fn lookup_user(name: &str) -> Option<(u32, u32)> {
    let name = CString::new(name).ok()?;
    let mut buffer = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: getpwnam_r fills `entry` with pointers into `buffer`, both owned here and read before they drop.
    unsafe {
        let mut entry: libc::passwd = std::mem::zeroed();
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        let status = libc::getpwnam_r(
            name.as_ptr(),
            &mut entry,
            buffer.as_mut_ptr(),
            buffer.len(),
            &mut found,
        );
        (status == 0 && !found.is_null()).then_some((entry.pw_uid, entry.pw_gid))
    }
}

/// The primary gid of a uid, when it has a passwd entry.
fn lookup_user_by_id(uid: u32) -> Option<u32> {
    let mut buffer = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: as in `lookup_user`.
    unsafe {
        let mut entry: libc::passwd = std::mem::zeroed();
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        let status = libc::getpwuid_r(
            uid,
            &mut entry,
            buffer.as_mut_ptr(),
            buffer.len(),
            &mut found,
        );
        (status == 0 && !found.is_null()).then_some(entry.pw_gid)
    }
}

/// The gid of a group name.
fn lookup_group(name: &str) -> Option<u32> {
    let name = CString::new(name).ok()?;
    let mut buffer = vec![0 as libc::c_char; 64 * 1024];
    // SAFETY: getgrnam_r fills `entry` with pointers into `buffer`, both owned here and read before they drop.
    unsafe {
        let mut entry: libc::group = std::mem::zeroed();
        let mut found: *mut libc::group = std::ptr::null_mut();
        let status = libc::getgrnam_r(
            name.as_ptr(),
            &mut entry,
            buffer.as_mut_ptr(),
            buffer.len(),
            &mut found,
        );
        (status == 0 && !found.is_null()).then_some(entry.gr_gid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_users_and_groups_by_name_or_number() {
        assert_eq!("nobody".parse::<RunAs>().unwrap().to_string(), "nobody");
        assert_eq!(
            "nobody:nogroup".parse::<RunAs>().unwrap().to_string(),
            "nobody:nogroup"
        );
        assert_eq!(
            "1000:1000".parse::<RunAs>().unwrap().to_string(),
            "1000:1000"
        );
        for bad in ["", ":", "a:", ":b", "a b", "a:b:c", "-x", "ünï"] {
            assert!(
                matches!(bad.parse::<RunAs>(), Err(RunAsError::Syntax(_))),
                "{bad:?}"
            );
        }
        for root in ["root", "0", "root:nogroup", "0:0"] {
            assert!(
                matches!(root.parse::<RunAs>(), Err(RunAsError::Root(_))),
                "{root:?}"
            );
        }
    }

    #[test]
    fn resolves_on_this_machine() {
        let nobody: RunAs = "nobody".parse().unwrap();
        let (uid, _) = nobody.resolve().expect("every Linux has nobody");
        assert_ne!(uid, 0);
        assert_eq!(
            "12345:54321".parse::<RunAs>().unwrap().resolve(),
            Ok((12345, 54321))
        );
        assert_eq!(
            "no_such_user_here".parse::<RunAs>().unwrap().resolve(),
            Err(RunAsError::NoUser("no_such_user_here".into()))
        );
        assert_eq!(
            "nobody:no_such_group_here"
                .parse::<RunAs>()
                .unwrap()
                .resolve(),
            Err(RunAsError::NoGroup("no_such_group_here".into()))
        );
    }
}
