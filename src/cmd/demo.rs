//! `chaintrigger demo`: the whole path on this machine, watched live. It starts, in this process:
//!
//! - the peer simulator behind TLS with a freshly generated CA: channel `mychannel` with the 24 recorded blocks of
//!   a real Fabric v2.5 network, then generated `taskmgr` blocks at `--rate` blocks per second;
//! - the daemon with `config/demo.toml` (through [`crate::app::App`]): the bundled function runtime with the
//!   handlers of `config/functions/`, the triggers, the SQLite store and the admin API.
//!
//! The values that only exist at run time (the simulator's address and TLS CA, the data folder, the admin token)
//! are filled into a copy of the configuration written into the data folder, which is what the daemon runs, so
//! `chaintrigger triggers reload` works on it. Every second the terminal shows the chain height and each
//! trigger's progress; between refreshes, the notable changes (discarded events, state changes) and the
//! handlers' own log lines.
//!
//! Stopping: `--duration`, the first Ctrl-C or SIGTERM stop the daemon gracefully (the events in flight finish for
//! at most 5 s) and the simulator (its connections are cut after [`peersim::SHUTDOWN_GRACE`]); a second Ctrl-C
//! exits at once, and so does a stop still not over after [`STOP_DEADLINE`]. The temporary data folder is removed
//! on every one of those paths (not a `--data-dir`).

mod display;

use std::collections::BTreeMap;
use std::io::{IsTerminal as _, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use crate::admin::{AdminError, EngineControl};
use crate::app::{self, App, AppOptions};
use crate::config::Config;
use crate::peersim::pki::TestCa;
use crate::peersim::{self, GeneratorConfig, PeerSim, PeerSimConfig, ServerTls};

use super::signals;

/// The name in the simulator's generated TLS certificate; the daemon reaches it by IP and checks this name.
const PEER_TLS_NAME: &str = "peer0.org1.example.com";

/// The highest `--rate`: the simulator's generator ticks at most once per millisecond.
const MAX_RATE: f64 = 1000.0;

/// How long the events in flight may take to finish when the demo stops.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How long a stop may take in all before the demo exits anyway.
const STOP_DEADLINE: Duration = Duration::from_secs(10);

/// Arguments of `chaintrigger demo`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Generated blocks per second (each holds 1 to 3 `taskmgr` transactions), after the 24 recorded blocks.
    #[arg(long, default_value_t = 2.0)]
    pub rate: f64,
    /// Stop after this many seconds and print a summary; 0 runs until Ctrl-C.
    #[arg(long, default_value_t = 0)]
    pub duration: u64,
    /// The demo configuration (triggers, runtime, functions folder).
    #[arg(long, default_value = "config/demo.toml")]
    pub config: PathBuf,
    /// Folder for the SQLite store, the runtime's data, the generated configuration, TLS CA and admin token,
    /// kept after the run. Default: a new temporary folder, removed at exit.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The admin API's address (default: the configuration's, 127.0.0.1:8650); port 0 picks a free port.
    #[arg(long)]
    pub admin_listen: Option<SocketAddr>,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    if !(args.rate.is_finite() && args.rate > 0.0 && args.rate <= MAX_RATE) {
        anyhow::bail!(
            "--rate {}: expected blocks per second above 0 and at most {MAX_RATE}",
            args.rate
        );
    }
    // Checked as written first, so a broken demo.toml is reported against its own lines.
    Config::load(&args.config).with_context(|| {
        format!(
            "cannot use the demo configuration {} (run the demo from the repository root, or pass --config)",
            args.config.display()
        )
    })?;
    let data = DataDir::new(args.data_dir.clone())?;
    // From here on every exit removes a temporary data folder, forced ones included.
    let shutdown = CancellationToken::new();
    let cleanup: signals::Cleanup = {
        let temporary = data.kept().is_none().then(|| data.path().to_owned());
        Arc::new(move || {
            if let Some(path) = &temporary {
                let _ = std::fs::remove_dir_all(path);
            }
        })
    };
    signals::listen(shutdown.clone(), cleanup.clone());
    signals::exit_if_stuck(shutdown.clone(), STOP_DEADLINE, cleanup);

    let ca = TestCa::new("tlsca.org1.example.com", "org1.example.com")?;
    let server = ca.issue(PEER_TLS_NAME, &[PEER_TLS_NAME])?;
    let ca_file = data.path().join("tls-ca.pem");
    std::fs::write(&ca_file, ca.cert_pem())
        .with_context(|| format!("cannot write {}", ca_file.display()))?;
    let token = hex::encode(rand::random::<[u8; 24]>());
    let token_file = data.path().join("admin-token");
    write_private(&token_file, &token)?;

    let sim = PeerSim::new(PeerSimConfig {
        generator: Some(GeneratorConfig {
            signer: Arc::new(peersim::fixture_user1()),
            interval: Some(Duration::from_secs_f64(1.0 / args.rate)),
        }),
        tls: Some(ServerTls {
            cert_pem: Bytes::from(server.cert_pem),
            key_pem: Bytes::from(server.key_pem),
            client_ca_pem: None,
        }),
        ..PeerSimConfig::from_fixtures()
    })?;
    let chain = sim.handle();
    let recorded_blocks = chain.height();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("the peer simulator cannot listen on 127.0.0.1")?;
    let peer_address = listener.local_addr().context("simulator address")?;

    let run_config = write_run_config(&RunSettings {
        template: &args.config,
        data_dir: data.path(),
        peer_address,
        tls_ca: &ca_file,
        token_file: &token_file,
        admin_listen: args.admin_listen,
    })?;
    let config = app::load_config(&run_config)?;

    let simulator = tokio::spawn(peersim::run(listener, sim, shutdown.clone()));
    let options = AppOptions {
        shutdown_grace: SHUTDOWN_GRACE,
        ..AppOptions::default()
    };
    let app = match App::start(config, options, shutdown.clone()).await {
        Ok(app) => app,
        Err(error) => {
            shutdown.cancel();
            let busy = error.chain().any(|cause| {
                matches!(
                    cause.downcast_ref::<AdminError>(),
                    Some(AdminError::Bind { .. })
                )
            });
            let hint = if busy {
                " (another daemon or demo holds the admin port? try --admin-listen 127.0.0.1:0)"
            } else {
                ""
            };
            return Err(error.context(format!("cannot start the daemon{hint}")));
        }
    };
    let engine = app.engine();
    print_intro(&Intro {
        args: &args,
        data: &data,
        run_config: &run_config,
        peer_address,
        recorded_blocks,
        runtime: app.runtime_addr(),
        admin: app.admin_addr(),
        token: &token,
        token_file: &token_file,
    });

    let started = Instant::now();
    let deadline = (args.duration > 0).then(|| started + Duration::from_secs(args.duration));
    let interactive = std::io::stdout().is_terminal();
    let logs_dir = function_logs_dir(data.path());
    // A kept `--data-dir` holds the previous runs' logs: only what this run's handlers write is shown and counted.
    let mut logs = FunctionLogs::after_existing(&logs_dir);
    let first = EngineControl::triggers(engine.as_ref()).await;
    let mut previous = first.clone();
    let mut drawn_lines = 0;
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    ticks.tick().await;
    loop {
        let stop = tokio::select! {
            _ = ticks.tick() => shutdown.is_cancelled(),
            _ = shutdown.cancelled() => true,
        };
        let now = EngineControl::triggers(engine.as_ref()).await;
        let header = display::Header {
            channel: peersim::fixture::CHANNEL,
            chain_height: chain.height(),
            recorded_blocks,
            elapsed: started.elapsed(),
        };
        let mut notable: Vec<String> = logs.poll(&logs_dir);
        notable.extend(display::changes(&previous, &now));
        let mut out = String::new();
        if interactive && drawn_lines > 0 {
            // Up over the previous status block and clear it: notable lines scroll above, the block stays last.
            out.push_str(&format!("\x1b[{drawn_lines}A\x1b[J"));
        }
        for line in &notable {
            out.push_str(&format!("  +{:>3}s  {line}\n", header.elapsed.as_secs()));
        }
        if interactive {
            // Lines cut to the terminal's width: a wrapped line would break the count of lines to redraw.
            let block = display::fit_width(&display::status_block(&header, &now), terminal_width());
            drawn_lines = block.lines().count();
            out.push_str(&block);
        } else {
            out.push_str(&display::status_line(&header, &now));
            out.push('\n');
        }
        print!("{out}");
        let _ = std::io::stdout().flush();
        previous = now;
        if stop || deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
    }

    println!("\nStopping: finishing the events in flight...");
    shutdown.cancel();
    let stopped = app.wait().await;
    simulator.await.context("peer simulator task")??;
    stopped?;
    let header = display::Header {
        channel: peersim::fixture::CHANNEL,
        chain_height: chain.height(),
        recorded_blocks,
        elapsed: started.elapsed(),
    };
    let last = EngineControl::triggers(engine.as_ref()).await;
    let last = if last.is_empty() { previous } else { last };
    print!(
        "{}",
        display::summary(&header, &first, &last, logs.invocations)
    );
    match data.kept() {
        Some(dir) => println!(
            "Data kept in {}: the store (positions, dead letters), the runtime's data and the function logs.",
            dir.display()
        ),
        None => println!("Temporary data removed."),
    }
    Ok(())
}

/// The terminal's width in columns, when stdout is a terminal that says.
fn terminal_width() -> Option<usize> {
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one `winsize` into the struct passed, which lives across the call.
    let ok = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) } == 0;
    (ok && size.ws_col > 0).then_some(usize::from(size.ws_col))
}

/// The demo's data folder: the caller's (kept) or a new temporary one (removed when dropped).
struct DataDir {
    /// The folder.
    path: PathBuf,
    /// Whether the folder is ours to remove: only one the demo created.
    temporary: bool,
}

impl DataDir {
    fn new(chosen: Option<PathBuf>) -> anyhow::Result<Self> {
        let (path, temporary) = match chosen {
            Some(path) => (path, false),
            None => (
                std::env::temp_dir().join(format!(
                    "chaintrigger-demo-{}-{}",
                    std::process::id(),
                    hex::encode(rand::random::<[u8; 4]>())
                )),
                true,
            ),
        };
        std::fs::create_dir_all(&path)
            .with_context(|| format!("cannot create the data folder {}", path.display()))?;
        let path = std::path::absolute(&path)
            .with_context(|| format!("cannot resolve {}", path.display()))?;
        Ok(DataDir { path, temporary })
    }

    fn path(&self) -> &Path {
        &self.path
    }

    /// The folder, when it stays after the demo.
    fn kept(&self) -> Option<&Path> {
        (!self.temporary).then_some(self.path.as_path())
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        if self.temporary {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Writes a secret readable by the owner only.
fn write_private(path: &Path, secret: &str) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(secret.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// What the run-time copy of the configuration needs.
struct RunSettings<'a> {
    /// The demo configuration as written (`config/demo.toml`).
    template: &'a Path,
    /// Where the copy, the database and the runtime's data go.
    data_dir: &'a Path,
    /// The simulator's address, replacing the peers of the simulated channel.
    peer_address: SocketAddr,
    /// The generated TLS CA of the simulator.
    tls_ca: &'a Path,
    /// The file holding the generated admin token.
    token_file: &'a Path,
    /// `--admin-listen`, when given.
    admin_listen: Option<SocketAddr>,
}

/// Writes `<data dir>/demo.toml`: the template with the run-time values filled in and its relative paths made
/// absolute (the copy lives elsewhere). Returns its path.
fn write_run_config(settings: &RunSettings<'_>) -> anyhow::Result<PathBuf> {
    let template = settings.template;
    let text = std::fs::read_to_string(template)
        .with_context(|| format!("cannot read {}", template.display()))?;
    let mut document: toml::Table = text
        .parse()
        .with_context(|| format!("{} is not TOML", template.display()))?;
    let base = std::path::absolute(template.parent().unwrap_or(Path::new("")))
        .with_context(|| format!("cannot resolve the folder of {}", template.display()))?;
    let absolute = |value: &mut toml::Value| {
        if let Some(path) = value.as_str() {
            *value = toml::Value::String(base.join(path).display().to_string());
        }
    };
    let path_value = |path: &Path| toml::Value::String(path.display().to_string());

    document.insert(
        "database".into(),
        path_value(&settings.data_dir.join("chaintrigger.db")),
    );
    let admin = table_mut(&mut document, "admin", template)?;
    admin.insert(
        "token".into(),
        toml::Value::Table(toml::Table::from_iter([(
            "file".to_owned(),
            path_value(settings.token_file),
        )])),
    );
    if let Some(listen) = settings.admin_listen {
        admin.insert("listen".into(), toml::Value::String(listen.to_string()));
    }
    let runtime = table_mut(&mut document, "runtime", template)?;
    runtime.insert("listen".into(), toml::Value::String("127.0.0.1:0".into()));
    runtime.insert(
        "data_dir".into(),
        path_value(&settings.data_dir.join("runtime")),
    );
    if let Some(functions) = runtime.get_mut("functions") {
        absolute(functions);
    }

    let channels = document
        .get_mut("channels")
        .and_then(toml::Value::as_array_mut)
        .ok_or_else(|| anyhow::anyhow!("{}: no [[channels]]", template.display()))?;
    let mut simulated = false;
    for channel in channels.iter_mut().filter_map(toml::Value::as_table_mut) {
        for key in ["certificate", "key"] {
            if let Some(value) = channel.get_mut(key) {
                absolute(value);
            }
        }
        if channel.get("name").and_then(toml::Value::as_str) == Some(peersim::fixture::CHANNEL) {
            simulated = true;
            let peer = toml::Table::from_iter([
                (
                    "address".to_owned(),
                    toml::Value::String(settings.peer_address.to_string()),
                ),
                ("tls_ca".to_owned(), path_value(settings.tls_ca)),
                (
                    "server_name".to_owned(),
                    toml::Value::String(PEER_TLS_NAME.to_owned()),
                ),
            ]);
            channel.insert(
                "peers".into(),
                toml::Value::Array(vec![toml::Value::Table(peer)]),
            );
        }
    }
    if !simulated {
        anyhow::bail!(
            "{}: expected a [[channels]] named `{}`, the channel the peer simulator serves",
            template.display(),
            peersim::fixture::CHANNEL
        );
    }

    let path = settings.data_dir.join("demo.toml");
    let body = toml::to_string_pretty(&document).context("cannot write the demo configuration")?;
    let header = format!(
        "# Written by `chaintrigger demo` from {} with this run's simulator address, TLS CA, data folder and\n\
         # admin token file. Edit it and run `chaintrigger triggers reload` while the demo runs.\n\n",
        template.display()
    );
    std::fs::write(&path, header + &body)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

fn table_mut<'a>(
    document: &'a mut toml::Table,
    key: &str,
    file: &Path,
) -> anyhow::Result<&'a mut toml::Table> {
    document
        .entry(key)
        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        .as_table_mut()
        .ok_or_else(|| anyhow::anyhow!("{}: `{key}` is not a table", file.display()))
}

/// Where the bundled runtime writes each function's log (`<service>/<function>.log`), given the runtime data
/// folder the demo's copy of the configuration sets.
fn function_logs_dir(data_dir: &Path) -> PathBuf {
    crate::runtime::RuntimeConfig::new(data_dir.join("runtime"))
        .pool
        .data_dir
        .join("logs")
}

/// What the introduction names.
struct Intro<'a> {
    args: &'a Args,
    data: &'a DataDir,
    run_config: &'a Path,
    peer_address: SocketAddr,
    recorded_blocks: u64,
    runtime: Option<SocketAddr>,
    admin: SocketAddr,
    token: &'a str,
    token_file: &'a Path,
}

fn print_intro(intro: &Intro<'_>) {
    let admin_flag =
        if intro.admin.port() == crate::admin::DEFAULT_PORT && intro.admin.ip().is_loopback() {
            String::new()
        } else {
            format!(" --admin http://{}", intro.admin)
        };
    let runtime = intro
        .runtime
        .map_or_else(|| "off".to_owned(), |address| format!("http://{address}"));
    let duration = if intro.args.duration == 0 {
        "until Ctrl-C".to_owned()
    } else {
        format!("for {}s (Ctrl-C stops earlier)", intro.args.duration)
    };
    println!(
        "chaintrigger demo: a simulated Fabric peer, the trigger daemon and the bundled function runtime, {duration}.\n\
         \n\
         \x20 peer simulator    {peer} over TLS (CA generated for this run), channel `{channel}`:\n\
         \x20                   {recorded} recorded blocks of a real Fabric v2.5 network, then {rate} generated `taskmgr` block(s)/s\n\
         \x20 daemon            {config} (triggers from {template})\n\
         \x20 function runtime  {runtime}, handlers from {functions}\n\
         \x20 admin API         http://{admin}\n\
         \x20 data folder       {data}{removed}\n\
         \n\
         Admin token (shown once; also in {token_file}). In another terminal:\n\
         \x20 export CHAINTRIGGER_ADMIN_TOKEN={token}\n\
         \x20 chaintrigger triggers{admin_flag} list                      # or: cargo run --release -- triggers{admin_flag} list\n\
         \x20 chaintrigger triggers{admin_flag} dead-letters task-audit\n\
         \x20 chaintrigger triggers{admin_flag} disable blocks            # then: enable blocks\n",
        peer = intro.peer_address,
        channel = peersim::fixture::CHANNEL,
        recorded = intro.recorded_blocks,
        rate = intro.args.rate,
        config = intro.run_config.display(),
        template = intro.args.config.display(),
        functions = intro
            .args
            .config
            .parent()
            .unwrap_or(Path::new(""))
            .join("functions")
            .display(),
        admin = intro.admin,
        data = intro.data.path().display(),
        removed = if intro.data.kept().is_some() {
            ""
        } else {
            " (removed at exit)"
        },
        token_file = intro.token_file.display(),
        token = intro.token,
    );
}

/// Follows the bundled runtime's per-function log files and hands out what the handlers wrote.
#[derive(Default)]
struct FunctionLogs {
    /// Bytes of each file already read (only whole lines are consumed).
    offsets: BTreeMap<PathBuf, u64>,
    /// Invocations seen so far (the runtime's `FC Invoke Start` lines), for the summary.
    invocations: u64,
}

impl FunctionLogs {
    /// Follows the log files under `logs_dir` from their current ends: what earlier runs wrote is neither shown
    /// nor counted.
    fn after_existing(logs_dir: &Path) -> Self {
        let offsets = log_files(logs_dir)
            .into_iter()
            .filter_map(|(_, file)| {
                let length = std::fs::metadata(&file).ok()?.len();
                Some((file, length))
            })
            .collect();
        FunctionLogs {
            offsets,
            invocations: 0,
        }
    }

    /// For each function with new output: its first new line written by the handler itself (the runtime's
    /// `FC Invoke Start/End` markers are counted, not shown), prefixed with `service/function`, and how many
    /// more there were, so a high `--rate` does not scroll the status away.
    fn poll(&mut self, logs_dir: &Path) -> Vec<String> {
        let mut lines = Vec::new();
        for (function, file) in log_files(logs_dir) {
            let Ok(bytes) = std::fs::read(&file) else {
                continue;
            };
            let offset = self.offsets.entry(file).or_insert(0);
            if (bytes.len() as u64) < *offset {
                // Rotated: the file started again.
                *offset = 0;
            }
            let start = usize::try_from(*offset)
                .unwrap_or(usize::MAX)
                .min(bytes.len());
            let Some(end) = bytes[start..].iter().rposition(|&b| b == b'\n') else {
                continue;
            };
            let fresh = String::from_utf8_lossy(&bytes[start..start + end]);
            *offset = (start + end + 1) as u64;
            let mut written = Vec::new();
            for line in fresh.lines().filter(|l| !l.trim().is_empty()) {
                if line.starts_with("FC Invoke Start") {
                    self.invocations += 1;
                } else if !line.starts_with("FC Invoke End") {
                    written.push(line);
                }
            }
            // A warning or an error says more than the lines around it.
            let shown = written
                .iter()
                .find(|line| {
                    ["[WARNING]", "[ERROR]", "[warn]", "[error]"]
                        .iter()
                        .any(|l| line.contains(l))
                })
                .or(written.first());
            if let Some(first) = shown {
                let more = match written.len() - 1 {
                    0 => String::new(),
                    n => format!("  (+{n} more)"),
                };
                lines.push(format!(
                    "[{function}] {}{more}",
                    display::compact_log_line(first)
                ));
            }
        }
        lines
    }
}

/// `(service/function, path)` of every `<service>/<function>.log` under `dir`, sorted.
fn log_files(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut files = Vec::new();
    let Ok(services) = std::fs::read_dir(dir) else {
        return files;
    };
    for service in services.flatten() {
        let Ok(functions) = std::fs::read_dir(service.path()) else {
            continue;
        };
        for file in functions.flatten() {
            let path = file.path();
            if path.extension().is_some_and(|e| e == "log") {
                let function = path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let name = format!("{}/{function}", service.file_name().to_string_lossy());
                files.push((name, path));
            }
        }
    }
    files.sort();
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_run_config_fills_in_the_run_time_values_and_loads() {
        let data = tempfile::tempdir().unwrap();
        let template = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/demo.toml");
        let token_file = data.path().join("admin-token");
        std::fs::write(&token_file, "0123456789abcdef0123456789").unwrap();
        let tls_ca =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/fabric-v2.5/msp/org1_tlsca.pem");
        let path = write_run_config(&RunSettings {
            template: &template,
            data_dir: data.path(),
            peer_address: "127.0.0.1:45678".parse().unwrap(),
            tls_ca: &tls_ca,
            token_file: &token_file,
            admin_listen: Some("127.0.0.1:0".parse().unwrap()),
        })
        .unwrap();
        let config = app::load_config(&path).unwrap();
        assert_eq!(
            config.database.get_ref(),
            &data.path().join("chaintrigger.db")
        );
        assert_eq!(
            *config.admin.listen.get_ref(),
            "127.0.0.1:0".parse().unwrap()
        );
        assert_eq!(config.runtime.listen, "127.0.0.1:0".parse().unwrap());
        assert!(
            config
                .runtime
                .functions
                .as_ref()
                .unwrap()
                .get_ref()
                .join("demo/on_task/index.py")
                .is_file()
        );
        let peers = config.channels[0].peers.get_ref();
        assert_eq!(peers.len(), 1);
        assert_eq!(peers[0].address.get_ref(), "127.0.0.1:45678");
        assert_eq!(peers[0].tls_ca.as_ref().unwrap().get_ref(), &tls_ca);
        assert!(config.triggers.len() >= 4);
    }

    #[test]
    fn function_logs_show_the_first_new_handler_line_and_count_invocations() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("demo").join("on_task.log");
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        let invocation = |n: u32| {
            format!(
                "FC Invoke Start RequestId: r{n}\n2026-11-21T10:00:00.123Z r{n} [INFO] task {n}\nFC Invoke End RequestId: r{n}\n"
            )
        };
        std::fs::write(&file, invocation(1) + "FC Invoke Sta").unwrap();
        let mut logs = FunctionLogs::default();
        assert_eq!(logs.poll(dir.path()), ["[demo/on_task] task 1"]);
        assert!(logs.poll(dir.path()).is_empty());
        assert_eq!(logs.invocations, 1);
        let text = invocation(1) + &invocation(2) + &invocation(3) + &invocation(4);
        std::fs::write(&file, text).unwrap();
        assert_eq!(logs.poll(dir.path()), ["[demo/on_task] task 2  (+2 more)"]);
        assert_eq!(logs.invocations, 4);
    }

    #[test]
    fn function_logs_of_a_previous_run_are_neither_shown_nor_counted() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("demo").join("on_task.log");
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        let earlier = "FC Invoke Start RequestId: r1\n2026-11-21T10:00:00.123Z r1 [INFO] task 1\nFC Invoke End RequestId: r1\n";
        std::fs::write(&file, earlier).unwrap();
        let mut logs = FunctionLogs::after_existing(dir.path());
        assert!(logs.poll(dir.path()).is_empty());
        assert_eq!(logs.invocations, 0);
        let now = "FC Invoke Start RequestId: r2\n2026-11-21T11:00:00.123Z r2 [INFO] task 2\nFC Invoke End RequestId: r2\n";
        std::fs::write(&file, format!("{earlier}{now}")).unwrap();
        assert_eq!(logs.poll(dir.path()), ["[demo/on_task] task 2"]);
        assert_eq!(logs.invocations, 1);
    }
}
