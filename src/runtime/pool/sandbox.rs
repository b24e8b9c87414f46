//! Starting a handler process inside its sandbox: `clone3` with the instance's namespaces, then, in the child
//! and before `execve`, its own file-system view, limits and user.
//!
//! # What a handler sees (namespace modes)
//!
//! The child gets new mount, PID and IPC namespaces (and, when the runtime is not root, a user namespace that
//! maps only the runtime's own uid and gid). In the mount namespace it builds a new root on a small tmpfs and
//! `pivot_root`s into it, so the host's tree is gone, not merely hidden:
//!
//! | path | what |
//! |---|---|
//! | `/usr`, `/bin`, `/sbin`, `/lib*`, `/etc`, `/opt` | the host's, read-only, `nosuid`, `nodev` (symbolic links stay links) |
//! | `/code` | the function's own unpacked code, read-only: the working folder and `FC_FUNC_CODE_PATH` |
//! | `/var/fc/runtime` | the language shims, read-only |
//! | `/tmp`, `/var/tmp` | a fresh tmpfs each (512 MB), per instance |
//! | `/dev` | `null`, `zero`, `full`, `random`, `urandom`, the `fd` / `std*` links, and `/dev/shm` (64 MB tmpfs) |
//! | `/proc` | a proc of the instance's own PID namespace: it sees its own processes only |
//!
//! Nothing else exists: not the runtime's data folder (database, other functions' code and archives, logs,
//! queued payloads), not the operator's functions folder, not `/home`, `/root`, `/run`, `/srv`, `/var/lib`, `/sys`.
//! Should the data or functions folder lie under one of the folders shown, an empty read-only tmpfs covers it.
//! The network is the host's: outbound connections work, and so does loopback (see the API's peer check for how
//! the runtime's own API refuses handlers).
//!
//! The interpreter is PID 1 of its namespace: when it dies, the kernel kills every process left in the
//! namespace (double forks and `setsid()` included), and it is killed with `SIGKILL` when the instance stops, when
//! the runtime stops, and (through `PR_SET_PDEATHSIG`) when the runtime's process dies. `PR_SET_NO_NEW_PRIVS`
//! makes set-user-id programs powerless; all other descriptors of the runtime are closed on `execve`.
//!
//! # Without namespaces
//!
//! When the kernel refuses them (a container without `CAP_SYS_ADMIN`, user namespaces disabled), the child only
//! starts its own session, takes the limits and (as root) the unprivileged user, and runs with the real paths.
//! A process that leaves the session (`setsid()` after a double fork) then outlives the instance, and handlers
//! can read whatever their user can. See the README for the table of what holds in each mode.

use std::collections::BTreeSet;
use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Which namespaces handlers run in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Namespaces {
    /// None: a session and process group of their own only.
    None,
    /// Mount, PID and IPC namespaces, created by a root runtime (handlers then also change user).
    Root,
    /// A user namespace mapping only the runtime's own uid and gid, with mount, PID and IPC namespaces: what a
    /// runtime that is not root can do.
    User,
}

/// Where handlers find their code and shims inside the sandbox.
pub const CODE_DIR: &str = "/code";
/// Where the shims are shown inside the sandbox.
pub const SHIM_DIR: &str = "/var/fc/runtime";

/// Host folders shown read-only at the same path (when they exist; links are recreated as links).
const SYSTEM_DIRS: [&str; 9] = [
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt",
];
/// Files of `/etc` that are often links into `/run` (systemd-resolved): their target is shown too.
const LINKED_FILES: [&str; 3] = ["/etc/resolv.conf", "/etc/hosts", "/etc/localtime"];
/// Device nodes shown in `/dev`.
const DEVICES: [&str; 5] = ["null", "zero", "full", "random", "urandom"];
/// Sizes of the private temporary file systems.
const TMP_OPTIONS: &str = "mode=1777,size=512m";
const SHM_OPTIONS: &str = "mode=1777,size=64m";

/// One step of building the sandbox's root, as the parent planned it (paths inside the sandbox).
#[derive(Debug, Clone)]
enum Op {
    Mkdir(PathBuf),
    Symlink {
        at: PathBuf,
        target: PathBuf,
    },
    Touch(PathBuf),
    Bind {
        source: PathBuf,
        at: PathBuf,
        recursive: bool,
    },
    /// A bind remount with these flags (`MS_BIND | MS_REMOUNT` added).
    Remount {
        at: PathBuf,
        flags: u64,
    },
    Tmpfs {
        at: PathBuf,
        flags: u64,
        options: &'static str,
    },
    Proc {
        at: PathBuf,
    },
}

impl Op {
    fn describe(&self) -> String {
        match self {
            Op::Mkdir(at) => format!("creating {}", at.display()),
            Op::Symlink { at, target } => {
                format!("linking {} to {}", at.display(), target.display())
            }
            Op::Touch(at) => format!("creating {}", at.display()),
            Op::Bind { source, at, .. } => {
                format!("bind-mounting {} at {}", source.display(), at.display())
            }
            Op::Remount { at, .. } => format!("making {} read-only", at.display()),
            Op::Tmpfs { at, .. } => format!("mounting a tmpfs at {}", at.display()),
            Op::Proc { at } => format!("mounting proc at {}", at.display()),
        }
    }
}

const RO_FLAGS: libc::c_ulong = libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV;
/// Mount flags a user namespace may not clear on a bind of a mount it did not make (they are "locked"):
/// a read-only remount must repeat them.
const LOCKED_FLAGS: libc::c_ulong = libc::MS_NOEXEC
    | libc::MS_NOSUID
    | libc::MS_NODEV
    | libc::MS_NOATIME
    | libc::MS_NODIRATIME
    | libc::MS_RELATIME;

/// The flags of the mount holding `path`, as `MS_*` bits (ST_* and MS_* share values on Linux).
fn mount_flags(path: &Path) -> libc::c_ulong {
    let Ok(c) = c_path(path) else { return 0 };
    // SAFETY: statvfs fills the zeroed struct we own from a NUL-terminated path.
    unsafe {
        let mut stat: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(c.as_ptr(), &mut stat) != 0 {
            return 0;
        }
        stat.f_flag & LOCKED_FLAGS
    }
}

/// What every instance's sandbox shares: the system folders shown, and what must be covered.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Which namespaces are used.
    pub namespaces: Namespaces,
    /// The shims' folder on the host.
    shim_dir: PathBuf,
    /// Operations shared by all instances (system folders, covers, devices, temporary folders).
    ops: Vec<Op>,
}

/// `true` when `path` is `dir` or lies below it.
fn under(path: &Path, dir: &Path) -> bool {
    path.starts_with(dir)
}

impl Plan {
    /// Plans the sandbox: which system folders exist and how they are mounted; `hidden` folders (the data
    /// folder, the functions folder) are covered when one of the shown folders contains them.
    pub fn new(namespaces: Namespaces, shim_dir: &Path, hidden: &[PathBuf]) -> Plan {
        let mut ops = Vec::new();
        let mut made = BTreeSet::new();
        let mut mkdir_all = |ops: &mut Vec<Op>, dir: &Path| {
            let mut current = PathBuf::from("/");
            for part in dir.components().skip(1) {
                current.push(part);
                if made.insert(current.clone()) {
                    ops.push(Op::Mkdir(current.clone()));
                }
            }
        };
        let mut shown = Vec::new();
        for dir in SYSTEM_DIRS {
            let path = Path::new(dir);
            match std::fs::symlink_metadata(path) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    if let Ok(target) = std::fs::read_link(path) {
                        ops.push(Op::Symlink {
                            at: path.to_owned(),
                            target,
                        });
                    }
                }
                Ok(meta) if meta.is_dir() => {
                    mkdir_all(&mut ops, path);
                    ops.push(Op::Bind {
                        source: path.to_owned(),
                        at: path.to_owned(),
                        recursive: true,
                    });
                    ops.push(Op::Remount {
                        at: path.to_owned(),
                        flags: RO_FLAGS | mount_flags(path),
                    });
                    shown.push(path.to_owned());
                }
                _ => {}
            }
        }
        let visible = |path: &Path| {
            std::fs::canonicalize(path)
                .map(|real| shown.iter().any(|dir| under(&real, dir)))
                .unwrap_or(false)
        };
        for file in LINKED_FILES {
            let path = Path::new(file);
            let is_link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
            if !is_link || visible(path) {
                continue;
            }
            if let Ok(real) = std::fs::canonicalize(path)
                && real.is_file()
                && let Some(parent) = real.parent()
            {
                mkdir_all(&mut ops, parent);
                ops.push(Op::Touch(real.clone()));
                ops.push(Op::Bind {
                    source: real.clone(),
                    at: real.clone(),
                    recursive: false,
                });
                ops.push(Op::Remount {
                    flags: RO_FLAGS | mount_flags(&real),
                    at: real,
                });
            }
        }
        for dir in hidden {
            let Ok(real) = std::fs::canonicalize(dir) else {
                continue;
            };
            if shown.iter().any(|shown| under(&real, shown)) {
                ops.push(Op::Tmpfs {
                    at: real,
                    flags: RO_FLAGS | libc::MS_NOEXEC,
                    options: "mode=000,size=4k",
                });
            }
        }
        mkdir_all(&mut ops, Path::new("/dev"));
        ops.push(Op::Tmpfs {
            at: "/dev".into(),
            flags: libc::MS_NOSUID | libc::MS_NOEXEC,
            options: "mode=755,size=64k",
        });
        for device in DEVICES {
            let at = Path::new("/dev").join(device);
            ops.push(Op::Touch(at.clone()));
            ops.push(Op::Bind {
                source: at.clone(),
                at,
                recursive: false,
            });
        }
        for (name, target) in [
            ("fd", "/proc/self/fd"),
            ("stdin", "/proc/self/fd/0"),
            ("stdout", "/proc/self/fd/1"),
            ("stderr", "/proc/self/fd/2"),
        ] {
            ops.push(Op::Symlink {
                at: Path::new("/dev").join(name),
                target: target.into(),
            });
        }
        ops.push(Op::Mkdir("/dev/shm".into()));
        ops.push(Op::Tmpfs {
            at: "/dev/shm".into(),
            flags: libc::MS_NOSUID | libc::MS_NODEV,
            options: SHM_OPTIONS,
        });
        ops.push(Op::Mkdir("/tmp".into()));
        ops.push(Op::Tmpfs {
            at: "/tmp".into(),
            flags: libc::MS_NOSUID | libc::MS_NODEV,
            options: TMP_OPTIONS,
        });
        mkdir_all(&mut ops, Path::new("/var/tmp"));
        ops.push(Op::Tmpfs {
            at: "/var/tmp".into(),
            flags: libc::MS_NOSUID | libc::MS_NODEV,
            options: TMP_OPTIONS,
        });
        mkdir_all(&mut ops, Path::new(SHIM_DIR));
        ops.push(Op::Bind {
            source: shim_dir.to_owned(),
            at: SHIM_DIR.into(),
            recursive: false,
        });
        ops.push(Op::Remount {
            at: SHIM_DIR.into(),
            flags: RO_FLAGS | mount_flags(shim_dir),
        });
        mkdir_all(&mut ops, Path::new("/proc"));
        ops.push(Op::Proc { at: "/proc".into() });
        mkdir_all(&mut ops, Path::new(CODE_DIR));
        Plan {
            namespaces,
            shim_dir: shim_dir.to_owned(),
            ops,
        }
    }

    /// Whether `path` (a host path) can be seen inside the sandbox at the same path.
    pub fn shows(&self, path: &Path) -> bool {
        let Ok(real) = std::fs::canonicalize(path) else {
            return false;
        };
        self.ops.iter().any(|op| match op {
            Op::Bind { source, at, .. } => source == at && under(&real, source),
            _ => false,
        })
    }

    /// The shims' folder on the host.
    pub fn shim_dir(&self) -> &Path {
        &self.shim_dir
    }

    /// The operations for one instance: the shared ones, then `/code`.
    fn instance_ops(&self, code_dir: &Path) -> Vec<Op> {
        let mut ops = self.ops.clone();
        ops.push(Op::Bind {
            source: code_dir.to_owned(),
            at: CODE_DIR.into(),
            recursive: false,
        });
        ops.push(Op::Remount {
            at: CODE_DIR.into(),
            flags: RO_FLAGS | mount_flags(code_dir),
        });
        ops
    }
}

/// Converts a path for the child (paths with NUL bytes cannot exist on Linux, so this cannot fail in practice).
pub fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

fn c_string(text: &str) -> io::Result<CString> {
    CString::new(text)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "text contains a NUL byte"))
}

/// A planned operation with its paths joined to the new root, ready for the child.
enum ChildOp {
    Mkdir(CString),
    Symlink(CString, CString),
    Touch(CString),
    Bind(CString, CString, libc::c_ulong),
    Remount(CString, libc::c_ulong),
    Tmpfs(CString, libc::c_ulong, CString),
    Proc(CString),
}

/// The file-system part of a child's setup: where the new root is built and how.
struct RootSetup {
    /// The instance's folder on the host, the mount point of the new root's tmpfs.
    new_root: CString,
    ops: Vec<ChildOp>,
    /// Descriptions of `ops`, for errors (parent side only).
    described: Vec<String>,
    /// Where the handler starts, inside the new root.
    workdir: CString,
}

/// The user namespace's maps (written by the child itself: an unprivileged process may map its own ids).
struct UserMaps {
    uid_map: CString,
    gid_map: CString,
}

/// What the child does before exec, all allocated before the clone.
pub struct ChildSetup {
    /// Host folder of the instance (its `TMPDIR` without namespaces, the new root's mount point with them).
    new_root: Option<RootSetup>,
    user_maps: Option<UserMaps>,
    /// The working folder without namespaces.
    workdir: CString,
    /// (uid, gid) to switch to (root only).
    run_as: Option<(u32, u32)>,
    fd_limit: u64,
    nproc_limit: u64,
    program: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
    /// The descriptors that become 0 (`/dev/null`), 1 and 2 (the log), 3 (requests) and 4 (responses).
    stdin: OwnedFd,
    log: OwnedFd,
    requests: OwnedFd,
    responses: OwnedFd,
}

/// What a handler process is made of, as the launcher describes it.
pub struct ChildSpec<'a> {
    /// The sandbox plan, or `None` for no namespaces.
    pub plan: Option<&'a Plan>,
    /// The function's code on the host.
    pub code_dir: &'a Path,
    /// The instance's own host folder.
    pub instance_dir: &'a Path,
    /// (uid, gid) to switch to.
    pub run_as: Option<(u32, u32)>,
    /// RLIMIT_NOFILE.
    pub fd_limit: u64,
    /// RLIMIT_NPROC.
    pub nproc_limit: u64,
    /// The interpreter.
    pub program: &'a Path,
    /// Its arguments (after the program name).
    pub args: Vec<String>,
    /// The whole environment.
    pub env: Vec<(String, String)>,
    /// The child's ends of its pipes: log (stdout and stderr), requests (fd 3), responses (fd 4).
    pub log: OwnedFd,
    /// fd 3.
    pub requests: OwnedFd,
    /// fd 4.
    pub responses: OwnedFd,
}

impl ChildSetup {
    /// Prepares everything the child needs.
    pub fn new(spec: ChildSpec<'_>) -> io::Result<ChildSetup> {
        let new_root = match spec.plan {
            Some(plan) if plan.namespaces != Namespaces::None => {
                let root = spec.instance_dir;
                let join = |inside: &Path| -> io::Result<CString> {
                    let relative = inside.strip_prefix("/").unwrap_or(inside);
                    c_path(&root.join(relative))
                };
                let ops = plan.instance_ops(spec.code_dir);
                let described = ops.iter().map(Op::describe).collect();
                let mut child_ops = Vec::with_capacity(ops.len());
                for op in &ops {
                    child_ops.push(match op {
                        Op::Mkdir(at) => ChildOp::Mkdir(join(at)?),
                        Op::Symlink { at, target } => ChildOp::Symlink(c_path(target)?, join(at)?),
                        Op::Touch(at) => ChildOp::Touch(join(at)?),
                        Op::Bind {
                            source,
                            at,
                            recursive,
                        } => {
                            let mut flags = libc::MS_BIND;
                            if *recursive {
                                flags |= libc::MS_REC;
                            }
                            ChildOp::Bind(c_path(source)?, join(at)?, flags)
                        }
                        Op::Remount { at, flags } => {
                            ChildOp::Remount(join(at)?, libc::MS_BIND | libc::MS_REMOUNT | *flags)
                        }
                        Op::Tmpfs { at, flags, options } => {
                            ChildOp::Tmpfs(join(at)?, *flags, c_string(options)?)
                        }
                        Op::Proc { at } => ChildOp::Proc(join(at)?),
                    });
                }
                Some(RootSetup {
                    new_root: c_path(root)?,
                    ops: child_ops,
                    described,
                    workdir: c_string(CODE_DIR)?,
                })
            }
            _ => None,
        };
        let user_maps = match spec.plan.map(|p| p.namespaces) {
            Some(Namespaces::User) => {
                // SAFETY: getuid / getgid have no preconditions.
                let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
                Some(UserMaps {
                    uid_map: c_string(&format!("{uid} {uid} 1\n"))?,
                    gid_map: c_string(&format!("{gid} {gid} 1\n"))?,
                })
            }
            _ => None,
        };
        let stdin = std::fs::File::open("/dev/null")?.into();
        let mut argv = vec![c_path(spec.program)?];
        for arg in &spec.args {
            argv.push(c_string(arg)?);
        }
        // Later entries replace earlier ones of the same name (`getenv` would find the first).
        let mut names: Vec<&str> = Vec::new();
        let mut values: Vec<&str> = Vec::new();
        for (name, value) in &spec.env {
            match names.iter().position(|n| n == name) {
                Some(at) => values[at] = value,
                None => {
                    names.push(name);
                    values.push(value);
                }
            }
        }
        let envp = names
            .iter()
            .zip(&values)
            .map(|(k, v)| c_string(&format!("{k}={v}")))
            .collect::<io::Result<Vec<_>>>()?;
        Ok(ChildSetup {
            new_root,
            user_maps,
            workdir: c_path(spec.code_dir)?,
            run_as: spec.run_as,
            fd_limit: spec.fd_limit,
            nproc_limit: spec.nproc_limit,
            program: c_path(spec.program)?,
            argv,
            envp,
            stdin,
            log: spec.log,
            requests: spec.requests,
            responses: spec.responses,
        })
    }

    fn clone_flags(&self) -> u64 {
        let mut flags = 0u64;
        if self.new_root.is_some() {
            flags |= (libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWIPC) as u64;
        }
        if self.user_maps.is_some() {
            flags |= libc::CLONE_NEWUSER as u64;
        }
        flags
    }

    /// Describes where the child stopped, from what it reported.
    fn failure(&self, report: &[u8]) -> io::Error {
        let word = |at: usize| {
            report
                .get(at..at + 4)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map_or(0, i32::from_ne_bytes)
        };
        let (step, index, errno) = (word(0), word(4), word(8));
        let what = match step {
            STEP_FDS => "setting up its pipes".to_owned(),
            STEP_SESSION => "starting a session".to_owned(),
            STEP_USER_MAPS => "mapping its user namespace".to_owned(),
            STEP_PRIVATE => "making its mounts private".to_owned(),
            STEP_ROOT => "mounting its root tmpfs".to_owned(),
            STEP_OP => self
                .new_root
                .as_ref()
                .and_then(|r| r.described.get(index as usize).cloned())
                .unwrap_or_else(|| format!("sandbox step {index}")),
            STEP_PIVOT => "switching to its root (pivot_root)".to_owned(),
            STEP_WORKDIR => "entering its working folder".to_owned(),
            STEP_LIMITS => "setting its resource limits".to_owned(),
            STEP_USER => "switching to the unprivileged user".to_owned(),
            STEP_PRIVS => "setting no_new_privs / the parent death signal".to_owned(),
            STEP_EXEC => format!("running {}", self.program.to_string_lossy()),
            _ => "starting".to_owned(),
        };
        let cause = io::Error::from_raw_os_error(errno);
        io::Error::new(cause.kind(), format!("{what}: {cause}"))
    }
}

const STEP_FDS: i32 = 1;
const STEP_SESSION: i32 = 2;
const STEP_USER_MAPS: i32 = 3;
const STEP_PRIVATE: i32 = 4;
const STEP_ROOT: i32 = 5;
const STEP_OP: i32 = 6;
const STEP_PIVOT: i32 = 7;
const STEP_WORKDIR: i32 = 8;
const STEP_LIMITS: i32 = 9;
const STEP_USER: i32 = 10;
const STEP_PRIVS: i32 = 11;
const STEP_EXEC: i32 = 12;

/// The kernel's `struct clone_args` (clone3), up to `cgroup`.
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// A started child: its pid, a pidfd, and the read end of the pipe it reports a failed setup on.
pub struct Started {
    /// The process id (in the runtime's PID namespace).
    pub pid: i32,
    /// A pidfd of the process: readable once it exits.
    pub pidfd: OwnedFd,
    /// Closed by `execve` (close-on-exec); carries 12 bytes when the setup failed.
    pub report: OwnedFd,
}

fn pipe_cloexec() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two new descriptors into `fds`, which we then own.
    unsafe {
        if libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) == -1 {
            return Err(io::Error::last_os_error());
        }
        Ok((OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])))
    }
}

/// Starts the child. Its setup runs between `clone3` and `execve`; a failure is written to `report`.
pub fn start(setup: &ChildSetup) -> io::Result<Started> {
    let (report_read, report_write) = pipe_cloexec()?;
    let mut argv: Vec<*const libc::c_char> = setup.argv.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = setup.envp.iter().map(|e| e.as_ptr()).collect();
    envp.push(std::ptr::null());
    let mut pidfd: libc::c_int = -1;
    let args = CloneArgs {
        flags: libc::CLONE_PIDFD as u64 | setup.clone_flags(),
        pidfd: std::ptr::addr_of_mut!(pidfd) as u64,
        exit_signal: libc::SIGCHLD as u64,
        ..CloneArgs::default()
    };
    // SAFETY: clone3 without CLONE_VM and without a stack behaves like fork: the child runs on a copy of this
    // stack. The child only makes raw system calls on memory prepared above, then execs or `_exit`s.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            std::ptr::addr_of!(args),
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if pid == 0 {
        // SAFETY: in the child, see above; never returns.
        unsafe { child(setup, report_write.as_raw_fd(), &argv, &envp) }
    }
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    drop(report_write);
    Ok(Started {
        pid: pid as i32,
        // SAFETY: clone3 stored a new pidfd, which we now own.
        pidfd: unsafe { OwnedFd::from_raw_fd(pidfd) },
        report: report_read,
    })
}

impl ChildSetup {
    /// The error a failed setup reported, if any (12 bytes read from `report`).
    pub fn reported_failure(&self, report: &[u8]) -> Option<io::Error> {
        (report.len() >= 12).then(|| self.failure(report))
    }
}

/// Writes the failed step to the report pipe and exits.
unsafe fn fail(report: RawFd, step: i32, index: usize) -> ! {
    // SAFETY: errno is thread-local; write and _exit are async-signal-safe.
    unsafe {
        let errno = *libc::__errno_location();
        let mut bytes = [0u8; 12];
        bytes[0..4].copy_from_slice(&step.to_ne_bytes());
        bytes[4..8].copy_from_slice(&(index as i32).to_ne_bytes());
        bytes[8..12].copy_from_slice(&errno.to_ne_bytes());
        libc::write(report, bytes.as_ptr().cast(), bytes.len());
        libc::_exit(127)
    }
}

fn ok(result: libc::c_long) -> bool {
    result != -1
}

/// Writes `text` to `path` (the user namespace's maps).
unsafe fn write_file(path: &CStr, text: &[u8]) -> bool {
    // SAFETY: plain system calls on memory owned by the caller.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return false;
        }
        let written = libc::write(fd, text.as_ptr().cast(), text.len());
        libc::close(fd);
        written == text.len() as isize
    }
}

/// The child between clone3 and execve: system calls only (no allocation, no locks), then exec.
unsafe fn child(
    setup: &ChildSetup,
    report: RawFd,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
) -> ! {
    // SAFETY: every call below is a system call on memory prepared before the clone.
    unsafe {
        // No handler of the runtime (tokio's) runs here: block everything until exec.
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &all,
            std::ptr::null_mut::<libc::sigset_t>(),
            8,
        );
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);

        // Descriptors: move the pipes above 10 first (one may sit on 0-4), then into place.
        let fds = [
            setup.stdin.as_raw_fd(),
            setup.log.as_raw_fd(),
            setup.log.as_raw_fd(),
            setup.requests.as_raw_fd(),
            setup.responses.as_raw_fd(),
        ];
        let mut moved = [0; 5];
        for (i, fd) in fds.iter().enumerate() {
            moved[i] = libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, 10);
            if moved[i] < 0 {
                fail(report, STEP_FDS, i);
            }
        }
        for (target, fd) in moved.iter().enumerate() {
            if libc::dup2(*fd, target as libc::c_int) < 0 {
                fail(report, STEP_FDS, target);
            }
        }
        if libc::setsid() < 0 {
            fail(report, STEP_SESSION, 0);
        }
        if let Some(maps) = &setup.user_maps {
            if !write_file(c"/proc/self/setgroups", b"deny") {
                fail(report, STEP_USER_MAPS, 0);
            }
            if !write_file(c"/proc/self/uid_map", maps.uid_map.as_bytes()) {
                fail(report, STEP_USER_MAPS, 1);
            }
            if !write_file(c"/proc/self/gid_map", maps.gid_map.as_bytes()) {
                fail(report, STEP_USER_MAPS, 2);
            }
        }
        let workdir = match &setup.new_root {
            Some(root) => {
                if libc::mount(
                    std::ptr::null(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ) != 0
                {
                    fail(report, STEP_PRIVATE, 0);
                }
                if libc::mount(
                    c"tmpfs".as_ptr(),
                    root.new_root.as_ptr(),
                    c"tmpfs".as_ptr(),
                    libc::MS_NOSUID | libc::MS_NODEV,
                    c"mode=755,size=1m".as_ptr().cast(),
                ) != 0
                {
                    fail(report, STEP_ROOT, 0);
                }
                for (index, op) in root.ops.iter().enumerate() {
                    let done = match op {
                        ChildOp::Mkdir(at) => libc::mkdir(at.as_ptr(), 0o755) == 0,
                        ChildOp::Symlink(target, at) => {
                            libc::symlink(target.as_ptr(), at.as_ptr()) == 0
                        }
                        ChildOp::Touch(at) => {
                            let fd = libc::open(
                                at.as_ptr(),
                                libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC,
                                0o644,
                            );
                            fd >= 0 && libc::close(fd) == 0
                        }
                        ChildOp::Bind(source, at, flags) => {
                            libc::mount(
                                source.as_ptr(),
                                at.as_ptr(),
                                std::ptr::null(),
                                *flags,
                                std::ptr::null(),
                            ) == 0
                        }
                        ChildOp::Remount(at, flags) => {
                            libc::mount(
                                std::ptr::null(),
                                at.as_ptr(),
                                std::ptr::null(),
                                *flags,
                                std::ptr::null(),
                            ) == 0
                        }
                        ChildOp::Tmpfs(at, flags, options) => {
                            libc::mount(
                                c"tmpfs".as_ptr(),
                                at.as_ptr(),
                                c"tmpfs".as_ptr(),
                                *flags,
                                options.as_ptr().cast(),
                            ) == 0
                        }
                        ChildOp::Proc(at) => {
                            libc::mount(
                                c"proc".as_ptr(),
                                at.as_ptr(),
                                c"proc".as_ptr(),
                                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                                std::ptr::null(),
                            ) == 0
                        }
                    };
                    if !done {
                        fail(report, STEP_OP, index);
                    }
                }
                if libc::chdir(root.new_root.as_ptr()) != 0
                    || !ok(libc::syscall(
                        libc::SYS_pivot_root,
                        c".".as_ptr(),
                        c".".as_ptr(),
                    ))
                    || libc::umount2(c".".as_ptr(), libc::MNT_DETACH) != 0
                    || libc::chdir(c"/".as_ptr()) != 0
                    || libc::mount(
                        std::ptr::null(),
                        c"/".as_ptr(),
                        std::ptr::null(),
                        libc::MS_BIND
                            | libc::MS_REMOUNT
                            | libc::MS_RDONLY
                            | libc::MS_NOSUID
                            | libc::MS_NODEV,
                        std::ptr::null(),
                    ) != 0
                {
                    fail(report, STEP_PIVOT, 0);
                }
                &root.workdir
            }
            None => &setup.workdir,
        };
        if libc::chdir(workdir.as_ptr()) != 0 {
            fail(report, STEP_WORKDIR, 0);
        }
        for (resource, limit) in [
            (libc::RLIMIT_NOFILE, setup.fd_limit),
            (libc::RLIMIT_NPROC, setup.nproc_limit),
            (libc::RLIMIT_CORE, 0),
        ] {
            let value = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            if libc::setrlimit(resource, &value) != 0 {
                fail(report, STEP_LIMITS, resource as usize);
            }
        }
        if let Some((uid, gid)) = setup.run_as {
            // Raw system calls: glibc's wrappers would try to signal the other threads of the runtime, which do
            // not exist in this process.
            if !ok(libc::syscall(
                libc::SYS_setgroups,
                0,
                std::ptr::null::<libc::gid_t>(),
            )) || !ok(libc::syscall(libc::SYS_setresgid, gid, gid, gid))
                || !ok(libc::syscall(libc::SYS_setresuid, uid, uid, uid))
            {
                fail(report, STEP_USER, 0);
            }
        }
        // The death signal is cleared by a change of user: set it (again) now.
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
            || libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0
        {
            fail(report, STEP_PRIVS, 0);
        }
        // Every other descriptor of the runtime closes on exec (ours are close-on-exec already; this covers
        // any that are not). Older kernels without close_range keep relying on O_CLOEXEC.
        libc::syscall(
            libc::SYS_close_range,
            5u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        );
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &none,
            std::ptr::null_mut::<libc::sigset_t>(),
            8,
        );
        libc::execve(setup.program.as_ptr(), argv.as_ptr(), envp.as_ptr());
        fail(report, STEP_EXEC, 0)
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

/// Why a folder cannot be reached by the handlers' user, when they reach it by its path (no namespaces): the
/// first folder on the way they may not traverse, with its mode and owner.
pub fn unreachable_by(path: &Path, uid: u32, gid: u32) -> Option<(PathBuf, u32, u32)> {
    use std::os::unix::fs::MetadataExt as _;
    let real = std::fs::canonicalize(path).ok()?;
    let mut current = PathBuf::from("/");
    let check = |dir: &Path| -> Option<(PathBuf, u32, u32)> {
        let meta = std::fs::metadata(dir).ok()?;
        let mode = meta.mode();
        let bit = if meta.uid() == uid {
            0o100
        } else if meta.gid() == gid {
            0o010
        } else {
            0o001
        };
        (mode & bit == 0).then(|| (dir.to_owned(), mode & 0o7777, meta.uid()))
    };
    if let Some(found) = check(&current) {
        return Some(found);
    }
    for part in real.components().skip(1) {
        current.push(part);
        if let Some(found) = check(&current) {
            return Some(found);
        }
    }
    None
}

/// Removes write permission from the code directory tree: for group and others when the daemon is root (the
/// handler runs as another user, and a zip may carry 0666/0777 modes), for everyone otherwise (the handler runs
/// as the daemon's own user, so it could `chmod` back: this guards against accidents, not against malice).
/// Used only without namespaces: with them the code is a read-only bind mount.
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

    #[test]
    fn a_private_ancestor_is_named() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let private = dir.path().join("private");
        let inner = private.join("data");
        std::fs::create_dir_all(&inner).expect("folders");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
        // SAFETY: geteuid has no preconditions.
        let me = unsafe { libc::geteuid() };
        let stranger = me.wrapping_add(4242);
        let found = unreachable_by(&inner, stranger, stranger).map(|(path, mode, _)| (path, mode));
        assert_eq!(
            found,
            Some((std::fs::canonicalize(&private).unwrap(), 0o700))
        );
        assert_eq!(
            unreachable_by(&inner, me, unsafe { libc::getegid() }),
            None,
            "the owner passes"
        );
    }

    #[test]
    fn the_plan_shows_system_folders_and_covers_hidden_ones() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let plan = Plan::new(Namespaces::Root, dir.path(), &[PathBuf::from("/etc")]);
        assert!(plan.shows(Path::new("/usr/bin")));
        assert!(!plan.shows(dir.path()), "a temporary folder is not shown");
        assert!(plan.ops.iter().any(
            |op| matches!(op, Op::Tmpfs { at, .. } if at == &std::fs::canonicalize("/etc").unwrap())
        ));
    }
}
