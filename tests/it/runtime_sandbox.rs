//! The handler sandbox seen from a hostile handler: what one function can reach of another (code, archive,
//! environment, logs, queued payloads, the database), processes that try to outlive their instance and the
//! runtime, and runtimes started as an operator would start them: from a private folder, with relative paths,
//! as root and as an unprivileged user, inside the daemon without credentials.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use chaintrigger::runtime::Namespaces;
use serde_json::{Value, json};

use crate::support::free_port;
use crate::support::runtime::{
    KEY_ID, KEY_SECRET, TestRuntime, processes_with, skipping, test_dir, wait_until_gone,
    wait_until_running,
};

/// Tries what it is asked to from inside the sandbox and says how each attempt went (`ok...` or the errno).
const PROBE: &str = r#"
import errno, json, os

def attempt(action, path):
    try:
        if action == "read":
            with open(path, "rb") as f:
                return "ok:" + f.read(64).decode("utf-8", "replace")
        if action == "write":
            with open(path, "w") as f:
                f.write("planted")
            return "ok"
        if action == "list":
            return "ok:" + ",".join(sorted(os.listdir(path)))
    except OSError as error:
        return errno.errorcode.get(error.errno, str(error.errno))

def handler(event, context):
    asks = json.loads(event) if event else {}
    environ = []
    for pid in [p for p in os.listdir("/proc") if p.isdigit()]:
        try:
            with open("/proc/%s/environ" % pid, "rb") as f:
                environ.append(f.read().decode("utf-8", "replace"))
        except OSError:
            pass
    return json.dumps({
        "pid": os.getpid(),
        "uid": os.getuid(),
        "root": sorted(os.listdir("/")),
        "processes": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
        "environ": environ,
        "code_path": os.environ["FC_FUNC_CODE_PATH"],
        "results": {action + " " + path: attempt(action, path)
                    for action, paths in asks.items() for path in paths},
    })
"#;

/// The runtime tests' Python handlers; `index.escape` double-forks, calls `setsid()`, then sleeps under the
/// token it is given.
const FIXTURE_PY: &str = include_str!("../../fixtures/functions/python/index.py");

fn token(what: &str) -> String {
    format!("{what}-{}", uuid::Uuid::new_v4().simple())
}

#[tokio::test]
async fn functions_cannot_reach_each_other_or_the_runtime_data() {
    let dir = test_dir("rt-isolation-");
    let data = dir.path().join("data");
    let rt = TestRuntime::start(&data, |_| {}).await;
    if !rt.runtime.isolation().private_code() {
        skipping(
            "functions_cannot_reach_each_other_or_the_runtime_data",
            "no namespaces on this machine: handlers see the host's files with their user's rights",
        );
        rt.stop().await;
        return;
    }
    rt.create_service("svc").await;
    let victim_code = token("VICTIM-CODE");
    let victim_secret = token("VICTIM-SECRET");
    let victim = rt
        .create_function(
            "svc",
            "victim",
            "python3",
            &[(
                "index.py",
                &format!(
                    "# {victim_code}\nimport time\ndef handler(e, c):\n    print('{victim_code}')\n    time.sleep(float(e or 0))\n    return 'v'\n"
                ),
            )],
            json!({"timeout": 30, "environmentVariables": {"VICTIM_SECRET": victim_secret}}),
        )
        .await;
    rt.create_function(
        "svc",
        "prober",
        "python3",
        &[("index.py", PROBE)],
        json!({"timeout": 30}),
    )
    .await;
    // The victim has run (its log exists), has an event queued (its payload is in the database) and is running
    // right now (its process holds its environment).
    assert_eq!(rt.invoke("svc", "victim", "").await.text(), "v");
    let queued = rt
        .send(
            "POST",
            "/2016-08-15/services/svc/functions/victim/invocations",
            &[("x-fc-invocation-type", "Async")],
            format!("0.01 {victim_secret}").into_bytes(),
        )
        .await;
    assert_eq!(queued.status, 202);
    let checksum = victim["codeChecksum"].as_str().unwrap();
    let code = data.join("code");
    let host = |path: &Path| path.display().to_string();
    let asks = json!({
        "read": [
            host(&code.join(checksum).join("index.py")),
            host(&code.join(format!("{checksum}.zip"))),
            host(&data.join("runtime.sqlite")),
            host(&data.join("pool/logs/svc/victim.log")),
            "/code/index.py",
            "/etc/hostname",
        ],
        "list": [host(&data), host(&code), host(dir.path()), "/var/fc/runtime", "/root", "/home"],
        "write": ["/code/planted.py", host(&code.join(checksum).join("planted.py")), "/etc/planted",
                  "/usr/planted", "/tmp/mine", "/var/tmp/mine", "/dev/shm/mine"],
    })
    .to_string();
    let (busy, probe) = tokio::join!(rt.invoke("svc", "victim", "2"), async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        rt.invoke("svc", "prober", &asks).await
    });
    assert_eq!(busy.text(), "v");
    let seen: Value =
        serde_json::from_str(&probe.text()).unwrap_or_else(|e| panic!("{e}: {}", probe.text()));
    let result = |key: &str| seen["results"][key].as_str().unwrap_or("").to_owned();
    for path in [
        code.join(checksum).join("index.py"),
        code.join(format!("{checksum}.zip")),
        data.join("runtime.sqlite"),
        data.join("pool/logs/svc/victim.log"),
    ] {
        assert_eq!(result(&format!("read {}", host(&path))), "ENOENT", "{seen}");
    }
    for path in [&data, &code, &dir.path().to_path_buf()] {
        assert_eq!(result(&format!("list {}", host(path))), "ENOENT", "{seen}");
    }
    assert!(result("read /code/index.py").starts_with("ok:"), "{seen}");
    assert!(result("read /etc/hostname").starts_with("ok"), "{seen}");
    assert_eq!(result("list /var/fc/runtime"), "ok:worker.js,worker.py");
    for absent in ["list /root", "list /home"] {
        assert_eq!(result(absent), "ENOENT", "{absent}: {seen}");
    }
    for read_only in [
        "write /code/planted.py",
        "write /etc/planted",
        "write /usr/planted",
    ] {
        assert!(
            ["EROFS", "EACCES"].contains(&result(read_only).as_str()),
            "{read_only}: {seen}"
        );
    }
    for writable in [
        "write /tmp/mine",
        "write /var/tmp/mine",
        "write /dev/shm/mine",
    ] {
        assert_eq!(result(writable), "ok", "{writable}: {seen}");
    }
    assert!(!code.join(checksum).join("planted.py").exists());
    // Only its own processes, only its own environment: the victim's secret is nowhere it can read.
    assert_eq!(seen["pid"], 1, "{seen}");
    assert!(seen["processes"].as_array().unwrap().len() <= 3, "{seen}");
    let text = seen.to_string();
    assert!(
        !text.contains(&victim_secret),
        "the victim's secret leaked: {text}"
    );
    assert!(
        !text.contains(&victim_code),
        "the victim's code leaked: {text}"
    );
    assert_eq!(seen["code_path"], "/code");
    let root: Vec<&str> = seen["root"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for hidden in ["root", "home", "work", "srv", "mnt", "run", "sys"] {
        assert!(!root.contains(&hidden), "/{hidden} is visible: {root:?}");
    }
    rt.stop().await;
}

#[tokio::test]
async fn escapees_die_when_the_runtime_stops() {
    let dir = test_dir("rt-escape-stop-");
    let rt = TestRuntime::start(&dir.path().join("data"), |_| {}).await;
    if rt.runtime.isolation().namespaces == Namespaces::None {
        skipping(
            "escapees_die_when_the_runtime_stops",
            "no PID namespace on this machine: a process that leaves the session outlives the runtime",
        );
        rt.stop().await;
        return;
    }
    rt.create_service("svc").await;
    rt.create_function(
        "svc",
        "escape",
        "python3",
        &[("index.py", FIXTURE_PY)],
        json!({"handler": "index.escape"}),
    )
    .await;
    let escapee = token("escapee-stop");
    assert_eq!(rt.invoke("svc", "escape", &escapee).await.text(), "escaped");
    assert!(wait_until_running(&escapee, Duration::from_secs(10)).await);
    rt.stop().await;
    assert!(
        wait_until_gone(&escapee, Duration::from_secs(10)).await,
        "the escapee outlived the runtime: {:?}",
        processes_with(&escapee)
    );
}

// ---------------------------------------------------------------------------------------------------------------
// `chaintrigger runtime` and `serve` as processes

/// A `chaintrigger` process, killed when dropped.
struct Running {
    child: tokio::process::Child,
    url: String,
}

impl Running {
    /// Starts `command` and waits (bounded) until `port` accepts connections.
    async fn start(mut command: tokio::process::Command, port: u16) -> Running {
        command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("start chaintrigger");
        let deadline = Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            if let Ok(Some(status)) = child.try_wait() {
                let output = child.wait_with_output().await.unwrap();
                panic!(
                    "chaintrigger exited ({status}):\n{}",
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            assert!(Instant::now() < deadline, "chaintrigger did not listen");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Running {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    async fn invoke(&self, function: &str, payload: &str) -> (u16, String) {
        let reply = reqwest::Client::new()
            .post(format!(
                "{}/2016-08-15/services/demo/functions/{function}/invocations",
                self.url
            ))
            .body(payload.to_owned())
            .send()
            .await
            .expect("the runtime answers");
        (
            reply.status().as_u16(),
            reply.text().await.unwrap_or_default(),
        )
    }
}

/// A functions folder with `demo/probe`, `demo/escape` (Python) and `demo/node` (Node.js).
fn write_functions(folder: &Path) {
    for (name, runtime, file, code, handler) in [
        ("probe", "python3", "index.py", PROBE, "index.handler"),
        ("escape", "python3", "index.py", FIXTURE_PY, "index.escape"),
        (
            "node",
            "nodejs20",
            "index.js",
            "exports.handler = (e, c, cb) => cb(null, 'node in ' + process.cwd());\n",
            "index.handler",
        ),
    ] {
        let function = folder.join("demo").join(name);
        std::fs::create_dir_all(&function).unwrap();
        std::fs::write(function.join(file), code).unwrap();
        std::fs::write(
            function.join("function.toml"),
            format!("runtime = \"{runtime}\"\nhandler = \"{handler}\"\ntimeout = 20\n"),
        )
        .unwrap();
    }
}

fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_chaintrigger")
}

/// `chaintrigger runtime` started in `dir` with relative paths (`--data-dir <data> --functions functions`),
/// after writing the test functions there.
async fn runtime_in(dir: &Path, data: &str) -> Running {
    write_functions(&dir.join("functions"));
    let port = free_port();
    let mut command = tokio::process::Command::new(binary());
    command
        .current_dir(dir)
        .args(["runtime", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--data-dir", data, "--functions", "functions"]);
    Running::start(command, port).await
}

#[tokio::test]
async fn a_runtime_started_from_a_private_folder_with_relative_paths_runs_handlers() {
    // As an operator would: `cd` into a private folder, relative --data-dir and --functions.
    let dir = test_dir("rt-relative-");
    let runtime = runtime_in(dir.path(), "state/data").await;
    let (status, text) = runtime.invoke("probe", "").await;
    assert_eq!(status, 200, "{text}");
    let seen: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        assert_ne!(seen["uid"], 0, "handlers do not run as root");
    }
    let (status, text) = runtime.invoke("node", "").await;
    assert_eq!(status, 200, "{text}");
    assert!(text.starts_with("node in /"), "{text}");
    assert!(dir.path().join("state/data/runtime.sqlite").is_file());
    drop(runtime);
}

#[tokio::test]
async fn escapees_die_when_the_runtime_process_is_killed() {
    let dir = test_dir("rt-escape-kill-");
    let mut runtime = runtime_in(dir.path(), "data").await;
    let (_, text) = runtime.invoke("probe", "").await;
    let seen: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    if seen["pid"] != 1 {
        skipping(
            "escapees_die_when_the_runtime_process_is_killed",
            "no PID namespace on this machine: a process that leaves the session outlives the runtime",
        );
        return;
    }
    let escapee = token("escapee-kill");
    assert_eq!(
        runtime.invoke("escape", &escapee).await,
        (200, "escaped".to_owned())
    );
    assert!(wait_until_running(&escapee, Duration::from_secs(10)).await);
    // SIGKILL: the runtime gets no chance to stop anything itself.
    runtime.child.start_kill().unwrap();
    runtime.child.wait().await.unwrap();
    assert!(
        wait_until_gone(&escapee, Duration::from_secs(10)).await,
        "the escapee outlived the killed runtime: {:?}",
        processes_with(&escapee)
    );
}

#[tokio::test]
async fn the_daemon_from_a_relative_config_runs_handlers_with_its_runtime_key_only() {
    // `serve --config conf/daemon.toml` from a private folder: every path in the file is relative to it.
    let dir = test_dir("rt-serve-");
    let conf = dir.path().join("conf");
    write_functions(&conf.join("functions"));
    std::fs::write(
        conf.join("admin-token"),
        "serve-test-admin-token-0123456789",
    )
    .unwrap();
    std::fs::write(conf.join("runtime.secret"), KEY_SECRET).unwrap();
    let (runtime_port, admin_port) = (free_port(), free_port());
    let config = |credentials: bool| {
        format!(
            "instance_id = \"sandbox\"\ndatabase = \"state/daemon.sqlite\"\n\n[admin]\nlisten = \"127.0.0.1:{admin_port}\"\n\
             token = {{ file = \"admin-token\" }}\n\n[runtime]\nenabled = true\nlisten = \"127.0.0.1:{runtime_port}\"\n\
             data_dir = \"state/runtime\"\nfunctions = \"functions\"\n{}",
            if credentials {
                format!(
                    "credentials = {{ access_key_id = \"{KEY_ID}\", access_key_secret = {{ file = \"runtime.secret\" }} }}\n"
                )
            } else {
                String::new()
            }
        )
    };
    for credentials in [true, false] {
        std::fs::write(conf.join("daemon.toml"), config(credentials)).unwrap();
        let mut command = tokio::process::Command::new(binary());
        command
            .current_dir(dir.path())
            .args(["serve", "--config", "conf/daemon.toml"]);
        let daemon = Running::start(command, runtime_port).await;
        let client = TestRuntime::client_for(&daemon.url, credentials);
        let reply = client
            .send(
                "POST",
                "/2016-08-15/services/demo/functions/node/invocations",
                &[],
                b"x".to_vec(),
            )
            .await;
        if credentials {
            assert_eq!(reply.status, 200, "{}", reply.text());
            assert!(reply.text().starts_with("node in /"), "{}", reply.text());
        } else {
            // No credentials: the runtime accepts only the daemon's own key, made at start and kept in memory.
            reply.assert_error(403, "MissingRequiredHeader");
            let old_key = TestRuntime::client_with_key(&daemon.url, "anonymous", "anonymous");
            old_key
                .send("GET", "/2016-08-15/services", &[], vec![])
                .await
                .assert_error(403, "InvalidAccessKeyID");
        }
        drop(daemon);
        // Let the port go before the next round.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(conf.join("state/runtime/runtime.sqlite").is_file());
}

/// Whether `uid` can reach and write `dir` and run the test binary: a private folder inside cargo's temporary
/// folder is only usable by another user when the folders above it let that user through.
fn usable_by(uid: u32, dir: &Path) -> Result<(), String> {
    let status = std::process::Command::new("setpriv")
        .args([
            &format!("--reuid={uid}"),
            &format!("--regid={uid}"),
            "--clear-groups",
            "/bin/sh",
            "-c",
            "test -w \"$0\" && test -x \"$1\"",
        ])
        .arg(dir)
        .arg(binary())
        .status()
        .map_err(|e| format!("cannot run setpriv: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "uid {uid} cannot reach {} or run {} (a folder above them is closed to it)",
            dir.display(),
            binary()
        ))
    }
}

#[tokio::test]
async fn an_unprivileged_runtime_isolates_its_handlers_in_a_user_namespace() {
    let dir = test_dir("rt-unprivileged-");
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let unprivileged = 65534;
    if root {
        // The folder stays private (0700), to the unprivileged user this time.
        std::os::unix::fs::chown(dir.path(), Some(unprivileged), Some(unprivileged)).unwrap();
        if let Err(why) = usable_by(unprivileged, dir.path()) {
            skipping(
                "an_unprivileged_runtime_isolates_its_handlers_in_a_user_namespace",
                &why,
            );
            return;
        }
    }
    let functions = dir.path().join("functions");
    write_functions(&functions);
    if root {
        chown_tree(dir.path(), unprivileged);
    }
    let port = free_port();
    let data = dir.path().join("data");
    let mut command = if root {
        let mut command = tokio::process::Command::new("setpriv");
        command
            .arg(format!("--reuid={unprivileged}"))
            .arg(format!("--regid={unprivileged}"))
            .arg("--clear-groups")
            .arg(binary());
        command
    } else {
        tokio::process::Command::new(binary())
    };
    command
        .current_dir(dir.path())
        .args(["runtime", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(&data)
        .arg("--functions")
        .arg(&functions);
    let mut runtime = Running::start(command, port).await;
    let asks = json!({
        "list": [data.display().to_string(), dir.path().display().to_string()],
        "read": [data.join("runtime.sqlite").display().to_string()],
        "write": ["/code/planted.py", "/tmp/mine"],
    })
    .to_string();
    let (status, text) = runtime.invoke("probe", &asks).await;
    assert_eq!(status, 200, "{text}");
    let seen: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    if seen["pid"] != 1 {
        skipping(
            "an_unprivileged_runtime_isolates_its_handlers_in_a_user_namespace",
            "user namespaces are not available to this user here: handlers run with the runtime's rights",
        );
        return;
    }
    let result = |key: String| seen["results"][&key].as_str().unwrap_or("").to_owned();
    assert_eq!(
        result(format!("list {}", data.display())),
        "ENOENT",
        "{seen}"
    );
    assert_eq!(
        result(format!("list {}", dir.path().display())),
        "ENOENT",
        "{seen}"
    );
    assert_eq!(
        result(format!("read {}", data.join("runtime.sqlite").display())),
        "ENOENT",
        "{seen}"
    );
    assert_eq!(result("write /code/planted.py".into()), "EROFS", "{seen}");
    assert_eq!(result("write /tmp/mine".into()), "ok", "{seen}");
    assert_eq!(seen["code_path"], "/code");
    let (status, text) = runtime.invoke("node", "").await;
    assert_eq!((status, text.as_str()), (200, "node in /code"));
    // Every process of an instance still dies with the runtime.
    let escapee = token("escapee-unprivileged");
    assert_eq!(runtime.invoke("escape", &escapee).await.0, 200);
    assert!(wait_until_running(&escapee, Duration::from_secs(10)).await);
    runtime.child.start_kill().unwrap();
    runtime.child.wait().await.unwrap();
    assert!(
        wait_until_gone(&escapee, Duration::from_secs(10)).await,
        "{:?}",
        processes_with(&escapee)
    );
}

fn chown_tree(path: &Path, uid: u32) {
    let mut pending: Vec<PathBuf> = vec![path.to_owned()];
    while let Some(path) = pending.pop() {
        std::os::unix::fs::lchown(&path, Some(uid), Some(uid)).unwrap();
        if path.is_dir() {
            for entry in std::fs::read_dir(&path).unwrap() {
                pending.push(entry.unwrap().path());
            }
        }
    }
}

#[test]
fn run_as_is_checked_where_it_is_written() {
    let text = |run_as: &str| {
        format!(
            "instance_id = \"x\"\ndatabase = \"d.sqlite\"\n[admin]\ntoken = {{ env = \"T\" }}\n\
             [runtime]\nenabled = true\nrun_as = \"{run_as}\"\n"
        )
    };
    let path = Path::new("/etc/chaintrigger/daemon.toml");
    for (value, expected) in [
        ("root", "is root"),
        ("0:0", "is root"),
        ("bad user", "is not `user` or `user:group`"),
        ("a:b:c", "is not `user` or `user:group`"),
    ] {
        let error = chaintrigger::config::Config::parse(&text(value), path)
            .expect_err("refused")
            .to_string();
        assert!(
            error.starts_with("/etc/chaintrigger/daemon.toml:7:") && error.contains(expected),
            "{value}: {error}"
        );
    }
    let config = chaintrigger::config::Config::parse(&text("nobody:nogroup"), path).unwrap();
    assert_eq!(
        config
            .runtime
            .run_as
            .as_ref()
            .map(|r| r.get_ref().to_string()),
        Some("nobody:nogroup".to_owned())
    );
    // A name this machine does not know is found when the environment is checked.
    let unknown = chaintrigger::config::Config::parse(&text("no_such_user_here"), path).unwrap();
    let error = unknown.check_environment().unwrap_err().to_string();
    assert!(
        error.contains("runtime.run_as: there is no user 'no_such_user_here'"),
        "{error}"
    );
}
