//! Function logs: the bounded tail of one invocation (for `X-Fc-Log-Type: Tail`) and the per-function log file.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;

/// `X-Fc-Log-Result` carries the last 4 KB of an invocation's log.
pub const TAIL_BYTES: usize = 4096;

/// A per-function log file is rotated (to `<name>.log.1`, replacing the previous one) past this size.
pub const ROTATE_BYTES: u64 = 8 * 1024 * 1024;

/// The last [`TAIL_BYTES`] of an invocation's log, kept in bounded memory however much the handler prints.
#[derive(Debug, Default)]
pub struct Tail {
    buf: Vec<u8>,
}

impl Tail {
    /// Appends log output, dropping what can no longer be part of the tail.
    pub fn push(&mut self, bytes: &[u8]) {
        if bytes.len() >= TAIL_BYTES {
            self.buf.clear();
            self.buf
                .extend_from_slice(&bytes[bytes.len() - TAIL_BYTES..]);
            return;
        }
        self.buf.extend_from_slice(bytes);
        if self.buf.len() > 2 * TAIL_BYTES {
            self.buf.drain(..self.buf.len() - TAIL_BYTES);
        }
    }

    /// The tail as text: at most [`TAIL_BYTES`], starting on a character boundary, invalid UTF-8 replaced.
    pub fn text(&self) -> String {
        let mut start = self.buf.len().saturating_sub(TAIL_BYTES);
        while start < self.buf.len() && (self.buf[start] & 0b1100_0000) == 0b1000_0000 {
            start += 1;
        }
        String::from_utf8_lossy(&self.buf[start..]).into_owned()
    }
}

/// The log file of one function (`<data dir>/logs/<service>/<function>.log`), shared by its instances.
#[derive(Debug)]
pub struct FunctionLog {
    /// Where the log goes; `<path>.1` holds the previous rotation.
    path: PathBuf,
    /// Open lazily, and again after a rotation or a write error.
    file: Option<File>,
    /// Bytes in the current file, to know when to rotate without a stat per write.
    written: u64,
}

impl FunctionLog {
    /// A log at `path`; nothing is created until the first write.
    pub fn new(path: PathBuf) -> Self {
        FunctionLog {
            path,
            file: None,
            written: 0,
        }
    }

    /// Appends to the file. A log that cannot be written must not fail the invocation: the error is traced.
    pub fn write(&mut self, bytes: &[u8]) {
        if let Err(error) = self.try_write(bytes) {
            self.file = None;
            tracing::warn!(path = %self.path.display(), %error, "cannot write the function log");
        }
    }

    fn try_write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if self.written >= ROTATE_BYTES {
            self.file = None;
            let mut rotated = self.path.clone().into_os_string();
            rotated.push(".1");
            std::fs::rename(&self.path, rotated)?;
            self.written = 0;
        }
        let file = match &mut self.file {
            Some(file) => file,
            None => {
                if let Some(parent) = self.path.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                let file = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)?;
                self.written = file.metadata()?.len();
                self.file.insert(file)
            }
        };
        file.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_bytes_on_a_character_boundary() {
        let mut tail = Tail::default();
        for _ in 0..3000 {
            tail.push("é".as_bytes());
        }
        tail.push(b"end");
        let text = tail.text();
        assert!(text.len() <= TAIL_BYTES);
        assert!(text.ends_with("éend"));
        assert!(text.starts_with('é'));
    }

    #[test]
    fn a_huge_chunk_keeps_only_its_end() {
        let mut tail = Tail::default();
        tail.push(b"start ");
        tail.push(&vec![b'x'; 10 * TAIL_BYTES]);
        assert_eq!(tail.text(), "x".repeat(TAIL_BYTES));
    }

    #[test]
    fn log_files_rotate() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("svc").join("fn.log");
        let mut log = FunctionLog::new(path.clone());
        let chunk = vec![b'a'; 1024 * 1024];
        for _ in 0..8 {
            log.write(&chunk);
        }
        log.write(b"after rotation\n");
        assert_eq!(
            std::fs::read(&path).expect("current log"),
            b"after rotation\n"
        );
        let rotated = std::fs::metadata(dir.path().join("svc").join("fn.log.1")).expect("rotated");
        assert_eq!(rotated.len(), 8 * 1024 * 1024);
    }
}
