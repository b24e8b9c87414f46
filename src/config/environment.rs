//! The checks of what the file refers to: files exist, folders exist, secrets can be read.

use std::path::PathBuf;

use toml::Spanned;

use super::MIN_ADMIN_TOKEN_LEN;
use super::load::ConfigError;
use super::schema::{Config, HttpAuth, Target};
use super::secrets::SecretSource;

impl Config {
    /// Checks what the file refers to: files exist and secrets can be read. Every problem is reported.
    pub fn check_environment(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        let mut file = |path: &Spanned<PathBuf>, field: String| {
            if !path.get_ref().is_file() {
                problems.push(self.source.problem(
                    Some(path.span()),
                    field,
                    format!(
                        "file {} does not exist or is not a file",
                        path.get_ref().display()
                    ),
                ));
            }
        };
        for (i, channel) in self.channels.iter().enumerate() {
            file(&channel.certificate, format!("channels[{i}].certificate"));
            file(&channel.key, format!("channels[{i}].key"));
            for (j, peer) in channel.peers.get_ref().iter().enumerate() {
                for (name, path) in [
                    ("tls_ca", &peer.tls_ca),
                    ("client_certificate", &peer.client_certificate),
                    ("client_key", &peer.client_key),
                ] {
                    if let Some(path) = path {
                        file(path, format!("channels[{i}].peers[{j}].{name}"));
                    }
                }
            }
        }
        if let super::Database::Postgres(postgres) = self.database.get_ref() {
            if let Some(ca) = postgres.tls_ca.as_ref().filter(|ca| !ca.is_file()) {
                problems.push(self.source.problem(
                    Some(self.database.span()),
                    "database.tls_ca",
                    format!("file {} does not exist or is not a file", ca.display()),
                ));
            }
            if let Some(Err(message)) = postgres.password.as_ref().map(SecretSource::read) {
                problems.push(self.source.problem(
                    Some(self.database.span()),
                    "database.password",
                    message,
                ));
            }
        }
        if let Some(functions) = self
            .runtime
            .functions
            .as_ref()
            .filter(|_| self.runtime.enabled)
            && !functions.get_ref().is_dir()
        {
            problems.push(self.source.problem(
                Some(functions.span()),
                "runtime.functions",
                format!("folder {} does not exist", functions.get_ref().display()),
            ));
        }
        if let Some(run_as) = self
            .runtime
            .run_as
            .as_ref()
            .filter(|_| self.runtime.enabled)
            && let Err(error) = run_as.get_ref().resolve()
        {
            problems.push(self.source.problem(
                Some(run_as.span()),
                "runtime.run_as",
                error.to_string(),
            ));
        }
        match self.admin.token.get_ref().read() {
            Err(message) => problems.push(self.source.problem(
                Some(self.admin.token.span()),
                "admin.token",
                message,
            )),
            Ok(token) if token.expose().chars().count() < MIN_ADMIN_TOKEN_LEN => {
                problems.push(self.source.problem(
                    Some(self.admin.token.span()),
                    "admin.token",
                    format!(
                        "the admin token in {} is shorter than {MIN_ADMIN_TOKEN_LEN} characters: use a long random value (e.g. `openssl rand -hex 32`)",
                        self.admin.token.get_ref()
                    ),
                ))
            }
            Ok(_) => {}
        }
        if let Err(problem) = self.admin_tls(std::time::SystemTime::now()) {
            problems.push(problem);
        }
        let mut secret = |source: &Spanned<SecretSource>, field: String| {
            if let Err(message) = source.get_ref().read() {
                problems.push(self.source.problem(Some(source.span()), field, message));
            }
        };
        if let Some(credentials) = self
            .runtime
            .credentials
            .as_ref()
            .filter(|_| self.runtime.enabled)
        {
            secret(
                &credentials.access_key_secret,
                "runtime.credentials.access_key_secret".into(),
            );
        }
        for (i, trigger) in self.triggers.iter().enumerate() {
            match &trigger.target {
                Target::FunctionCompute(fc) => {
                    if let Some(credentials) = &fc.credentials {
                        secret(
                            &credentials.access_key_secret,
                            format!(
                                "triggers[{i}].target.function_compute.credentials.access_key_secret"
                            ),
                        );
                    }
                }
                Target::Http(http) => match &http.auth {
                    HttpAuth::None => {}
                    HttpAuth::Basic { password, .. } => secret(
                        password,
                        format!("triggers[{i}].target.http.auth.basic.password"),
                    ),
                    HttpAuth::Bearer { token } => secret(
                        token,
                        format!("triggers[{i}].target.http.auth.bearer.token"),
                    ),
                },
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }
}
