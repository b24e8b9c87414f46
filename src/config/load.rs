//! Reading a configuration file: TOML to [`Config`], relative paths anchored at the file's folder, and every
//! problem located as `file:line:column: field: message`.
//!
//! Every problem in one run, in this order:
//! 1. syntax: the TOML parser recovers after an error, so every syntax error is reported (and nothing more: a
//!    document that does not parse cannot be read reliably);
//! 2. shape (types, values, unknown and missing keys): each top-level value, and each `[[channels]]` and
//!    `[[triggers]]` element, is read on its own, so one bad element hides nothing in the next. Within a value, a
//!    problem is reported, the offending key taken out, and the value read again, until it reads or a required
//!    key that was taken out is reported missing (not reported: its own problem already is). serde visits keys in
//!    order and reports missing keys last, so this finds every bad key of the value;
//! 3. the checks across values (`validate`) on the parts that read, without the consequences of shape problems
//!    (a trigger whose channel did not read is not "on an unknown channel"); a section that did not read, or read
//!    only in part, is replaced by a placeholder that raises nothing about the others;
//! 4. the environment (`environment`), when asked, on the same parts, except that a section that read in part is
//!    checked with the values that read: files and secrets are checked one value at a time.
//!
//! Channel and trigger indexes in messages are always those of the file, whichever entries did not read.

use std::collections::HashSet;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use super::names::{ChannelName, InstanceId};
use super::schema::{Admin, Channel, Config, HttpAuth, Runtime, Target, Trigger};
use super::secrets::SecretSource;

/// One problem in a configuration file, located in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The configuration file.
    pub file: PathBuf,
    /// 1-based line of the offending value (0 when the problem is not tied to a place).
    pub line: usize,
    /// 1-based column of the offending value.
    pub column: usize,
    /// The field's path, e.g. `triggers[3].filter` (empty when unknown).
    pub field: String,
    /// What was expected and what was found.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}", display_problems(.0))]
    Invalid(Vec<Problem>),
}

impl ConfigError {
    /// Every located problem (empty when the file could not be read at all).
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Read { .. } => &[],
            ConfigError::Invalid(problems) => problems,
        }
    }
}

fn display_problems(problems: &[Problem]) -> String {
    let lines: Vec<String> = problems.iter().map(Problem::to_string).collect();
    lines.join("\n")
}

/// Maps byte offsets of the source text to lines and columns, kept so later checks can still locate values.
#[derive(Debug, Clone, Default)]
pub(super) struct SourceMap {
    /// The file, named in every problem.
    pub(super) file: PathBuf,
    /// Its text, to turn byte offsets into lines and columns.
    pub(super) text: Arc<str>,
    /// The byte offset where each line starts, so locating a problem does not scan the text before it (a file
    /// with thousands of problems would otherwise take quadratic time).
    line_starts: Arc<[usize]>,
}

impl SourceMap {
    fn new(file: &Path, text: &str) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(at, _)| at + 1))
            .collect();
        SourceMap {
            file: file.to_owned(),
            text: Arc::from(text),
            line_starts,
        }
    }

    pub(super) fn problem(
        &self,
        span: Option<Range<usize>>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Problem {
        let (line, column) = match span {
            Some(span) => {
                let at = span.start.min(self.text.len());
                let mut at = at;
                while !self.text.is_char_boundary(at) {
                    at -= 1;
                }
                let line = self
                    .line_starts
                    .partition_point(|start| *start <= at)
                    .max(1);
                let start = self.line_starts.get(line - 1).copied().unwrap_or(0).min(at);
                (line, self.text[start..at].chars().count() + 1)
            }
            None => (0, 0),
        };
        Problem {
            file: self.file.clone(),
            line,
            column,
            field: field.into(),
            message: message.into(),
        }
    }
}

impl Config {
    /// Reads and checks a configuration file (not its environment: see [`Config::load_with_environment`]).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::check(&read(path)?, path, Environment::Skip)
    }

    /// Reads and checks a configuration file and what it refers to (files, folders, secrets): what the daemon
    /// needs at start and at reload. The error holds every problem of the file and of its environment.
    pub fn load_with_environment(path: &Path) -> Result<Config, ConfigError> {
        Config::check(&read(path)?, path, Environment::Check)
    }

    /// Checks a configuration's text; `path` names it in messages and anchors its relative paths. The error
    /// holds every problem the text has (see the module docs for the order), not only the first.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        Config::check(text, path, Environment::Skip)
    }

    /// Every problem of `text` (and of its environment when asked): syntax, then shape (types, unknown and
    /// missing keys), then cross-value checks on the parts that read, then the environment.
    fn check(text: &str, path: &Path, environment: Environment) -> Result<Config, ConfigError> {
        let source = SourceMap::new(path, text);
        let (root, syntax) = DeTable::parse_recoverable(text);
        if !syntax.is_empty() {
            // A document that does not parse cannot be read reliably: whatever else it says would be guesswork.
            let mut problems: Vec<Problem> = syntax
                .iter()
                .map(|error| source.problem(error.span(), "", error.message().trim()))
                .collect();
            sort_by_place(&mut problems);
            return Err(ConfigError::Invalid(problems));
        }
        let mut reader = Reader {
            source: source.clone(),
            problems: Vec::new(),
        };
        let parts = reader.document(root.into_inner());
        let mut problems = reader.problems;
        sort_by_place(&mut problems);
        let (mut config, mut partial, gaps) = parts.assemble(source);
        let base = path.parent().unwrap_or(Path::new("")).to_owned();
        config.resolve_paths(&base);
        problems.extend(gaps.relevant(&config, &gaps.cross, config.semantic_problems()));
        if environment == Environment::Check {
            // The files and secrets are checked one value at a time: those of a section that read in part are
            // checked too.
            partial.resolve_paths(&base);
            if let Err(error) = partial.check_environment() {
                problems.extend(gaps.relevant(
                    &partial,
                    &gaps.environment,
                    error.problems().to_vec(),
                ));
            }
        }
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }

    /// The file this configuration was read from.
    pub fn file(&self) -> &Path {
        &self.source.file
    }

    /// The channel named `name`.
    pub fn channel(&self, name: &ChannelName) -> Option<&Channel> {
        self.channels.iter().find(|c| c.name.get_ref() == name)
    }
}

/// Whether [`Config::check`] also checks what the file refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Environment {
    Check,
    Skip,
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Problems in file order; those without a place (a missing section) last.
fn sort_by_place(problems: &mut [Problem]) {
    problems.sort_by_key(|problem| (problem.line == 0, problem.line, problem.column));
}

/// A parsed TOML value with its place in the file.
type Value<'i> = Spanned<DeValue<'i>>;

/// One step of a path inside a value.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

/// The most problems looked for in one element: each costs one more read of it.
const MAX_PROBLEMS_PER_ELEMENT: usize = 64;

/// serde's private field of [`Spanned`], which paths pass through: not something to show an operator.
const SPANNED_FIELD: &str = "$__serde_spanned_private_value";

/// The top-level keys, in the order of the file's documentation.
const TOP_LEVEL_KEYS: [&str; 7] = [
    "instance_id",
    "database",
    "log_format",
    "admin",
    "runtime",
    "channels",
    "triggers",
];

/// Reads values one at a time, collecting every problem.
struct Reader {
    source: SourceMap,
    problems: Vec<Problem>,
}

/// What the top-level values gave: the parts that read, and which did not.
struct Parts {
    instance_id: Reading<InstanceId>,
    database: Reading<Spanned<super::Database>>,
    /// `None`: absent, the default (or `--log-format`) applies.
    log_format: Option<Reading<crate::logging::LogFormat>>,
    /// Unread also when the section is absent (it is required; its problem is reported).
    admin: Reading<Admin>,
    /// `None`: absent, the defaults apply.
    runtime: Option<Reading<Runtime>>,
    /// The channels that read, with their index in the file.
    channels: Vec<(usize, Channel)>,
    /// The triggers that read, with their index in the file.
    triggers: Vec<(usize, Trigger)>,
    /// The name of each channel that did not read, `None` when the name itself is missing or invalid: a
    /// trigger on one of them is not "on an unknown channel".
    unread_channels: Vec<Option<ChannelName>>,
}

impl Reader {
    /// Reads the whole document, each top-level value and each array element on its own.
    fn document(&mut self, mut root: DeTable<'_>) -> Parts {
        let document = 0..self.source.text.len();
        let mut required = |reader: &mut Reader, key: &str| match root.remove(key) {
            Some(value) => Some(value),
            None => {
                reader.problems.push(reader.source.problem(
                    Some(document.start..document.start),
                    key,
                    format!("missing field `{key}`"),
                ));
                None
            }
        };
        let instance_id = match required(self, "instance_id") {
            Some(value) => self.value("instance_id", value),
            None => Reading::Unread,
        };
        let database = match required(self, "database") {
            Some(value) => self.value("database", value),
            None => Reading::Unread,
        };
        let admin = match required(self, "admin") {
            Some(value) => self.value("admin", value),
            None => Reading::Unread,
        };
        let log_format = root
            .remove("log_format")
            .map(|value| self.value("log_format", value));
        let runtime = root
            .remove("runtime")
            .map(|value| self.value("runtime", value));
        let mut unread_channels = Vec::new();
        let channels = match root.remove("channels") {
            None => Vec::new(),
            Some(value) => self.elements("channels", value, |element| {
                let name = match element.get_ref() {
                    DeValue::Table(table) => {
                        table.get("name").and_then(|name| match name.get_ref() {
                            DeValue::String(name) => ChannelName::new(name.to_string()).ok(),
                            _ => None,
                        })
                    }
                    _ => None,
                };
                unread_channels.push(name);
            }),
        };
        let triggers = match root.remove("triggers") {
            None => Vec::new(),
            Some(value) => self.elements("triggers", value, |_| {}),
        };
        for (key, _) in root {
            self.problems.push(self.source.problem(
                Some(key.span()),
                key.get_ref().as_ref(),
                format!(
                    "unknown field `{}`, expected one of {}",
                    key.get_ref(),
                    TOP_LEVEL_KEYS.map(|key| format!("`{key}`")).join(", ")
                ),
            ));
        }
        Parts {
            instance_id,
            database,
            log_format,
            admin,
            runtime,
            channels,
            triggers,
            unread_channels,
        }
    }

    /// Reads an array of tables element by element; `unread` sees each element that did not read.
    fn elements<T: DeserializeOwned>(
        &mut self,
        field: &str,
        value: Value<'_>,
        mut unread: impl FnMut(&Value<'_>),
    ) -> Vec<(usize, T)> {
        let span = value.span();
        match value.into_inner() {
            DeValue::Array(items) => items
                .into_iter()
                .enumerate()
                .filter_map(|(index, item)| {
                    let kept = item.clone();
                    let read = self.value(&format!("{field}[{index}]"), item).complete();
                    if read.is_none() {
                        unread(&kept);
                    }
                    read.map(|element| (index, element))
                })
                .collect(),
            other => {
                // Not an array: let serde say what it expected.
                let _ = self.value::<Vec<T>>(field, Spanned::new(span, other));
                Vec::new()
            }
        }
    }

    /// Reads one value as `T`. A problem is reported, the offending key taken out and the value read again,
    /// until it reads (in part, when keys were taken out) or a key taken out is missing (unread).
    fn value<T: DeserializeOwned>(&mut self, field: &str, value: Value<'_>) -> Reading<T> {
        let mut value = value;
        let mut taken_out: Vec<(Vec<Step>, String)> = Vec::new();
        for _ in 0..MAX_PROBLEMS_PER_ELEMENT {
            let error = match serde_path_to_error::deserialize::<_, T>(ValueDeserializer::from(
                value.clone(),
            )) {
                Ok(read) if taken_out.is_empty() => return Reading::Complete(read),
                Ok(read) => {
                    let fields = taken_out
                        .iter()
                        .map(|(parent, key)| join(&join(field, parent), &[Step::Key(key.clone())]))
                        .collect();
                    return Reading::Partial(read, fields);
                }
                Err(error) => error,
            };
            let at = steps(error.path());
            let inner = error.into_inner();
            let message = inner.message().trim();
            if let Some(missing) = missing_field(message)
                && taken_out
                    .iter()
                    .any(|(parent, key)| *parent == at && key == missing)
            {
                // A consequence of a problem already reported.
                return Reading::Unread;
            }
            self.problems
                .push(self.source.problem(inner.span(), join(field, &at), message));
            match take_out(&mut value, &at, inner.span()) {
                Some(taken) => taken_out.push(taken),
                None => return Reading::Unread,
            }
        }
        self.problems.push(self.source.problem(
            Some(value.span()),
            field,
            format!(
                "{MAX_PROBLEMS_PER_ELEMENT} problems reported here; the rest of this entry is not checked"
            ),
        ));
        Reading::Unread
    }
}

/// What reading one value gave.
enum Reading<T> {
    /// It read as written.
    Complete(T),
    /// It read once these fields (full paths) were taken out: its other values are as written.
    Partial(T, Vec<String>),
    /// It did not read.
    Unread,
}

impl<T> Reading<T> {
    fn complete(self) -> Option<T> {
        match self {
            Reading::Complete(value) => Some(value),
            Reading::Partial(..) | Reading::Unread => None,
        }
    }
}

/// The steps of a serde path, without serde's private [`Spanned`] field.
fn steps(path: &serde_path_to_error::Path) -> Vec<Step> {
    let mut steps = Vec::new();
    for segment in path {
        match segment {
            serde_path_to_error::Segment::Seq { index } => steps.push(Step::Index(*index)),
            serde_path_to_error::Segment::Map { key } if key == SPANNED_FIELD => {}
            serde_path_to_error::Segment::Map { key } => steps.push(Step::Key(key.clone())),
            serde_path_to_error::Segment::Enum { variant } => {
                steps.push(Step::Key(variant.clone()))
            }
            serde_path_to_error::Segment::Unknown => break,
        }
    }
    steps
}

/// `field` followed by `steps`, as operators read paths: `triggers[3].retry.attempts`.
fn join(field: &str, steps: &[Step]) -> String {
    let mut path = field.to_owned();
    for step in steps {
        match step {
            Step::Key(key) => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
            }
            Step::Index(index) => path.push_str(&format!("[{index}]")),
        }
    }
    path
}

/// The field a serde "missing field" message names.
fn missing_field(message: &str) -> Option<&str> {
    message.strip_prefix("missing field `")?.strip_suffix('`')
}

fn node_mut<'v, 'i>(value: &'v mut Value<'i>, steps: &[Step]) -> Option<&'v mut Value<'i>> {
    let mut node = value;
    for step in steps {
        node = match (step, node.get_mut()) {
            (Step::Key(key), DeValue::Table(table)) => table.get_mut(key.as_str())?,
            (Step::Index(index), DeValue::Array(items)) => items.get_mut(*index)?,
            _ => return None,
        };
    }
    Some(node)
}

/// Takes the key a problem is about out of `value`: a key of the table at `at` that the problem points at (an
/// unexpected key), else the value at `at` itself (an array element takes its whole array along, so the other
/// elements keep their indexes). Returns the table's path and the key, `None` when nothing can be taken out.
fn take_out(
    value: &mut Value<'_>,
    at: &[Step],
    span: Option<Range<usize>>,
) -> Option<(Vec<Step>, String)> {
    if let Some(span) = &span
        && let Some(node) = node_mut(value, at)
        && let DeValue::Table(table) = node.get_mut()
        && let Some(key) = table
            .keys()
            .find(|key| key.span().start == span.start)
            .map(|key| key.get_ref().to_string())
    {
        table.remove(key.as_str());
        return Some((at.to_vec(), key));
    }
    let mut parent = at.to_vec();
    while matches!(parent.last(), Some(Step::Index(_))) {
        parent.pop();
    }
    let Some(Step::Key(key)) = parent.pop() else {
        return None;
    };
    match node_mut(value, &parent)?.get_mut() {
        DeValue::Table(table) => table.remove(key.as_str()).map(|_| (parent, key)),
        _ => None,
    }
}

/// What did not read, so the checks that follow neither report consequences of it nor see placeholders.
struct Gaps {
    /// Fields whose problems the checks across values do not report: sections replaced by placeholders.
    cross: Vec<String>,
    /// Fields whose problems the environment checks do not report: sections replaced by placeholders, and the
    /// keys taken out of sections that read in part.
    environment: Vec<String>,
    /// See [`Parts::unread_channels`].
    unread_channels: Vec<Option<ChannelName>>,
    /// The file index of each channel that read, by its index in [`Config::channels`].
    channel_index: Vec<usize>,
    /// The file index of each trigger that read, by its index in [`Config::triggers`].
    trigger_index: Vec<usize>,
}

impl Parts {
    /// The configurations the checks run on. For the checks across values: what read as written, with
    /// placeholders for the sections that did not (chosen so they raise nothing about others: a placeholder
    /// runtime is enabled, so `embedded` targets are not reported for a `[runtime]` that did not read). For the
    /// environment checks, which look at one value at a time: the same, but with the sections that read in
    /// part, so a bad `max_connections` does not keep the admin token from being checked.
    fn assemble(self, source: SourceMap) -> (Config, Config, Gaps) {
        let mut cross: Vec<String> = Vec::new();
        let mut environment: Vec<String> = Vec::new();
        let placeholder = |cross: &mut Vec<String>, environment: &mut Vec<String>, name: &str| {
            cross.push(name.to_owned());
            environment.push(name.to_owned());
        };
        let instance_id = self.instance_id.complete().unwrap_or_else(|| {
            placeholder(&mut cross, &mut environment, "instance_id");
            InstanceId::new("unread").expect("a valid placeholder instance id")
        });
        let database = self.database.complete().unwrap_or_else(|| {
            placeholder(&mut cross, &mut environment, "database");
            Spanned::new(0..0, super::Database::Sqlite(PathBuf::new()))
        });
        // A log format that did not read is reported; nothing else depends on it.
        let log_format = self.log_format.and_then(Reading::complete);
        let admin_placeholder = || -> Admin {
            toml::from_str(r#"token = { env = "-" }"#).expect("a valid placeholder [admin]")
        };
        let runtime_placeholder = || -> Runtime {
            toml::from_str("enabled = true").expect("a valid placeholder [runtime]")
        };
        let (admin, partial_admin) = match self.admin {
            Reading::Complete(admin) => (admin.clone(), admin),
            Reading::Partial(admin, taken_out) => {
                cross.push("admin".to_owned());
                environment.extend(taken_out);
                (admin_placeholder(), admin)
            }
            Reading::Unread => {
                placeholder(&mut cross, &mut environment, "admin");
                (admin_placeholder(), admin_placeholder())
            }
        };
        let (runtime, partial_runtime) = match self.runtime {
            None => (Runtime::default(), Runtime::default()),
            Some(Reading::Complete(runtime)) => (runtime.clone(), runtime),
            Some(Reading::Partial(runtime, taken_out)) => {
                cross.push("runtime".to_owned());
                environment.extend(taken_out);
                (runtime_placeholder(), runtime)
            }
            Some(Reading::Unread) => {
                placeholder(&mut cross, &mut environment, "runtime");
                (runtime_placeholder(), runtime_placeholder())
            }
        };
        let (channel_index, channels) = self.channels.into_iter().unzip();
        let (trigger_index, triggers) = self.triggers.into_iter().unzip();
        let config = Config {
            instance_id,
            database,
            log_format,
            admin,
            runtime,
            channels,
            triggers,
            source,
        };
        let partial = Config {
            admin: partial_admin,
            runtime: partial_runtime,
            ..config.clone()
        };
        let gaps = Gaps {
            cross,
            environment,
            unread_channels: self.unread_channels,
            channel_index,
            trigger_index,
        };
        (config, partial, gaps)
    }
}

impl Gaps {
    /// The problems that are about what read (not under one of `hidden`), with channel and trigger indexes as in
    /// the file.
    fn relevant(&self, config: &Config, hidden: &[String], problems: Vec<Problem>) -> Vec<Problem> {
        let maybe_declared: HashSet<String> = config
            .triggers
            .iter()
            .enumerate()
            .filter(|(_, trigger)| self.may_declare(trigger.channel.get_ref()))
            .map(|(index, _)| format!("triggers[{index}].channel"))
            .collect();
        problems
            .into_iter()
            .filter(|problem| {
                !hidden.iter().any(|field| {
                    problem.field == *field
                        || problem
                            .field
                            .strip_prefix(field.as_str())
                            .is_some_and(|rest| rest.starts_with('.'))
                })
            })
            .filter(|problem| !maybe_declared.contains(&problem.field))
            .map(|mut problem| {
                problem.field = self.renumber(&problem.field);
                problem.message = self.renumber(&problem.message);
                problem
            })
            .collect()
    }

    /// Whether a channel that did not read may be `name`: it is named so, or its name is what did not read.
    fn may_declare(&self, name: &ChannelName) -> bool {
        self.unread_channels
            .iter()
            .any(|unread| unread.as_ref().is_none_or(|unread| unread == name))
    }

    /// `channels[i]` and `triggers[i]` in `text` with `i` turned from an index among the parts that read into
    /// the index in the file.
    fn renumber(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for (array, index) in [
            ("channels[", &self.channel_index),
            ("triggers[", &self.trigger_index),
        ] {
            if index.iter().enumerate().all(|(read, file)| read == *file) {
                continue;
            }
            let mut out = String::with_capacity(text.len());
            let mut rest = text.as_str();
            while let Some(at) = rest.find(array) {
                let (before, after) = rest.split_at(at + array.len());
                out.push_str(before);
                let digits =
                    after.len() - after.trim_start_matches(|c: char| c.is_ascii_digit()).len();
                match after[..digits]
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| index.get(i))
                {
                    Some(file) if after[digits..].starts_with(']') => {
                        out.push_str(&file.to_string())
                    }
                    _ => out.push_str(&after[..digits]),
                }
                rest = &after[digits..];
            }
            out.push_str(rest);
            text = out;
        }
        text
    }
}

impl Config {
    fn resolve_paths(&mut self, base: &Path) {
        let resolve = |path: &mut PathBuf| {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        };
        let resolve_secret = |source: &mut Spanned<SecretSource>| {
            if let SecretSource::File(path) = source.get_mut() {
                resolve(path);
            }
        };
        for path in self.database.get_mut().paths_mut() {
            resolve(path);
        }
        resolve_secret(&mut self.admin.token);
        for path in [&mut self.admin.tls_certificate, &mut self.admin.tls_key]
            .into_iter()
            .flatten()
        {
            resolve(path.get_mut());
        }
        resolve(self.runtime.data_dir.get_mut());
        if let Some(functions) = &mut self.runtime.functions {
            resolve(functions.get_mut());
        }
        if let Some(credentials) = &mut self.runtime.credentials {
            resolve_secret(&mut credentials.access_key_secret);
        }
        for channel in &mut self.channels {
            resolve(channel.certificate.get_mut());
            resolve(channel.key.get_mut());
            for peer in channel.peers.get_mut() {
                for path in [
                    &mut peer.tls_ca,
                    &mut peer.client_certificate,
                    &mut peer.client_key,
                ]
                .into_iter()
                .flatten()
                {
                    resolve(path.get_mut());
                }
            }
        }
        for trigger in &mut self.triggers {
            match &mut trigger.target {
                Target::FunctionCompute(fc) => {
                    if let Some(credentials) = &mut fc.credentials {
                        resolve_secret(&mut credentials.access_key_secret);
                    }
                }
                Target::Http(http) => match &mut http.auth {
                    HttpAuth::None => {}
                    HttpAuth::Basic { password, .. } => resolve_secret(password),
                    HttpAuth::Bearer { token } => resolve_secret(token),
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "/etc/ct/many.toml";

    /// A file with problems of every kind but syntax, in several elements and several problems per element.
    const MANY: &str = r#"instance_id = "csi-org1-test"
database = "state.db"
colour = "blue"

[admin]
token = "inline-secret"
max_connections = "many"

[runtime]
enabled = "yes"

[[channels]]
name = "mychannel"
msp_id = 7
certificate = "cert.pem"
key = "key.pem"
[[channels.peers]]
address = 7051
tls_ca = "ca.pem"

[[channels]]
name = "other"
msp_id = "Org1MSP"
certificate = "cert.pem"
key = "key.pem"
peers = []

[[triggers]]
name = "bad event"
channel = "other"
event = "tx"
failure_threshold = -5
[triggers.retry]
attempts = "three"
initial_delay = "1 s"
[triggers.target.http]
url = "https://hooks.example.com/x?key=supersecret-value&sig=abcdef"
auth = { bearer = { token = { env = "T" }, scheme = "x" } }

[[triggers]]
name = "on-unread-channel"
channel = "mychannel"
event = "Tx"
filter = 'select(.name=='
[triggers.target.http]
url = "http://127.0.0.1/h"

[[triggers]]
name = "typo-channel"
channel = "nochannel"
event = "Block"
include_invalid = true
[triggers.target.function_compute]
endpoint = "embedded"
service = "demo"
function = "f"

[[triggers]]
name = "on-unread-channel"
channel = "other"
event = "Block"
[triggers.target.http]
url = "ftp://x/?token=supersecret-value"
"#;

    fn problems(text: &str, environment: Environment) -> Vec<Problem> {
        match Config::check(text, Path::new(FILE), environment) {
            Ok(_) => panic!("expected problems"),
            Err(error) => error.problems().to_vec(),
        }
    }

    /// Asserts the problems are exactly these `(line, column, field, part of the message)`, in this order.
    fn assert_problems(found: &[Problem], expected: &[(usize, usize, &str, &str)]) {
        let shown: Vec<String> = found.iter().map(Problem::to_string).collect();
        assert_eq!(found.len(), expected.len(), "{shown:#?}");
        for (problem, (line, column, field, message)) in found.iter().zip(expected) {
            assert_eq!(
                (problem.line, problem.column, problem.field.as_str()),
                (*line, *column, *field),
                "{shown:#?}"
            );
            assert!(
                problem.message.contains(message),
                "{problem}: expected {message:?}"
            );
            assert_eq!(problem.file, Path::new(FILE));
        }
    }

    #[test]
    fn every_problem_of_every_kind_is_reported_at_its_place_in_one_run() {
        let found = problems(MANY, Environment::Skip);
        assert_problems(
            &found,
            &[
                // Shape problems, in file order: each element and section read on its own, and several
                // problems within one element.
                (
                    3,
                    1,
                    "colour",
                    "unknown field `colour`, expected one of `instance_id`",
                ),
                (
                    6,
                    9,
                    "admin.token",
                    "secrets are not written in the configuration file",
                ),
                (
                    7,
                    19,
                    "admin.max_connections",
                    "invalid type: string \"many\", expected u32",
                ),
                (10, 11, "runtime.enabled", "expected a boolean"),
                (14, 10, "channels[0].msp_id", "invalid type: integer `7`"),
                (
                    18,
                    11,
                    "channels[0].peers[0].address",
                    "invalid type: integer `7051`",
                ),
                (
                    29,
                    8,
                    "triggers[0].name",
                    "invalid trigger name `bad event`",
                ),
                (31, 9, "triggers[0].event", "invalid event type `tx`"),
                (
                    32,
                    21,
                    "triggers[0].failure_threshold",
                    "invalid failure threshold -5",
                ),
                (34, 12, "triggers[0].retry.attempts", "expected u32"),
                (
                    35,
                    17,
                    "triggers[0].retry.initial_delay",
                    "invalid duration `1 s`",
                ),
                (
                    38,
                    44,
                    "triggers[0].target.http.auth.bearer",
                    "unexpected keys in table: scheme",
                ),
                (
                    63,
                    7,
                    "triggers[3].target.http.url",
                    "the scheme must be http or https",
                ),
                // Checks across values, on what read; indexes as in the file although triggers[0] did not read.
                (
                    26,
                    9,
                    "channels[1].peers",
                    "a channel needs at least one peer",
                ),
                (44, 10, "triggers[1].filter", "jq filter does not compile"),
                (
                    50,
                    11,
                    "triggers[2].channel",
                    "unknown channel `nochannel` (declared channels: other)",
                ),
                (
                    52,
                    19,
                    "triggers[2].include_invalid",
                    "applies to Contract events only",
                ),
            ],
        );
        // Not reported: consequences of what is reported (a required key taken out is missing; a trigger on
        // `mychannel`, which did not read, is not on an unknown channel; `embedded` needs a [runtime] that did
        // not read), the admin checks on an [admin] that did not read, and secrets of URLs.
        let text: Vec<String> = found.iter().map(Problem::to_string).collect();
        let text = text.join("\n");
        assert!(!text.contains("missing field"), "{text}");
        assert!(!text.contains("embedded"), "{text}");
        assert!(!text.contains("supersecret"), "{text}");
        assert!(text.contains("ftp://x/?token=***"), "{text}");
    }

    #[test]
    fn environment_problems_follow_in_the_same_run() {
        let found = problems(MANY, Environment::Check);
        let shown: Vec<String> = found.iter().map(Problem::to_string).collect();
        let tail: Vec<&Problem> = found.iter().skip(17).collect();
        assert_eq!(tail.len(), 2, "{shown:#?}");
        assert_eq!(
            (tail[0].line, tail[0].field.as_str()),
            (24, "channels[1].certificate")
        );
        assert!(tail[0].message.contains("/etc/ct/cert.pem does not exist"));
        assert_eq!(
            (tail[1].line, tail[1].field.as_str()),
            (25, "channels[1].key")
        );
    }

    #[test]
    fn a_trigger_on_a_channel_that_did_not_read_is_not_on_an_unknown_channel() {
        let text = MANY.replace(
            "name = \"mychannel\"\nmsp_id = 7",
            "name = \"Bad Name\"\nmsp_id = 7",
        );
        let found = problems(&text, Environment::Skip);
        // The unread channel's name is itself unreadable: it may be the one any trigger means.
        assert!(
            !found
                .iter()
                .any(|problem| problem.message.contains("unknown channel")),
            "{found:#?}"
        );
        assert!(
            found
                .iter()
                .any(|problem| problem.field == "channels[0].name")
        );
    }

    #[test]
    fn duplicates_name_the_first_declaration_by_its_index_in_the_file() {
        let text = format!(
            "{MANY}\n[[triggers]]\nname = \"typo-channel\"\nchannel = \"other\"\nevent = \"Tx\"\n\
             [triggers.target.http]\nurl = \"http://127.0.0.1/\"\n"
        );
        let found = problems(&text, Environment::Skip);
        let duplicate = found
            .iter()
            .find(|problem| problem.field == "triggers[4].name")
            .unwrap_or_else(|| panic!("{found:#?}"));
        assert!(
            duplicate
                .message
                .contains("trigger `typo-channel` is already declared by triggers[2]"),
            "{duplicate}"
        );
    }

    #[test]
    fn every_syntax_error_is_reported_and_nothing_else() {
        let text = "instance_id = \"a\"\ndatabase = \nnested = { a = 1\ncolour = \"x\"\n[admin\n";
        let found = problems(text, Environment::Skip);
        assert!(found.len() >= 2, "{found:#?}");
        assert!(
            found.iter().all(|problem| problem.field.is_empty()),
            "{found:#?}"
        );
        assert_eq!(found[0].line, 2, "{found:#?}");
        assert!(found.iter().any(|problem| problem.line == 5), "{found:#?}");
    }

    #[test]
    fn an_entry_full_of_problems_is_reported_up_to_a_limit() {
        let keys: String = (0..100)
            .map(|index| format!("junk{index:03} = 1\n"))
            .collect();
        let text = MANY.replace(
            "name = \"typo-channel\"\n",
            &format!("name = \"typo-channel\"\n{keys}"),
        );
        let found = problems(&text, Environment::Skip);
        let junk = found
            .iter()
            .filter(|problem| problem.field.starts_with("triggers[2].junk"))
            .count();
        assert_eq!(junk, MAX_PROBLEMS_PER_ELEMENT, "{found:#?}");
        assert!(
            found.iter().any(|problem| problem.field == "triggers[2]"
                && problem
                    .message
                    .contains("the rest of this entry is not checked")),
            "{found:#?}"
        );
        assert!(
            found
                .iter()
                .any(|problem| problem.field == "triggers[1].filter"),
            "the other entries are still checked: {found:#?}"
        );
    }

    #[test]
    fn deep_nesting_is_a_located_syntax_error() {
        let depth = 100_000;
        let text = format!(
            "instance_id = \"a\"\nx = {}{}\n",
            "[".repeat(depth),
            "]".repeat(depth)
        );
        let found = problems(&text, Environment::Skip);
        assert!(found.iter().all(|problem| problem.line == 2), "{found:#?}");
        assert!(found[0].message.contains("recursion"), "{found:#?}");
    }

    #[test]
    fn missing_sections_and_wrong_shapes_are_reported() {
        let found = problems("channels = 5\ntriggers = [1]\n", Environment::Skip);
        let shown: Vec<String> = found.iter().map(Problem::to_string).collect();
        for expected in [
            "channels: invalid type: integer `5`, expected a sequence",
            "triggers[0]: invalid type: integer `1`, expected struct Trigger",
            "instance_id: missing field `instance_id`",
            "database: missing field `database`",
            "admin: missing field `admin`",
        ] {
            assert!(
                shown.iter().any(|line| line.contains(expected)),
                "{expected} in {shown:#?}"
            );
        }
        assert_eq!(found.len(), 5, "{shown:#?}");
    }

    /// A file with only `[admin]` (given) around the required keys.
    fn with_admin(admin: &str) -> String {
        format!("instance_id = \"csi\"\ndatabase = \"state.db\"\n\n[admin]\n{admin}\n")
    }

    #[test]
    fn remote_admin_access_needs_the_setting_and_tls() {
        let token = "token = { env = \"CT_ADMIN_TOKEN\" }";
        let found = problems(
            &with_admin(&format!("listen = \"0.0.0.0:8650\"\n{token}")),
            Environment::Skip,
        );
        assert_problems(
            &found,
            &[(
                5,
                10,
                "admin.listen",
                "0.0.0.0:8650 is not a loopback address",
            )],
        );
        assert!(
            found[0]
                .message
                .contains("`allow_remote = true` in [admin]")
                && found[0].message.contains("`tls_certificate` and `tls_key`"),
            "the message names the settings: {}",
            found[0]
        );

        let found = problems(
            &with_admin(&format!(
                "listen = \"0.0.0.0:8650\"\nallow_remote = true\n{token}"
            )),
            Environment::Skip,
        );
        assert_problems(
            &found,
            &[(
                6,
                16,
                "admin.allow_remote",
                "needs `tls_certificate` and `tls_key`",
            )],
        );

        let found = problems(
            &with_admin(&format!("{token}\ntls_certificate = \"cert.pem\"")),
            Environment::Skip,
        );
        assert_problems(
            &found,
            &[(6, 19, "admin.tls_key", "`tls_certificate` needs `tls_key`")],
        );

        let found = problems(
            &with_admin(&format!(
                "{token}\nmax_connections = 0\nheader_read_timeout = \"10ms\"\nidle_timeout = \"2h\""
            )),
            Environment::Skip,
        );
        assert_problems(
            &found,
            &[
                (
                    6,
                    19,
                    "admin.max_connections",
                    "expected 1 to 16384 connections, found 0",
                ),
                (
                    7,
                    23,
                    "admin.header_read_timeout",
                    "expected 100ms to 3600s, found 10ms",
                ),
                (
                    8,
                    16,
                    "admin.idle_timeout",
                    "expected 100ms to 3600s, found 7200s",
                ),
            ],
        );

        // With TLS the file itself is fine; the files are the environment's business, located at their key.
        let remote = with_admin(&format!(
            "listen = \"0.0.0.0:8650\"\nallow_remote = true\ntls_certificate = \"tls/cert.pem\"\n\
             tls_key = \"tls/key.pem\"\n{token}"
        ));
        let config =
            Config::parse(&remote, Path::new(FILE)).expect("remote access with TLS is accepted");
        let (certificate, key) = config.admin.tls().expect("TLS is on");
        assert_eq!(certificate.get_ref(), Path::new("/etc/ct/tls/cert.pem"));
        assert_eq!(key.get_ref(), Path::new("/etc/ct/tls/key.pem"));
        let found = problems(&remote, Environment::Check);
        assert!(
            found.iter().any(|problem| problem.line == 7
                && problem.column == 19
                && problem.field == "admin.tls_certificate"
                && problem
                    .message
                    .starts_with("cannot read /etc/ct/tls/cert.pem")),
            "{found:#?}"
        );
    }

    #[test]
    fn renumbering_maps_indexes_and_leaves_other_text_alone() {
        let gaps = Gaps {
            cross: Vec::new(),
            environment: Vec::new(),
            unread_channels: Vec::new(),
            channel_index: vec![0, 1],
            trigger_index: vec![1, 3, 10],
        };
        assert_eq!(
            gaps.renumber("triggers[2].name: already declared by triggers[0]; channels[1] triggers[x] triggers[7]"),
            "triggers[10].name: already declared by triggers[1]; channels[1] triggers[x] triggers[7]"
        );
    }
}
