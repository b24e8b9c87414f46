//! Operator-declared functions: `<dir>/<service>/<function>/function.toml` with the function's attributes
//! (Function Compute's names: `runtime`, `handler`, `timeout`, `memorySize`, `environmentVariables`, ...) and
//! the code files next to it. Deployed at start: created when new, updated otherwise.
//!
//! ```toml
//! runtime = "python3.10"
//! handler = "index.handler"
//! timeout = 10
//! [environmentVariables]
//! GREETING = "hello"
//! ```

use std::path::{Path, PathBuf};

use super::Runtime;
use super::RuntimeError;
use super::limits::FunctionAttributes;

/// The attribute file in each function folder (left out of the function's code).
pub const FUNCTION_FILE: &str = "function.toml";

fn error(path: &Path, message: impl Into<String>) -> RuntimeError {
    RuntimeError::FunctionsDir {
        path: path.to_owned(),
        message: message.into(),
    }
}

fn sorted_dirs(dir: &Path) -> Result<Vec<PathBuf>, RuntimeError> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| error(dir, format!("cannot read the folder: {e}")))?;
    let mut dirs = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| error(dir, format!("cannot read the folder: {e}")))?;
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            dirs.push(entry.path());
        }
    }
    dirs.sort();
    Ok(dirs)
}

/// Parses one `function.toml`; errors name the file and the field.
pub fn parse_function_file(path: &Path) -> Result<FunctionAttributes, RuntimeError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| error(path, format!("cannot read: {e}")))?;
    let attributes: FunctionAttributes =
        toml::from_str(&text).map_err(|e| error(path, e.to_string()))?;
    if attributes.function_name.is_some() {
        return Err(error(
            path,
            "field `functionName` is not allowed: the function is named after its folder",
        ));
    }
    if attributes.code.is_some() {
        return Err(error(
            path,
            "field `code` is not allowed: the code is the other files of the folder",
        ));
    }
    Ok(attributes)
}

/// Deploys every function of the folder; returns how many.
pub async fn load(runtime: &Runtime, dir: &Path) -> Result<usize, RuntimeError> {
    let mut count = 0;
    for service_dir in sorted_dirs(dir)? {
        let service = dir_name(&service_dir)?;
        for function_dir in sorted_dirs(&service_dir)? {
            let function = dir_name(&function_dir)?;
            let file = function_dir.join(FUNCTION_FILE);
            if !file.is_file() {
                return Err(error(
                    &file,
                    "missing: every function folder needs a function.toml",
                ));
            }
            let attributes = parse_function_file(&file)?;
            let zip = super::code::zip_folder(&function_dir, &[FUNCTION_FILE])
                .map_err(|e| error(&function_dir, format!("cannot read the code: {e}")))?;
            let info = runtime
                .deploy(&service, &function, attributes, &zip)
                .await
                .map_err(|e| match e {
                    RuntimeError::Deploy { message, .. } => error(&file, message),
                    other => other,
                })?;
            tracing::info!(
                service = %info.service, function = %info.function, created = info.created,
                checksum = %info.code_checksum, "deployed a function from {}", file.display()
            );
            count += 1;
        }
    }
    Ok(count)
}

fn dir_name(dir: &Path) -> Result<String, RuntimeError> {
    dir.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_owned)
        .ok_or_else(|| error(dir, "the folder name is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_files_refuse_unknown_and_reserved_fields_naming_them() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(FUNCTION_FILE);
        std::fs::write(
            &file,
            "runtime = \"python3\"\nhandler = \"index.handler\"\ntimeOut = 3\n",
        )
        .unwrap();
        let message = parse_function_file(&file).unwrap_err().to_string();
        assert!(
            message.contains("function.toml") && message.contains("timeOut"),
            "{message}"
        );
        std::fs::write(&file, "runtime = \"python3\"\nfunctionName = \"x\"\n").unwrap();
        let message = parse_function_file(&file).unwrap_err().to_string();
        assert!(message.contains("functionName"), "{message}");
        std::fs::write(
            &file,
            "runtime = \"nodejs20\"\nhandler = \"index.handler\"\nmemorySize = 256\n[environmentVariables]\nA = \"1\"\n",
        )
        .unwrap();
        let attributes = parse_function_file(&file).unwrap();
        assert_eq!(attributes.memory_size, Some(256));
        assert_eq!(attributes.environment_variables.unwrap()["A"], "1");
    }
}
