//! The restrictions a handler process runs under, applied between fork and exec.
//!
//! - always: its own session (so the whole process group can be killed), RLIMIT_NOFILE and RLIMIT_NPROC;
//! - as root: a private mount namespace when the kernel allows it (probed once), in which the code directory is
//!   a read-only bind mount and `/tmp` is the instance's own directory; then the unprivileged uid/gid.
//!
//! RLIMIT_NPROC counts every process of the user, so instances running as the same uid share it.

use std::ffi::CString;
use std::io;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// What the forked child does before exec; built (allocations included) before the fork.
#[derive(Debug)]
pub struct ChildSetup {
    /// The shim's end of the request pipe, to become fd 3.
    pub request_fd: RawFd,
    /// The shim's end of the response pipe, to become fd 4.
    pub response_fd: RawFd,
    /// RLIMIT_NOFILE.
    pub fd_limit: u64,
    /// RLIMIT_NPROC.
    pub nproc_limit: u64,
    /// (uid, gid) to drop to; `None` when the daemon is not root.
    pub run_as: Option<(u32, u32)>,
    /// Set up a mount namespace (root, and the probe succeeded).
    pub mount_namespace: Option<Mounts>,
    /// The working directory, entered again after the mounts so it is the read-only view.
    pub code_dir: CString,
}

/// Paths for the mount namespace.
#[derive(Debug)]
pub struct Mounts {
    /// Bound read-only onto itself.
    pub code_dir: CString,
    /// Bound onto `/tmp`, unless the code or data directory lives under `/tmp` (it would be hidden).
    pub private_tmp: Option<CString>,
}

/// Converts a path for the child (paths with NUL bytes cannot exist on Linux, so this cannot fail in practice).
pub fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

fn check(result: libc::c_int) -> io::Result<()> {
    if result == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

impl ChildSetup {
    /// Runs in the forked child: async-signal-safe calls only, no allocation.
    pub fn apply(&self) -> io::Result<()> {
        // SAFETY: plain syscalls on fds and C strings owned by `self`, which outlives the child's use of it.
        unsafe {
            // Move the pipe ends above 3/4 first: one of them may already sit on 3 or 4.
            let request = libc::fcntl(self.request_fd, libc::F_DUPFD_CLOEXEC, 10);
            let response = libc::fcntl(self.response_fd, libc::F_DUPFD_CLOEXEC, 10);
            if request == -1 || response == -1 {
                return Err(io::Error::last_os_error());
            }
            check(libc::dup2(request, 3))?;
            check(libc::dup2(response, 4))?;
            check(libc::setsid())?;
            let files = libc::rlimit {
                rlim_cur: self.fd_limit,
                rlim_max: self.fd_limit,
            };
            check(libc::setrlimit(libc::RLIMIT_NOFILE, &files))?;
            let processes = libc::rlimit {
                rlim_cur: self.nproc_limit,
                rlim_max: self.nproc_limit,
            };
            check(libc::setrlimit(libc::RLIMIT_NPROC, &processes))?;
            if let Some(mounts) = &self.mount_namespace {
                check(libc::unshare(libc::CLONE_NEWNS))?;
                check(libc::mount(
                    std::ptr::null(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ))?;
                check(libc::mount(
                    mounts.code_dir.as_ptr(),
                    mounts.code_dir.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND | libc::MS_REC,
                    std::ptr::null(),
                ))?;
                check(libc::mount(
                    std::ptr::null(),
                    mounts.code_dir.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
                    std::ptr::null(),
                ))?;
                if let Some(tmp) = &mounts.private_tmp {
                    check(libc::mount(
                        tmp.as_ptr(),
                        c"/tmp".as_ptr(),
                        std::ptr::null(),
                        libc::MS_BIND,
                        std::ptr::null(),
                    ))?;
                }
                check(libc::chdir(self.code_dir.as_ptr()))?;
            }
            if let Some((uid, gid)) = self.run_as {
                check(libc::setgroups(0, std::ptr::null()))?;
                check(libc::setgid(gid))?;
                check(libc::setuid(uid))?;
            }
        }
        Ok(())
    }
}

/// Whether this process may create a mount namespace and bind-mount read-only inside it (root in a container
/// without CAP_SYS_ADMIN may not). Tried in a forked child so the daemon's own mounts are untouched.
pub fn mount_namespace_works(probe_dir: &Path) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return false;
    }
    let Ok(dir) = c_path(probe_dir) else {
        return false;
    };
    // SAFETY: the child only makes syscalls on memory prepared before the fork, then `_exit`s.
    unsafe {
        let pid = libc::fork();
        if pid == 0 {
            let works = libc::unshare(libc::CLONE_NEWNS) == 0
                && libc::mount(
                    std::ptr::null(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ) == 0
                && libc::mount(
                    dir.as_ptr(),
                    dir.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND | libc::MS_REC,
                    std::ptr::null(),
                ) == 0
                && libc::mount(
                    std::ptr::null(),
                    dir.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
                    std::ptr::null(),
                ) == 0
                && libc::mount(
                    dir.as_ptr(),
                    c"/tmp".as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND,
                    std::ptr::null(),
                ) == 0;
            libc::_exit(if works { 0 } else { 1 });
        }
        if pid < 0 {
            return false;
        }
        let mut status = 0;
        if libc::waitpid(pid, &mut status, 0) != pid {
            return false;
        }
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0
    }
}

/// The uid/gid handlers run as: the configured one, else `nobody` (65534 when it has no passwd entry).
pub fn unprivileged_user(configured: Option<(u32, u32)>) -> (u32, u32) {
    if let Some(ids) = configured {
        return ids;
    }
    // SAFETY: getpwnam returns a pointer into static storage, read at once; this runs before any handler spawns.
    unsafe {
        let entry = libc::getpwnam(c"nobody".as_ptr());
        if entry.is_null() {
            (65534, 65534)
        } else {
            ((*entry).pw_uid, (*entry).pw_gid)
        }
    }
}

/// Removes write permission from the code directory tree: for group and others when the daemon is root (the
/// handler runs as another user, and a zip may carry 0666/0777 modes), for everyone otherwise (the handler runs
/// as the daemon's own user, so it could `chmod` back: this guards against accidents, not against malice).
pub fn remove_write_permission(dir: &Path, root: bool) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mask = if root { 0o022 } else { 0o222 };
    let mut pending = vec![dir.to_path_buf()];
    while let Some(path) = pending.pop() {
        let metadata = std::fs::symlink_metadata(&path)?;
        if metadata.file_type().is_symlink() {
            continue;
        }
        if metadata.is_dir() {
            for entry in std::fs::read_dir(&path)? {
                pending.push(entry?.path());
            }
        }
        let mode = metadata.permissions().mode();
        if mode & mask != 0 {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & !mask))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path)
            .expect("metadata")
            .permissions()
            .mode()
            & 0o777
    }

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temporary directory");
        let code = dir.path().join("code");
        std::fs::create_dir_all(code.join("lib")).expect("code tree");
        std::fs::write(code.join("index.py"), "x").expect("file");
        std::fs::write(code.join("lib/util.py"), "y").expect("file");
        for (path, mode) in [
            ("", 0o777),
            ("lib", 0o777),
            ("index.py", 0o666),
            ("lib/util.py", 0o755),
        ] {
            std::fs::set_permissions(code.join(path), std::fs::Permissions::from_mode(mode))
                .expect("chmod");
        }
        dir
    }

    #[test]
    fn as_root_group_and_others_lose_write() {
        let dir = tree();
        let code = dir.path().join("code");
        remove_write_permission(&code, true).expect("chmod tree");
        assert_eq!(mode(&code), 0o755);
        assert_eq!(mode(&code.join("lib")), 0o755);
        assert_eq!(mode(&code.join("index.py")), 0o644);
        assert_eq!(mode(&code.join("lib/util.py")), 0o755);
    }

    #[test]
    fn not_root_everyone_loses_write_and_the_tree_can_still_be_removed() {
        let dir = tree();
        let code = dir.path().join("code");
        remove_write_permission(&code, false).expect("chmod tree");
        assert_eq!(mode(&code), 0o555);
        assert_eq!(mode(&code.join("lib")), 0o555);
        assert_eq!(mode(&code.join("index.py")), 0o444);
        assert_eq!(mode(&code.join("lib/util.py")), 0o555);
        crate::runtime::pool::remove_code_dir(&code).expect("remove the read-only tree");
        assert!(!code.exists());
    }
}
