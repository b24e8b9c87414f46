//! The files in `deploy/` work together. For each deployment (the systemd unit, the compose service, the
//! Kubernetes manifest) the test reads the environment the file gives the daemon and the files it mounts, lays
//! those files out in a temporary folder at the paths the deployment puts them (real certificates and keys), and
//! runs `chaintrigger check-config` on the configuration it mounts with exactly that environment: no problem may
//! be left. Every path the configuration reads must be one the deployment mounts, every path it writes must be on
//! the state volume, every secret it names must be provided (and every secret provided must be used). Then the
//! static checks: pinned tags, a non-root image whose volume is the database's folder, COPY sources that exist and
//! are not ignored, probes that reach the admin API, Prometheus examples that send the token, and a hardened unit
//! that `systemd-analyze verify` accepts where that command exists.
//!
//! The configuration's absolute paths are moved under the temporary folder by prefixing each mount's path where
//! it appears as a quoted value; nothing else in the file changes.

mod yaml;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::fabric::TlsPki;
use chaintrigger::config::{Config, Database, HttpAuth, SecretSource, Target};
use serde_json::Value;

/// The repository's root.
fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

/// The YAML documents of a repository file.
fn yaml_docs(path: &str) -> Vec<Value> {
    yaml::documents(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// What the deployment puts at one path of its filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Mounted {
    /// This repository file (its path from the root).
    RepoFile(PathBuf),
    /// A file the manifest's comment makes from a repository file (`sed ... > file`), made here in a temporary
    /// folder (its absolute path).
    Generated(PathBuf),
    /// A file the operator provides (a certificate, a key).
    OperatorFile,
    /// A folder of files the operator provides.
    OperatorFolder,
    /// The daemon's state: writable, kept across restarts.
    State,
}

/// Where one variable of the daemon's environment comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum EnvValue {
    /// Written in the deploy file.
    Literal(String),
    /// Provided by the operator (a Secret, an environment file, Compose's `.env`): the test makes one up.
    Operator,
}

/// One deployment, as read from its files.
#[derive(Debug)]
struct Deployment {
    /// Which file, for messages.
    name: &'static str,
    /// The configuration's path inside the deployment.
    config: PathBuf,
    /// What is mounted where (paths inside the deployment).
    mounts: BTreeMap<PathBuf, Mounted>,
    /// The daemon's environment.
    env: BTreeMap<String, EnvValue>,
}

impl Deployment {
    /// The file the deployment mounts as its configuration: a repository file (relative to the root) or one made
    /// from it (absolute).
    fn config_source(&self) -> PathBuf {
        match self.mounts.get(&self.config) {
            Some(Mounted::RepoFile(source) | Mounted::Generated(source)) => source.clone(),
            other => panic!(
                "{}: the configuration {} is not a repository file: {other:?}",
                self.name,
                self.config.display()
            ),
        }
    }

    /// The mount that holds `path`, if any: the path itself, or a folder above it.
    fn mount_of(&self, path: &Path) -> Option<(&PathBuf, &Mounted)> {
        self.mounts
            .iter()
            .filter(|(target, mounted)| {
                path == target.as_path()
                    || (matches!(mounted, Mounted::OperatorFolder | Mounted::State)
                        && path.starts_with(target))
            })
            .max_by_key(|(target, _)| target.as_os_str().len())
    }

    /// The state volume's path.
    fn state(&self) -> &Path {
        let states: Vec<&PathBuf> = self
            .mounts
            .iter()
            .filter(|(_, mounted)| **mounted == Mounted::State)
            .map(|(target, _)| target)
            .collect();
        assert_eq!(
            states.len(),
            1,
            "{}: one state volume: {states:?}",
            self.name
        );
        states[0]
    }
}

/// What a file the configuration reads must hold.
#[derive(Debug, Clone, Copy)]
enum Content {
    ChannelCertificate,
    ChannelKey,
    PeerCa,
    AdminCertificate,
    AdminKey,
    Secret,
    Folder,
}

/// The configuration of a deployment, read as the daemon reads it (without its environment).
fn load(deployment: &Deployment) -> Config {
    let source = repo().join(deployment.config_source());
    Config::load(&source)
        .unwrap_or_else(|e| panic!("{}: {}: {e}", deployment.name, source.display()))
}

/// Every file and folder the configuration reads, with what it must hold.
fn reads(config: &Config) -> Vec<(String, PathBuf, Content)> {
    let mut out = Vec::new();
    let secret = |field: String, source: &SecretSource, out: &mut Vec<_>| {
        if let SecretSource::File(path) = source {
            out.push((field, path.clone(), Content::Secret));
        }
    };
    secret("admin.token".into(), config.admin.token.get_ref(), &mut out);
    if let Database::Postgres(postgres) = config.database.get_ref() {
        if let Some(path) = &postgres.tls_ca {
            out.push(("database.tls_ca".into(), path.clone(), Content::PeerCa));
        }
        if let Some(source) = &postgres.password {
            secret("database.password".into(), source, &mut out);
        }
    }
    if let Some(path) = &config.admin.tls_certificate {
        out.push((
            "admin.tls_certificate".into(),
            path.get_ref().clone(),
            Content::AdminCertificate,
        ));
    }
    if let Some(path) = &config.admin.tls_key {
        out.push((
            "admin.tls_key".into(),
            path.get_ref().clone(),
            Content::AdminKey,
        ));
    }
    for channel in &config.channels {
        out.push((
            "certificate".into(),
            channel.certificate.get_ref().clone(),
            Content::ChannelCertificate,
        ));
        out.push((
            "key".into(),
            channel.key.get_ref().clone(),
            Content::ChannelKey,
        ));
        for peer in channel.peers.get_ref() {
            if let Some(path) = &peer.tls_ca {
                out.push(("tls_ca".into(), path.get_ref().clone(), Content::PeerCa));
            }
            if let Some(path) = &peer.client_certificate {
                out.push((
                    "client_certificate".into(),
                    path.get_ref().clone(),
                    Content::ChannelCertificate,
                ));
            }
            if let Some(path) = &peer.client_key {
                out.push((
                    "client_key".into(),
                    path.get_ref().clone(),
                    Content::ChannelKey,
                ));
            }
        }
    }
    if config.runtime.enabled {
        if let Some(functions) = &config.runtime.functions {
            out.push((
                "runtime.functions".into(),
                functions.get_ref().clone(),
                Content::Folder,
            ));
        }
        if let Some(credentials) = &config.runtime.credentials {
            secret(
                "runtime.credentials".into(),
                credentials.access_key_secret.get_ref(),
                &mut out,
            );
        }
    }
    for trigger in &config.triggers {
        for source in trigger_secrets(&trigger.target) {
            secret(
                format!("triggers.{}", trigger.name.get_ref()),
                source,
                &mut out,
            );
        }
    }
    out
}

/// The secrets a trigger's target reads.
fn trigger_secrets(target: &Target) -> Vec<&SecretSource> {
    match target {
        Target::FunctionCompute(fc) => fc
            .credentials
            .iter()
            .map(|credentials| credentials.access_key_secret.get_ref())
            .collect(),
        Target::Http(http) => match &http.auth {
            HttpAuth::None => Vec::new(),
            HttpAuth::Basic { password, .. } => vec![password.get_ref()],
            HttpAuth::Bearer { token } => vec![token.get_ref()],
        },
    }
}

/// Every environment variable the configuration reads a secret from.
fn env_secrets(config: &Config) -> BTreeSet<String> {
    let mut sources = vec![config.admin.token.get_ref()];
    if let Database::Postgres(postgres) = config.database.get_ref() {
        sources.extend(&postgres.password);
    }
    if config.runtime.enabled
        && let Some(credentials) = &config.runtime.credentials
    {
        sources.push(credentials.access_key_secret.get_ref());
    }
    for trigger in &config.triggers {
        sources.extend(trigger_secrets(&trigger.target));
    }
    sources
        .into_iter()
        .filter_map(|source| match source {
            SecretSource::Env(name) => Some(name.clone()),
            SecretSource::File(_) => None,
        })
        .collect()
}

/// Every path the configuration writes: the SQLite database's folder, the runtime's data folder.
fn writes(config: &Config) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    if let Some(folder) = config.database.get_ref().parent() {
        out.push(("database".to_owned(), folder.to_owned()));
    }
    if config.runtime.enabled {
        out.push((
            "runtime.data_dir".into(),
            config.runtime.data_dir.get_ref().clone(),
        ));
    }
    out
}

/// Lays the deployment out under a temporary folder and runs `check-config` there with its environment.
fn check_deployment(deployment: &Deployment) {
    let name = deployment.name;
    let config = load(deployment);
    let root = tempfile::tempdir().expect("a temporary folder");
    let under_root = |path: &Path| root.path().join(path.strip_prefix("/").unwrap_or(path));
    let pki = TlsPki::new();
    let fixtures = repo().join("fixtures/fabric-v2.5/msp");
    for (field, path, content) in reads(&config) {
        assert!(
            path.is_absolute(),
            "{name}: {field} = {} is not absolute",
            path.display()
        );
        match deployment.mount_of(&path) {
            Some((_, Mounted::OperatorFile | Mounted::OperatorFolder)) => {}
            other => panic!(
                "{name}: {field} reads {}, which the deployment does not mount from the operator's files: {other:?}",
                path.display()
            ),
        }
        let target = under_root(&path);
        if let Content::Folder = content {
            std::fs::create_dir_all(&target).expect("create a folder");
            continue;
        }
        std::fs::create_dir_all(target.parent().expect("a parent")).expect("create folders");
        let bytes = match content {
            Content::ChannelCertificate => {
                std::fs::read(fixtures.join("user1_signcert.pem")).expect("fixture")
            }
            Content::ChannelKey => std::fs::read(fixtures.join("user1_key.pem")).expect("fixture"),
            Content::PeerCa => std::fs::read(fixtures.join("org1_tlsca.pem")).expect("fixture"),
            Content::AdminCertificate => pki.server.cert_pem.clone().into_bytes(),
            Content::AdminKey => pki.server.key_pem.clone().into_bytes(),
            Content::Secret => b"a-secret-made-up-by-the-deploy-test\n".to_vec(),
            Content::Folder => unreachable!(),
        };
        std::fs::write(&target, bytes).expect("write a mounted file");
    }
    for (field, path) in writes(&config) {
        assert!(
            path.starts_with(deployment.state()),
            "{name}: {field} writes under {}, outside the state volume {}",
            path.display(),
            deployment.state().display()
        );
        std::fs::create_dir_all(under_root(&path)).expect("create the state folder");
    }

    let needed = env_secrets(&config);
    let operator: BTreeSet<String> = deployment
        .env
        .iter()
        .filter(|(_, value)| **value == EnvValue::Operator)
        .map(|(variable, _)| variable.clone())
        .collect();
    let missing: Vec<&String> = needed
        .iter()
        .filter(|v| !deployment.env.contains_key(*v))
        .collect();
    assert!(
        missing.is_empty(),
        "{name}: the configuration reads {missing:?}, which the deployment does not set"
    );
    let unused: Vec<&String> = operator.difference(&needed).collect();
    assert!(
        unused.is_empty(),
        "{name}: secrets {unused:?} are provided but the configuration never reads them"
    );

    // The configuration, its mounted paths moved under the temporary folder.
    let mut text = std::fs::read_to_string(repo().join(deployment.config_source()))
        .expect("read the configuration");
    let mut targets: Vec<&PathBuf> = deployment.mounts.keys().collect();
    targets.sort_by_key(|target| std::cmp::Reverse(target.as_os_str().len()));
    for target in targets {
        let target = target.to_str().expect("UTF-8 paths");
        let moved = under_root(Path::new(target));
        text = text.replace(&format!("\"{target}"), &format!("\"{}", moved.display()));
    }
    let config_path = under_root(&deployment.config);
    std::fs::create_dir_all(config_path.parent().expect("a parent")).expect("create folders");
    std::fs::write(&config_path, text).expect("write the configuration");

    let mut command = Command::new(env!("CARGO_BIN_EXE_chaintrigger"));
    command
        .arg("check-config")
        .arg("--config")
        .arg(&config_path)
        .env_clear();
    for (variable, value) in &deployment.env {
        let value = match value {
            EnvValue::Literal(value) => value.clone(),
            EnvValue::Operator => format!("{}-made-up-by-the-deploy-test", variable.to_lowercase()),
        };
        command.env(variable, value);
    }
    let output = command.output().expect("run check-config");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{name}: check-config found problems in {} with the deployment's environment {:?}:\n{stderr}{stdout}",
        deployment.config_source().display(),
        deployment.env.keys().collect::<Vec<_>>()
    );
    assert!(stdout.contains(": OK\n"), "{name}: {stdout}");
}

// ---------------------------------------------------------------------------------------------------------------
// Reading the deploy files

const COMPOSE: &str = "deploy/container/compose.yaml";
const KUBERNETES: &str = "deploy/kubernetes/chaintrigger.yaml";
const KUBERNETES_CLUSTER: &str = "deploy/kubernetes/cluster.yaml";
const SERVICE_MONITOR: &str = "deploy/kubernetes/servicemonitor.yaml";
const UNIT: &str = "deploy/systemd/chaintrigger.service";
const DOCKERFILE: &str = "deploy/container/Dockerfile";
const PROMETHEUS: &str = "deploy/prometheus/prometheus.yml";

/// The value of `--config` in a command line.
fn config_argument(words: &[String]) -> PathBuf {
    let at = words
        .iter()
        .position(|w| w == "--config")
        .expect("a --config argument");
    PathBuf::from(&words[at + 1])
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("a list: {value}"))
        .iter()
        .map(|v| {
            v.as_str()
                .unwrap_or_else(|| panic!("a string: {v}"))
                .to_owned()
        })
        .collect()
}

/// The compose service.
fn compose_service() -> Value {
    let docs = yaml_docs(COMPOSE);
    docs[0]["services"]["chaintrigger"].clone()
}

fn compose() -> Deployment {
    let service = compose_service();
    let folder = Path::new(COMPOSE).parent().expect("a folder");
    let mut mounts = BTreeMap::new();
    for volume in strings(&service["volumes"]) {
        let parts: Vec<&str> = volume.split(':').collect();
        let (source, target) = (parts[0], PathBuf::from(parts[1]));
        let mounted = if source.starts_with('.') {
            let in_repo = normalize(&folder.join(source));
            if repo().join(&in_repo).is_file() {
                Mounted::RepoFile(in_repo)
            } else {
                assert!(
                    !repo().join(&in_repo).exists(),
                    "{COMPOSE}: {source} is a repository folder"
                );
                Mounted::OperatorFolder
            }
        } else {
            assert!(
                service["volumes"].is_array()
                    && yaml_docs(COMPOSE)[0]["volumes"][source].is_object(),
                "{COMPOSE}: {source} is not a named volume"
            );
            Mounted::State
        };
        if mounted != Mounted::State {
            assert_eq!(
                parts.get(2),
                Some(&"ro"),
                "{COMPOSE}: {volume} should be read-only"
            );
        }
        mounts.insert(target, mounted);
    }
    let env = service["environment"]
        .as_object()
        .expect("a mapping of environment variables")
        .iter()
        .map(|(variable, value)| {
            let value = value.as_str().expect("a string");
            let parsed = match value.strip_prefix("${").and_then(|v| v.strip_suffix('}')) {
                Some(reference) => {
                    let (name, rest) = reference
                        .split_once(':')
                        .map_or((reference, ""), |(name, rest)| (name, rest));
                    assert_eq!(
                        name, variable,
                        "{COMPOSE}: {variable} comes from ${{{name}}}"
                    );
                    match rest.strip_prefix('-') {
                        Some(default) => EnvValue::Literal(default.to_owned()),
                        None => EnvValue::Operator,
                    }
                }
                None => EnvValue::Literal(value.to_owned()),
            };
            (variable.clone(), parsed)
        })
        .collect();
    Deployment {
        name: COMPOSE,
        config: config_argument(&strings(&service["command"])),
        mounts,
        env,
    }
}

/// `a/b/../c` as `a/c`.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// The shell commands in a file's leading comment, continuation lines joined, split into words (quotes kept
/// out; no other shell syntax is read).
fn commented_commands(text: &str) -> Vec<Vec<String>> {
    let mut commands = Vec::new();
    let mut current = String::new();
    for line in text.lines().take_while(|line| line.starts_with('#')) {
        let line = line.trim_start_matches('#').trim();
        match line.strip_suffix('\\') {
            Some(part) => current.push_str(part),
            None => {
                current.push_str(line);
                if !current.is_empty() {
                    commands.push(
                        current
                            .split_whitespace()
                            .map(|w| w.trim_matches('"').to_owned())
                            .collect(),
                    );
                }
                current.clear();
            }
        }
    }
    commands
}

/// The Secrets and ConfigMaps the manifest's comment tells the operator to create: (kind, name) -> key -> where
/// the content comes from.
fn created_objects(text: &str) -> BTreeMap<(String, String), BTreeMap<String, String>> {
    let mut objects = BTreeMap::new();
    for words in commented_commands(text) {
        let (kind, name, options) = match words.iter().map(String::as_str).collect::<Vec<_>>()[..] {
            ["kubectl", "create", "secret", "generic", name, ..] => ("secret", name, &words[5..]),
            ["kubectl", "create", "secret", "tls", name, ..] => ("secret", name, &words[5..]),
            ["kubectl", "create", "configmap", name, ..] => ("configmap", name, &words[4..]),
            _ => continue,
        };
        let mut keys = BTreeMap::new();
        for option in options {
            let (flag, value) = option.split_once('=').unwrap_or((option, ""));
            match flag {
                "--from-literal" | "--from-file" => {
                    let (key, source) = value.split_once('=').expect("--from-x=KEY=SOURCE");
                    keys.insert(key.to_owned(), source.to_owned());
                }
                "--cert" => {
                    keys.insert("tls.crt".to_owned(), value.to_owned());
                }
                "--key" => {
                    keys.insert("tls.key".to_owned(), value.to_owned());
                }
                _ => {}
            }
        }
        objects.insert((kind.to_owned(), name.to_owned()), keys);
    }
    objects
}

/// The manifest's documents of one kind.
fn of_kind(docs: &[Value], kind: &str) -> Vec<Value> {
    docs.iter()
        .filter(|doc| doc["kind"] == kind)
        .cloned()
        .collect()
}

/// The Deployment's pod spec and its only container.
fn kubernetes_pod(manifest: &str) -> (Value, Value) {
    let deployments = of_kind(&yaml_docs(manifest), "Deployment");
    assert_eq!(deployments.len(), 1);
    let pod = deployments[0]["spec"]["template"]["spec"].clone();
    let containers = pod["containers"].as_array().expect("containers").clone();
    assert_eq!(containers.len(), 1, "one container");
    (pod, containers[0].clone())
}

/// The files the manifest's comment makes with `sed '...' source > file`: file -> its content.
fn generated_files(text: &str) -> BTreeMap<String, String> {
    let comment: String = text
        .lines()
        .take_while(|line| line.starts_with('#'))
        .map(|line| line.trim_start_matches('#').trim())
        .collect::<Vec<_>>()
        .join("\n")
        .replace("\\\n", " ");
    let mut files = BTreeMap::new();
    for line in comment.lines() {
        let Some(command) = line.strip_prefix("sed '") else {
            continue;
        };
        let (expression, rest) = command
            .split_once('\'')
            .expect("sed 'EXPRESSION' SOURCE > FILE");
        let (source, output) = rest
            .split_once('>')
            .expect("sed 'EXPRESSION' SOURCE > FILE");
        // The one form the manifests use: replace the line starting with a prefix, `s|^PREFIX.*|LINE|`.
        let parts: Vec<&str> = expression.split('|').collect();
        let [substitute, pattern, line_text, ""] = parts[..] else {
            panic!("sed expression {expression}: expected s|^PREFIX.*|LINE|");
        };
        assert_eq!(substitute, "s", "sed expression {expression}");
        let prefix = pattern
            .strip_prefix('^')
            .and_then(|pattern| pattern.strip_suffix(".*"))
            .unwrap_or_else(|| panic!("sed expression {expression}: expected ^PREFIX.*"));
        let source = read(source.trim());
        assert!(
            source.lines().any(|line| line.starts_with(prefix)),
            "sed expression {expression}: {} has no line starting with {prefix:?}",
            rest.trim()
        );
        let made: Vec<&str> = source
            .lines()
            .map(|line| {
                if line.starts_with(prefix) {
                    line_text
                } else {
                    line
                }
            })
            .collect();
        files.insert(output.trim().to_owned(), made.join("\n") + "\n");
    }
    files
}

fn kubernetes() -> Deployment {
    kubernetes_manifest(KUBERNETES, Path::new("/nowhere"))
}

/// A Kubernetes manifest's Deployment; files its comment makes are written to `made_in`.
fn kubernetes_manifest(manifest: &'static str, made_in: &Path) -> Deployment {
    let text = read(manifest);
    let created = created_objects(&text);
    let generated = generated_files(&text);
    let (pod, container) = kubernetes_pod(manifest);
    let volumes: BTreeMap<String, Value> = pod["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .map(|volume| {
            (
                volume["name"].as_str().expect("a name").to_owned(),
                volume.clone(),
            )
        })
        .collect();
    let created_key = |kind: &str, name: &str, key: &str| -> String {
        created
            .get(&(kind.to_owned(), name.to_owned()))
            .and_then(|keys| keys.get(key))
            .unwrap_or_else(|| {
                panic!("{manifest}: the {kind} {name} with key {key} is used but the comment does not create it")
            })
            .clone()
    };
    let mut mounts = BTreeMap::new();
    for mount in container["volumeMounts"].as_array().expect("volumeMounts") {
        let volume = &volumes[mount["name"].as_str().expect("a volume name")];
        let path = PathBuf::from(mount["mountPath"].as_str().expect("a mountPath"));
        if volume["persistentVolumeClaim"].is_object() || volume["emptyDir"].is_object() {
            mounts.insert(path, Mounted::State);
            continue;
        }
        assert_eq!(
            mount["readOnly"], "true",
            "{manifest}: {mount} should be read-only"
        );
        let (kind, name, source) = if volume["configMap"].is_object() {
            let source = &volume["configMap"];
            (
                "configmap",
                source["name"].as_str().expect("a name"),
                source,
            )
        } else {
            let source = &volume["secret"];
            (
                "secret",
                source["secretName"].as_str().expect("a secretName"),
                source,
            )
        };
        for item in source["items"]
            .as_array()
            .expect("every file listed in items")
        {
            let key = item["key"].as_str().expect("a key");
            let item_path = item["path"].as_str().expect("a path");
            let from = created_key(kind, name, key);
            let target = match mount["subPath"].as_str() {
                Some(sub) if sub == item_path => path.clone(),
                Some(_) => continue,
                None => path.join(item_path),
            };
            let mounted = if let Some(content) = generated.get(&from) {
                let made = made_in.join(&from);
                std::fs::write(&made, content).expect("write a file the comment makes");
                Mounted::Generated(made)
            } else if repo().join(&from).is_file() {
                Mounted::RepoFile(PathBuf::from(from))
            } else {
                Mounted::OperatorFile
            };
            mounts.insert(target, mounted);
        }
    }
    let mut env = BTreeMap::new();
    for variable in container["env"].as_array().expect("env") {
        let name = variable["name"].as_str().expect("a name").to_owned();
        let value = if let Some(value) = variable["value"].as_str() {
            EnvValue::Literal(value.to_owned())
        } else {
            let reference = &variable["valueFrom"]["secretKeyRef"];
            created_key(
                "secret",
                reference["name"].as_str().expect("a secret name"),
                reference["key"].as_str().expect("a key"),
            );
            EnvValue::Operator
        };
        env.insert(name, value);
    }
    Deployment {
        name: manifest,
        config: config_argument(&strings(&container["args"])),
        mounts,
        env,
    }
}

/// The `[Service]` settings of the unit: key -> every value, in order.
fn unit_settings() -> BTreeMap<String, Vec<String>> {
    let mut settings: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut section = String::new();
    for line in read(UNIT).lines() {
        let line = line.trim();
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if line.starts_with('[') {
            section = line.to_owned();
            continue;
        }
        let (key, value) = line.split_once('=').expect("key=value");
        if section == "[Service]" {
            settings
                .entry(key.to_owned())
                .or_default()
                .push(value.to_owned());
        }
    }
    settings
}

fn systemd() -> Deployment {
    let settings = unit_settings();
    let one = |key: &str| -> String {
        let values = settings
            .get(key)
            .unwrap_or_else(|| panic!("{UNIT}: no {key}="));
        assert_eq!(values.len(), 1, "{UNIT}: one {key}=");
        values[0].clone()
    };
    // What the unit's comment installs where: `install [-m M] [-g G] SOURCE TARGET` and `install -d ... FOLDER`.
    let mut mounts = BTreeMap::new();
    for words in commented_commands(&read(UNIT)) {
        if words.first().map(String::as_str) != Some("install") {
            continue;
        }
        let mut operands = Vec::new();
        let mut folders = false;
        let mut words = words[1..].iter();
        while let Some(word) = words.next() {
            match word.as_str() {
                "-d" => folders = true,
                "-m" | "-g" | "-o" => {
                    words.next();
                }
                "#" => break,
                other => operands.push(other.to_owned()),
            }
        }
        if folders {
            for folder in operands {
                mounts.insert(PathBuf::from(folder), Mounted::OperatorFolder);
            }
        } else if let [source, target] = &operands[..] {
            let mounted = if repo().join(source).is_file() {
                Mounted::RepoFile(PathBuf::from(source))
            } else {
                Mounted::OperatorFile
            };
            mounts.insert(PathBuf::from(target), mounted);
        }
    }
    mounts.insert(
        PathBuf::from("/var/lib").join(one("StateDirectory")),
        Mounted::State,
    );

    let mut env = BTreeMap::new();
    for assignments in settings.get("Environment").into_iter().flatten() {
        for assignment in assignments.split_whitespace() {
            let (variable, value) = assignment
                .trim_matches('"')
                .split_once('=')
                .expect("VAR=value");
            env.insert(variable.to_owned(), EnvValue::Literal(value.to_owned()));
        }
    }
    let env_file = PathBuf::from(one("EnvironmentFile").trim_start_matches('-'));
    let Some(Mounted::RepoFile(source)) = mounts.get(&env_file) else {
        panic!(
            "{UNIT}: the comment does not install {} from the repository",
            env_file.display()
        );
    };
    for line in read(source.to_str().expect("UTF-8")).lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (variable, value) = line.split_once('=').expect("VAR=value");
        let value = if value.is_empty() {
            EnvValue::Operator
        } else {
            EnvValue::Literal(value.to_owned())
        };
        env.insert(variable.to_owned(), value);
    }
    let exec: Vec<String> = one("ExecStart")
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    Deployment {
        name: UNIT,
        config: config_argument(&exec),
        mounts,
        env,
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The tests

#[test]
fn compose_configuration_passes_check_config_with_the_environment_and_mounts_it_defines() {
    check_deployment(&compose());
}

#[test]
fn kubernetes_configuration_passes_check_config_with_the_environment_and_mounts_it_defines() {
    check_deployment(&kubernetes());
}

/// The cluster manifest's configuration is the container's with a PostgreSQL `database` (made by the `sed` in its
/// comment): it loads, and every file and secret it reads (the database's CA and password included) is mounted.
#[test]
fn kubernetes_cluster_configuration_passes_check_config_with_the_environment_and_mounts_it_defines()
{
    let made = tempfile::tempdir().expect("a temporary folder");
    let deployment = kubernetes_manifest(KUBERNETES_CLUSTER, made.path());
    assert!(
        matches!(
            deployment.mounts.get(&deployment.config),
            Some(Mounted::Generated(_))
        ),
        "{KUBERNETES_CLUSTER}: the configuration is the one its comment makes: {:?}",
        deployment.mounts
    );
    let config = load(&deployment);
    let Database::Postgres(postgres) = config.database.get_ref() else {
        panic!("{KUBERNETES_CLUSTER}: the configuration's database is not PostgreSQL");
    };
    assert!(
        postgres.url.as_str().contains("sslmode=require"),
        "{KUBERNETES_CLUSTER}: the database connection must require TLS"
    );
    check_deployment(&deployment);
}

#[test]
fn systemd_configuration_passes_check_config_with_the_environment_and_files_it_defines() {
    check_deployment(&systemd());
}

#[test]
fn every_deployment_mounts_the_same_paths_and_names_the_same_secrets() {
    let deployments = [compose(), kubernetes(), systemd()];
    let reads_of = |deployment: &Deployment| -> BTreeSet<PathBuf> {
        reads(&load(deployment))
            .into_iter()
            .map(|(_, path, _)| path)
            .collect()
    };
    let first = &deployments[0];
    for other in &deployments[1..] {
        assert_eq!(
            other.config, first.config,
            "{} and {}: the configuration's path",
            other.name, first.name
        );
        assert_eq!(
            other.state(),
            first.state(),
            "{} and {}: the state folder",
            other.name,
            first.name
        );
        // The admin API's certificate is only needed where the API is reached from outside.
        let without_admin_tls = |paths: BTreeSet<PathBuf>| -> BTreeSet<PathBuf> {
            paths
                .into_iter()
                .filter(|path| !path.starts_with("/etc/chaintrigger/admin-tls"))
                .collect()
        };
        assert_eq!(
            without_admin_tls(reads_of(other)),
            without_admin_tls(reads_of(first)),
            "{} and {}: the files read",
            other.name,
            first.name
        );
        assert_eq!(
            env_secrets(&load(other)),
            env_secrets(&load(first)),
            "{} and {}: the secrets' variables",
            other.name,
            first.name
        );
    }
}

#[test]
fn no_latest_tag_anywhere_and_images_are_pinned_to_the_package_version() {
    for entry in walk(&repo().join("deploy")) {
        let text = std::fs::read_to_string(&entry).unwrap_or_default();
        assert!(
            !text.contains(":latest"),
            "{} names a :latest tag",
            entry.display()
        );
    }
    let version = env!("CARGO_PKG_VERSION");
    let compose_image = compose_service()["image"]
        .as_str()
        .expect("an image")
        .to_owned();
    let (_, container) = kubernetes_pod(KUBERNETES);
    let kubernetes_image = container["image"].as_str().expect("an image").to_owned();
    let (_, container) = kubernetes_pod(KUBERNETES_CLUSTER);
    let cluster_image = container["image"].as_str().expect("an image").to_owned();
    for image in [&compose_image, &kubernetes_image, &cluster_image] {
        assert!(
            image.ends_with(&format!("/chaintrigger:{version}"))
                || *image == format!("chaintrigger:{version}"),
            "{image}"
        );
    }
    assert!(
        read(DOCKERFILE).contains(&format!("-t chaintrigger:{version} ")),
        "{DOCKERFILE}: the build command's tag"
    );
    for line in read(DOCKERFILE)
        .lines()
        .filter(|line| line.starts_with("FROM "))
    {
        let image = line.split_whitespace().nth(1).expect("an image");
        let (_, tag) = image
            .rsplit_once(':')
            .unwrap_or_else(|| panic!("{line}: no tag"));
        assert!(
            tag.chars().next().is_some_and(|c| c.is_ascii_digit()),
            "{line}: the tag names no version"
        );
    }
}

/// Every file under `folder`.
fn walk(folder: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(folder).expect("read a folder") {
        let path = entry.expect("an entry").path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Whether `.dockerignore` keeps `path` out of the build context (Docker's rules: the last matching pattern wins,
/// `!` re-includes, a pattern matching a folder matches everything in it; `*` within a name, `**` any folders).
fn docker_ignores(patterns: &str, path: &str) -> bool {
    let mut ignored = false;
    for pattern in patterns
        .lines()
        .map(str::trim)
        .filter(|p| !p.is_empty() && !p.starts_with('#'))
    {
        let (keep, pattern) = match pattern.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, pattern),
        };
        let pattern: Vec<&str> = pattern.trim_matches('/').split('/').collect();
        let parts: Vec<&str> = path.split('/').collect();
        if (1..=parts.len()).any(|n| glob(&pattern, &parts[..n])) {
            ignored = !keep;
        }
    }
    ignored
}

fn glob(pattern: &[&str], parts: &[&str]) -> bool {
    match (pattern.first(), parts.first()) {
        (None, None) => true,
        (Some(&"**"), _) => {
            glob(&pattern[1..], parts) || (!parts.is_empty() && glob(pattern, &parts[1..]))
        }
        (Some(p), Some(part)) => name_matches(p, part) && glob(&pattern[1..], &parts[1..]),
        _ => false,
    }
}

fn name_matches(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, tail)) => {
            name.starts_with(head)
                && (0..=name.len() - head.len()).any(|skip| {
                    name.is_char_boundary(head.len() + skip)
                        && name_matches(tail, &name[head.len() + skip..])
                })
        }
    }
}

#[test]
fn dockerignore_rules_read_as_docker_reads_them() {
    let rules = "target\n**/node_modules\n*.db\n!keep.db\n";
    assert!(docker_ignores(rules, "target/release/x"));
    assert!(docker_ignores(rules, "tests/sdk/node/node_modules/a"));
    assert!(docker_ignores(rules, "state.db"));
    assert!(!docker_ignores(rules, "keep.db"));
    assert!(!docker_ignores(rules, "src/target.rs"));
}

#[test]
fn the_image_runs_as_non_root_with_the_database_folder_as_its_volume_and_copies_what_exists() {
    let dockerfile = read(DOCKERFILE);
    let ignore = read(".dockerignore");
    let instructions: Vec<(&str, &str)> = dockerfile
        .lines()
        .filter(|line| !line.starts_with('#') && !line.starts_with(' ') && !line.trim().is_empty())
        .filter_map(|line| line.split_once(' '))
        .collect();
    let last = |name: &str| -> String {
        instructions
            .iter()
            .rev()
            .find(|(instruction, _)| *instruction == name)
            .unwrap_or_else(|| panic!("{DOCKERFILE}: no {name}"))
            .1
            .to_owned()
    };
    let user = last("USER");
    let user = user.split(':').next().expect("a user");
    assert!(
        !["root", "0", ""].contains(&user),
        "{DOCKERFILE}: USER {user}"
    );
    let volume = last("VOLUME");
    let volumes: Vec<String> = serde_json::from_str(&volume).expect("VOLUME [\"...\"]");
    let container_config = load(&compose());
    let database_folder = container_config
        .database
        .get_ref()
        .parent()
        .expect("a folder")
        .to_owned();
    assert_eq!(
        volumes,
        [database_folder.display().to_string()],
        "{DOCKERFILE}: VOLUME"
    );
    assert_eq!(
        compose().state(),
        database_folder,
        "{COMPOSE}: the state volume"
    );
    assert_eq!(
        kubernetes().state(),
        database_folder,
        "{KUBERNETES}: the state volume"
    );

    let mut copied = 0;
    for (instruction, arguments) in &instructions {
        if *instruction != "COPY" || arguments.starts_with("--from") {
            continue;
        }
        let words: Vec<&str> = arguments.split_whitespace().collect();
        for source in &words[..words.len() - 1] {
            assert!(
                repo().join(source).exists(),
                "{DOCKERFILE}: COPY {source}: no such file"
            );
            assert!(
                !docker_ignores(&ignore, source),
                "{DOCKERFILE}: COPY {source} is in .dockerignore"
            );
            copied += 1;
        }
    }
    assert!(copied > 0, "{DOCKERFILE}: no COPY read");
    for kept_out in [
        ".git",
        "target/release/chaintrigger",
        "tests/sdk/node/node_modules/x",
        "fuzz/target/x",
    ] {
        assert!(
            docker_ignores(&ignore, kept_out),
            ".dockerignore lets {kept_out} into the build context"
        );
    }
}

#[test]
fn probes_reach_the_admin_api_and_prometheus_sends_the_token() {
    let config = load(&kubernetes());
    let admin = &config.admin;
    assert!(
        *admin.allow_remote.get_ref(),
        "the container's admin API must be reachable by the probes"
    );
    assert!(
        admin.listen.get_ref().ip().is_unspecified(),
        "listen on the container's addresses"
    );
    assert!(
        admin.tls_certificate.is_some() && admin.tls_key.is_some(),
        "remote access is HTTPS"
    );
    let port = admin.listen.get_ref().port().to_string();

    // Kubernetes: HTTPS probes on the container's admin port, liveness /healthz, readiness /readyz.
    let (_, container) = kubernetes_pod(KUBERNETES);
    let ports = container["ports"].as_array().expect("ports");
    let admin_port = ports
        .iter()
        .find(|p| p["name"] == "admin")
        .expect("a port named admin");
    assert_eq!(admin_port["containerPort"], port.as_str());
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        let get = &container[probe]["httpGet"];
        assert_eq!(get["path"], path, "{probe}");
        assert_eq!(get["scheme"], "HTTPS", "{probe}");
        assert!(
            get["port"] == "admin" || get["port"] == port.as_str(),
            "{probe}: {get}"
        );
    }
    let services = of_kind(&yaml_docs(KUBERNETES), "Service");
    assert!(
        services[0]["spec"]["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .any(|p| p["name"] == "admin")
    );

    // Compose: its health check asks /readyz on the configured port, which is published.
    let service = compose_service();
    let check = strings(&service["healthcheck"]["test"]).join(" ");
    assert!(
        check.contains(&format!("https://127.0.0.1:{port}/readyz")),
        "{COMPOSE}: {check}"
    );
    assert!(
        strings(&service["ports"])
            .iter()
            .any(|p| p.ends_with(&format!(":{port}"))),
        "{COMPOSE}: ports"
    );

    // The ServiceMonitor sends the same Secret key the daemon reads its token from, and trusts its certificate.
    let monitor = &yaml_docs(SERVICE_MONITOR)[0];
    let endpoint = &monitor["spec"]["endpoints"][0];
    assert_eq!(endpoint["port"], "admin");
    assert_eq!(endpoint["scheme"], "https");
    assert_eq!(endpoint["path"], "/metrics");
    let token_ref = container["env"]
        .as_array()
        .expect("env")
        .iter()
        .find(|v| v["name"] == "CHAINTRIGGER_ADMIN_TOKEN")
        .expect("the token's variable")["valueFrom"]["secretKeyRef"]
        .clone();
    assert_eq!(endpoint["authorization"]["credentials"], token_ref);
    let ca = &endpoint["tlsConfig"]["ca"]["secret"];
    let (pod, _) = kubernetes_pod(KUBERNETES);
    let admin_tls = pod["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| v["secret"]["secretName"] == ca["name"])
        .expect("the CA is the admin API's certificate Secret");
    assert!(
        admin_tls["secret"]["items"]
            .as_array()
            .expect("items")
            .iter()
            .any(|i| i["key"] == ca["key"])
    );

    // Plain Prometheus: every job sends the token from a file.
    let prometheus = &yaml_docs(PROMETHEUS)[0];
    let jobs = prometheus["scrape_configs"]
        .as_array()
        .expect("scrape_configs");
    assert!(!jobs.is_empty());
    for job in jobs {
        assert_eq!(job["authorization"]["type"], "Bearer", "{job}");
        assert!(
            job["authorization"]["credentials_file"].is_string(),
            "{job}"
        );
        assert_eq!(job["metrics_path"], "/metrics", "{job}");
    }
    let https: Vec<&Value> = jobs.iter().filter(|job| job["scheme"] == "https").collect();
    assert!(
        https
            .iter()
            .all(|job| job["tls_config"]["ca_file"].is_string()),
        "HTTPS jobs verify the certificate"
    );
    assert!(https.iter().any(|job| {
        strings(&job["static_configs"][0]["targets"]).contains(&format!("chaintrigger:{port}"))
    }));
}

#[test]
fn the_systemd_unit_is_hardened_and_systemd_analyze_verifies_it() {
    let settings = unit_settings();
    let is = |key: &str, value: &str| {
        assert_eq!(
            settings.get(key).map(Vec::as_slice),
            Some([value.to_owned()].as_slice()),
            "{UNIT}: {key}="
        );
    };
    is("ProtectSystem", "strict");
    is("NoNewPrivileges", "yes");
    is("StateDirectory", "chaintrigger");
    is("PrivateTmp", "yes");
    is("ProtectHome", "yes");
    let user = settings.get("User").and_then(|v| v.first()).cloned();
    let dynamic = settings.get("DynamicUser").and_then(|v| v.first()).cloned();
    assert!(
        dynamic.as_deref() == Some("yes")
            || user.as_deref().is_some_and(|u| u != "root" && u != "0"),
        "{UNIT}: runs as a dedicated user"
    );
    let text = read(UNIT);
    assert!(
        text.contains("CAP_SYS_ADMIN") && text.contains("runtime"),
        "{UNIT}: says what the runtime's sandbox needs"
    );

    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!(
            "systemd-analyze is not installed (Debian package systemd; .ci/setup installs it): verify skipped"
        );
        return;
    }
    // The unit as installed, with the binary it starts at this build's path.
    let dir = tempfile::tempdir().expect("a temporary folder");
    let unit = dir.path().join("chaintrigger.service");
    std::fs::write(
        &unit,
        text.replace(
            "/usr/local/bin/chaintrigger",
            env!("CARGO_BIN_EXE_chaintrigger"),
        ),
    )
    .expect("write the unit");
    let output = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&unit)
        .env("SYSTEMD_LOG_COLOR", "0")
        .output()
        .expect("run systemd-analyze");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let about_the_unit: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("chaintrigger"))
        .collect();
    assert!(
        output.status.success() && about_the_unit.is_empty(),
        "systemd-analyze verify {UNIT}: {}\n{stderr}",
        output.status
    );
}
