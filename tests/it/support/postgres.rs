//! A throwaway PostgreSQL server for tests: started once per test process with the machine's `initdb` / `pg_ctl`
//! (Debian's `postgresql` package, which `.ci/setup` installs), or the server `CHAINTRIGGER_TEST_POSTGRES` names
//! (`postgres://user:password@host:port/any`, a user that may create databases). Each test gets a database of its
//! own ([`PgServer::create_database`]).
//!
//! The started server lives in a private (0700) temporary folder, listens only on a Unix socket in it, and requires
//! a password (scram-sha-256), so every connection exercises the store's password path. As root, `initdb` and
//! `pg_ctl` run as `nobody` (PostgreSQL refuses to run as root), which owns the folder. A watchdog process stops the
//! server and removes the folder once the test process is gone, however it ended.
//!
//! Only std and tempfile: this file is also compiled into the library's unit tests (`src/store/tests.rs`).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The password of the started server's `postgres` user.
const PASSWORD: &str = "chaintrigger-test-password";
/// The unprivileged user (and group) the server runs as when the tests run as root.
const NOBODY: u32 = 65534;

/// A running server the tests may create databases on.
pub struct PgServer {
    /// `postgresql://user@host[:port]`: no password, no database, no query.
    base: String,
    /// The URL's query (e.g. the socket folder), empty or starting with `?`.
    query: String,
    /// The password of the server's user.
    password: String,
    /// The folder of the started server (`None` with `CHAINTRIGGER_TEST_POSTGRES`).
    dir: Option<PathBuf>,
    /// Where `psql` is.
    bin: PathBuf,
}

/// One test's database.
pub struct TestDatabase {
    /// Its name.
    pub name: String,
    /// Its URL, without the password.
    pub url: String,
    /// The password to give with it.
    pub password: String,
}

/// The test process's server, started on first use.
pub fn server() -> &'static PgServer {
    static SERVER: OnceLock<PgServer> = OnceLock::new();
    SERVER.get_or_init(|| match std::env::var("CHAINTRIGGER_TEST_POSTGRES") {
        Ok(url) if !url.is_empty() => PgServer::external(&url),
        _ => PgServer::start(&[("fsync", "off"), ("synchronous_commit", "off")]),
    })
}

/// The folder holding `initdb`, `pg_ctl` and `psql`: `PG_BIN`, else the newest `/usr/lib/postgresql/*/bin`, else
/// the folder on `PATH` that has `initdb`. When none has it, `.ci/setup` installs Debian's `postgresql` first (once,
/// under a file lock shared by every test process), as on a fresh machine.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PG_BIN") {
        return PathBuf::from(dir);
    }
    installed_bin_dir()
        .or_else(|| {
            install_postgres();
            installed_bin_dir()
        })
        .expect(
            "PostgreSQL's initdb is not installed and .ci/setup could not install it (Debian package `postgresql`): \
             install it, set PG_BIN, or point CHAINTRIGGER_TEST_POSTGRES at a server",
        )
}

fn installed_bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    std::env::var_os("PATH")
        .and_then(|path| std::env::split_paths(&path).find(|dir| dir.join("initdb").is_file()))
}

/// Runs `.ci/setup` under a file lock (the unit and the integration tests may both get here at once).
fn install_postgres() {
    let lock_path = std::env::temp_dir().join("chaintrigger-postgres-setup.lock");
    let Ok(lock) = std::fs::File::create(&lock_path) else {
        return;
    };
    // SAFETY: flock on a descriptor we own for the whole call; released when `lock` is dropped.
    let _ = unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) };
    if installed_bin_dir().is_some() {
        return;
    }
    let setup = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/setup");
    let _ = std::process::Command::new(setup).status();
}

fn is_root() -> bool {
    // SAFETY: geteuid(2) has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A command run as the server's owner: `nobody` when we are root, ourselves otherwise.
fn as_owner(program: &Path) -> Command {
    if is_root() {
        let mut command = Command::new("setpriv");
        command
            .arg(format!("--reuid={NOBODY}"))
            .arg(format!("--regid={NOBODY}"))
            .arg("--clear-groups")
            .arg("--")
            .arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn run(mut command: Command, what: &str) -> String {
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "{what} failed ({}): {text}",
        output.status
    );
    text
}

impl PgServer {
    /// Starts a server in a new private folder with the given settings (`-c name=value`).
    pub fn start(settings: &[(&str, &str)]) -> PgServer {
        let bin = bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("ct-pg-")
            .tempdir()
            .expect("a temporary folder for PostgreSQL")
            .keep();
        let data = dir.join("data");
        let password_file = dir.join("password");
        std::fs::write(&password_file, PASSWORD).expect("write the password file");
        if is_root() {
            for path in [&dir, &password_file] {
                std::os::unix::fs::chown(path, Some(NOBODY), Some(NOBODY))
                    .expect("give the server's folder to nobody");
            }
        }
        // Stop the server and remove the folder when this process is gone, whatever ends it (a panic, a kill).
        let stop = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {owner}'{pg_ctl}' -D '{data}' -m immediate stop; rm -rf '{dir}'",
            pid = std::process::id(),
            owner = if is_root() {
                format!("setpriv --reuid={NOBODY} --regid={NOBODY} --clear-groups -- ")
            } else {
                String::new()
            },
            pg_ctl = bin.join("pg_ctl").display(),
            data = data.display(),
            dir = dir.display(),
        );
        // Started in the background by a shell that exits at once, so it outlives this process and is nobody's
        // zombie; in a process group of its own, so a Ctrl-C of the tests does not stop it before it cleaned up.
        let status = std::os::unix::process::CommandExt::process_group(
            Command::new("sh")
                .arg("-c")
                .arg(format!("({stop}) </dev/null >/dev/null 2>&1 &"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
            0,
        )
        .status()
        .expect("start the server's watchdog");
        assert!(status.success(), "the server's watchdog: {status}");

        let mut initdb = as_owner(&bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .arg(format!("--pwfile={}", password_file.display()));
        run(initdb, "initdb");
        let mut options = format!("-k {} -c listen_addresses=''", dir.display());
        for (name, value) in settings {
            options.push_str(&format!(" -c {name}={value}"));
        }
        let mut pg_ctl = as_owner(&bin.join("pg_ctl"));
        pg_ctl
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(dir.join("server.log"))
            .args(["-w", "-t", "60", "-o", &options, "start"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        std::os::unix::process::CommandExt::process_group(&mut pg_ctl, 0);
        let status = pg_ctl.status().expect("start pg_ctl");
        assert!(
            status.success(),
            "pg_ctl start failed ({status}): {}",
            std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()
        );
        let port = settings
            .iter()
            .find(|(name, _)| *name == "port")
            .map_or("5432", |(_, port)| port);
        PgServer {
            base: format!(
                "postgresql://postgres@{}:{port}",
                percent_encode(&dir.display().to_string())
            ),
            query: String::new(),
            password: PASSWORD.to_owned(),
            dir: Some(dir),
            bin,
        }
    }

    /// The server `url` names (`postgres://user:password@host:port/...`).
    fn external(url: &str) -> PgServer {
        let rest = url
            .strip_prefix("postgres://")
            .or_else(|| url.strip_prefix("postgresql://"))
            .expect("CHAINTRIGGER_TEST_POSTGRES: a postgres:// URL");
        let (authority, _) = rest.split_once('/').unwrap_or((rest, ""));
        let (userinfo, host) = authority
            .rsplit_once('@')
            .expect("CHAINTRIGGER_TEST_POSTGRES: postgres://user:password@host:port/");
        let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
        PgServer {
            base: format!("postgresql://{user}@{host}"),
            query: String::new(),
            password: password.to_owned(),
            dir: None,
            bin: bin_dir(),
        }
    }

    /// The password of the server's user.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The URL of database `name`, without the password.
    pub fn url(&self, name: &str) -> String {
        format!("{}/{name}{}", self.base, self.query)
    }

    /// The started server's folder (its log is `server.log` there).
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// A new, empty database for one test.
    pub fn create_database(&self) -> TestDatabase {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "ct_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        TestDatabase {
            url: self.url(&name),
            name,
            password: self.password.clone(),
        }
    }

    /// Runs `sql` on database `name` with `psql`; its output, unaligned, tuples only.
    pub fn psql(&self, name: &str, sql: &str) -> String {
        let mut psql = Command::new(self.bin.join("psql"));
        psql.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d"])
            .arg(self.url(name))
            .args(["-c", sql])
            .env("PGPASSWORD", &self.password)
            .env("PGCONNECT_TIMEOUT", "10");
        run(psql, &format!("psql `{sql}`"))
    }
}

/// Percent-encodes a socket folder for the host part of a URL.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
