//! Reading a configuration file: TOML to [`Config`], relative paths anchored at the file's folder, and every
//! problem located as `file:line:column: field: message`.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use toml::Spanned;

use super::names::ChannelName;
use super::schema::{Channel, Config, HttpAuth, Target};
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
}

impl SourceMap {
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
                let before = &self.text[..at];
                let line = before.matches('\n').count() + 1;
                let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
                (line, column)
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
    /// Reads and checks a configuration file (not its environment: see [`Config::check_environment`]).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Checks a configuration's text; `path` names it in messages and anchors its relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let source = SourceMap {
            file: path.to_owned(),
            text: Arc::from(text),
        };
        let deserializer = toml::Deserializer::parse(text).map_err(|e| {
            ConfigError::Invalid(vec![source.problem(e.span(), "", e.message().trim())])
        })?;
        let mut config: Config = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            // `Spanned` values add a private segment to the path: not something to show an operator.
            let field = e
                .path()
                .to_string()
                .replace(".$__serde_spanned_private_value", "");
            let field = if field == "." { String::new() } else { field };
            let inner = e.into_inner();
            ConfigError::Invalid(vec![source.problem(
                inner.span(),
                field,
                inner.message().trim(),
            )])
        })?;
        config.source = source;
        let base = path.parent().unwrap_or(Path::new("")).to_owned();
        config.resolve_paths(&base);
        let problems = config.semantic_problems();
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
        resolve(self.database.get_mut());
        resolve_secret(&mut self.admin.token);
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
