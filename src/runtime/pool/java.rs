//! Java functions: the JDK that runs them, the Java shim (the `com.aliyun.fc.runtime` API and
//! `chaintrigger.fc.Worker`, embedded as sources) compiled into `<data dir>/shim/java/`, and the JVM's command line.
//!
//! # Invariants
//!
//! - The classes under `shim/java/` are the embedded sources compiled by this JDK's `javac`: a stamp file
//!   (`.sources`, a SHA-256 of every source and of the `javac` used) says so. Anything else is rebuilt in a fresh
//!   folder that is then renamed into place, so an instance never loads a half-written tree.
//! - Compiled at most once per pool, at the first Java instance (concurrent first starts wait for the same
//!   compilation): a runtime that never runs Java never starts `javac`. A failure is kept for the pool's life and
//!   is the start error of every Java instance (a JDK installed later needs a restart).
//! - Folders are 0755 and files 0644: the handlers' user reads them through the sandbox's read-only view of
//!   the shim folder (or by path without namespaces).
//! - The heap (`-Xmx`) leaves room under `memorySize` for what the JVM needs besides it, so a full heap is an
//!   `OutOfMemoryError` the handler's caller sees, before the pool's resident-memory check kills the instance.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest as _, Sha256};

/// One embedded source: its path under the classes' root, and its text.
macro_rules! source {
    ($path:literal) => {
        ($path, include_str!(concat!("shim/java/", $path)))
    };
}

/// Every source of the Java shim (a unit test checks the folder holds no other).
const SOURCES: &[(&str, &str)] = &[
    source!("chaintrigger/fc/Json.java"),
    source!("chaintrigger/fc/Worker.java"),
    source!("com/aliyun/fc/runtime/Context.java"),
    source!("com/aliyun/fc/runtime/Credentials.java"),
    source!("com/aliyun/fc/runtime/FunctionComputeLogger.java"),
    source!("com/aliyun/fc/runtime/FunctionInitializer.java"),
    source!("com/aliyun/fc/runtime/FunctionParam.java"),
    source!("com/aliyun/fc/runtime/OpenTracing.java"),
    source!("com/aliyun/fc/runtime/PojoRequestHandler.java"),
    source!("com/aliyun/fc/runtime/PreFreezeHandler.java"),
    source!("com/aliyun/fc/runtime/PreStopHandler.java"),
    source!("com/aliyun/fc/runtime/Service.java"),
    source!("com/aliyun/fc/runtime/StreamRequestHandler.java"),
];

/// The shim's main class.
const MAIN_CLASS: &str = "chaintrigger.fc.Worker";
/// The compiled classes' folder, under the shim folder.
const CLASSES_DIR: &str = "java";
/// The stamp file, in the classes' folder.
const STAMP: &str = ".sources";
/// How long `javac` may take (it compiles a dozen small files; a loaded machine is slow to start a JVM).
const COMPILE_TIMEOUT: Duration = Duration::from_secs(180);
/// Memory kept out of the heap for the JVM itself (class metadata, compiled code, thread stacks, the GC).
const NON_HEAP_MB: u32 = 64;

/// The JDK Java functions run on, and the state of the shim's compilation.
#[derive(Debug)]
pub struct Jdk {
    /// The `java` launcher.
    java: PathBuf,
    /// Set once the shim's classes are in place (or could not be).
    compiled: tokio::sync::OnceCell<Result<(), String>>,
}

impl Jdk {
    /// A JDK whose launcher is `java`; nothing is checked or compiled yet.
    pub fn new(java: PathBuf) -> Jdk {
        Jdk {
            java,
            compiled: tokio::sync::OnceCell::new(),
        }
    }

    /// The `java` launcher.
    pub fn java(&self) -> &Path {
        &self.java
    }

    /// `javac` next to the real `java` (alternatives links resolved), else the first on `PATH`.
    fn javac(&self) -> PathBuf {
        if let Ok(real) = std::fs::canonicalize(&self.java)
            && let Some(bin) = real.parent()
            && bin.join("javac").is_file()
        {
            return bin.join("javac");
        }
        std::env::var_os("PATH")
            .and_then(|path| {
                std::env::split_paths(&path)
                    .map(|dir| dir.join("javac"))
                    .find(|candidate| candidate.is_file())
            })
            .unwrap_or_else(|| PathBuf::from("javac"))
    }

    /// Makes sure `<shim_dir>/java/` holds the compiled shim; the first call compiles, the others wait for it.
    pub async fn prepare(&self, shim_dir: &Path) -> Result<(), String> {
        self.compiled
            .get_or_init(|| compile(self.javac(), shim_dir.to_owned()))
            .await
            .clone()
    }

    /// The JVM's arguments (after the program) for a function of `memory_mb`, with the shim's classes under
    /// `shim_dir` and `tmp` as its temporary folder (both as the handler sees them).
    pub fn args(memory_mb: u32, shim_dir: &Path, tmp: &Path) -> Vec<String> {
        vec![
            format!("-Xmx{}m", heap_mb(memory_mb)),
            "-XX:+UseSerialGC".to_owned(),
            "-XX:-UsePerfData".to_owned(),
            "-Dfile.encoding=UTF-8".to_owned(),
            format!("-Djava.io.tmpdir={}", tmp.display()),
            "-cp".to_owned(),
            shim_dir.join(CLASSES_DIR).display().to_string(),
            MAIN_CLASS.to_owned(),
        ]
    }
}

/// The heap of a function of `memory_mb`: [`NON_HEAP_MB`] less, but never less than half.
fn heap_mb(memory_mb: u32) -> u32 {
    memory_mb
        .saturating_sub(NON_HEAP_MB)
        .max(memory_mb / 2)
        .max(16)
}

/// What the stamp holds: the sources and the compiler that made the classes.
fn stamp(javac: &Path) -> String {
    let mut sha = Sha256::new();
    sha.update(javac.as_os_str().as_encoded_bytes());
    for (path, text) in SOURCES {
        sha.update([0]);
        sha.update(path.as_bytes());
        sha.update([0]);
        sha.update(text.as_bytes());
    }
    hex::encode(sha.finalize())
}

async fn compile(javac: PathBuf, shim_dir: PathBuf) -> Result<(), String> {
    let classes = shim_dir.join(CLASSES_DIR);
    let wanted = stamp(&javac);
    if std::fs::read_to_string(classes.join(STAMP)).is_ok_and(|found| found == wanted) {
        return Ok(());
    }
    let build = shim_dir.join(format!(".java-build-{}", uuid::Uuid::new_v4().simple()));
    let result = build_into(&javac, &build, &wanted).await;
    let result = match result {
        Ok(()) => replace(&build.join("classes"), &classes),
        Err(error) => Err(error),
    };
    let _ = std::fs::remove_dir_all(&build);
    match &result {
        Ok(()) => tracing::info!(classes = %classes.display(), "compiled the Java function shim"),
        Err(error) => tracing::warn!("Java functions cannot run: {error}"),
    }
    result
}

/// Writes the sources under `build/src` and compiles them into `build/classes` with the stamp.
async fn build_into(javac: &Path, build: &Path, stamp: &str) -> Result<(), String> {
    let sources = build.join("src");
    let classes = build.join("classes");
    let io = |what: &str, path: &Path, error: std::io::Error| {
        format!("cannot {what} {}: {error}", path.display())
    };
    let mut files = Vec::with_capacity(SOURCES.len());
    for (path, text) in SOURCES {
        let file = sources.join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io("create", parent, e))?;
        }
        std::fs::write(&file, text).map_err(|e| io("write", &file, e))?;
        files.push(file);
    }
    std::fs::create_dir_all(&classes).map_err(|e| io("create", &classes, e))?;
    let mut command = tokio::process::Command::new(javac);
    command
        .args(["-encoding", "UTF-8", "-nowarn", "-d"])
        .arg(&classes)
        .args(&files)
        .env("LANG", "C.UTF-8")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let output = match tokio::time::timeout(COMPILE_TIMEOUT, command.output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(error)) => {
            return Err(format!(
                "cannot run {} to compile the Java shim (install a JDK, e.g. openjdk-17-jdk-headless): {error}",
                javac.display()
            ));
        }
        Err(_) => {
            return Err(format!(
                "{} did not compile the Java shim within {} seconds",
                javac.display(),
                COMPILE_TIMEOUT.as_secs()
            ));
        }
    };
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let first: Vec<&str> = stderr.lines().take(10).collect();
        return Err(format!(
            "{} could not compile the Java shim ({}): {}",
            javac.display(),
            output.status,
            first.join(" | ")
        ));
    }
    std::fs::write(classes.join(STAMP), stamp).map_err(|e| io("write", &classes, e))?;
    open_to_all(&classes).map_err(|e| io("set the modes of", &classes, e))
}

/// Folders 0755, files 0644, whatever the umask: the handlers' user reads them.
fn open_to_all(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let mut pending = vec![dir.to_owned()];
    while let Some(path) = pending.pop() {
        let metadata = std::fs::symlink_metadata(&path)?;
        let mode = if metadata.is_dir() {
            for entry in std::fs::read_dir(&path)? {
                pending.push(entry?.path());
            }
            0o755
        } else {
            0o644
        };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

/// Puts the new classes in place of the old ones (a rename: instances see the old tree or the new one).
fn replace(new: &Path, classes: &Path) -> Result<(), String> {
    let old = classes.with_extension(format!("old-{}", uuid::Uuid::new_v4().simple()));
    if classes.exists() {
        std::fs::rename(classes, &old)
            .map_err(|e| format!("cannot move {} aside: {e}", classes.display()))?;
    }
    std::fs::rename(new, classes).map_err(|e| {
        format!(
            "cannot move the compiled Java shim to {}: {e}",
            classes.display()
        )
    })?;
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_source_in_the_folder_is_embedded() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/runtime/pool/shim/java");
        let mut found = Vec::new();
        let mut pending = vec![root.clone()];
        while let Some(dir) = pending.pop() {
            for entry in std::fs::read_dir(&dir).expect("the Java shim folder") {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    pending.push(path);
                } else if path.extension().is_some_and(|e| e == "java") {
                    let relative = path.strip_prefix(&root).expect("under the root");
                    found.push(relative.to_string_lossy().into_owned());
                }
            }
        }
        found.sort();
        let embedded: Vec<&str> = SOURCES.iter().map(|(path, _)| *path).collect();
        assert_eq!(found, embedded);
    }

    #[test]
    fn the_heap_leaves_room_for_the_jvm() {
        assert_eq!(heap_mb(128), 64);
        assert_eq!(heap_mb(256), 192);
        assert_eq!(heap_mb(3072), 3008);
        let args = Jdk::args(512, Path::new("/var/fc/runtime"), Path::new("/tmp"));
        assert_eq!(args[0], "-Xmx448m");
        assert!(args.contains(&"/var/fc/runtime/java".to_owned()));
        assert_eq!(args.last().map(String::as_str), Some(MAIN_CLASS));
    }

    #[test]
    fn the_stamp_follows_the_compiler() {
        assert_ne!(
            stamp(Path::new("/usr/bin/javac")),
            stamp(Path::new("/opt/jdk/bin/javac"))
        );
        assert_eq!(stamp(Path::new("/a")), stamp(Path::new("/a")));
    }
}
