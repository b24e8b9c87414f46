//! WAL checkpoints off the write path, for the SQLite files the daemon and the function runtime write on every
//! event.
//!
//! SQLite's own automatic checkpoint runs inside the commit that takes the WAL past 1,000 pages: that commit
//! copies the WAL into the database and syncs both, so one event in a few hundred waited for the disk (the
//! end-to-end bench saw 15-30 ms). A [`WalCheckpointer`] runs passive checkpoints from its own connection on a
//! thread instead: they never block a writer, and commits only append to the WAL. The writers keep an automatic
//! checkpoint at a far larger size ([`FALLBACK_AUTOCHECKPOINT_PAGES`]) so the WAL stays bounded even if the
//! thread falls behind (a long-running reader holds every checkpoint back).

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;

/// How often the checkpointer copies the WAL into the database.
pub const CHECKPOINT_PERIOD: Duration = Duration::from_millis(250);
/// The writers' own automatic checkpoint, a safety net: 10,000 pages (about 40 MB of WAL).
pub const FALLBACK_AUTOCHECKPOINT_PAGES: i64 = 10_000;

/// Sets a writer connection up for a [`WalCheckpointer`]: WAL journal, and automatic checkpoints only as a
/// fallback.
pub fn configure_writer(connection: &Connection) -> rusqlite::Result<()> {
    connection.pragma_update(None, "journal_mode", "WAL")?;
    connection.pragma_update(None, "wal_autocheckpoint", FALLBACK_AUTOCHECKPOINT_PAGES)
}

/// A thread checkpointing one database file every [`CHECKPOINT_PERIOD`], until dropped.
#[derive(Debug)]
pub struct WalCheckpointer {
    /// Set to true (and notified) to stop the thread.
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl WalCheckpointer {
    /// Starts checkpointing the database at `path` (already in WAL mode) from a connection of its own.
    pub fn start(path: &Path) -> rusqlite::Result<WalCheckpointer> {
        let connection = Connection::open(path)?;
        connection.busy_timeout(Duration::from_secs(5))?;
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let signal = stop.clone();
        let name = path.display().to_string();
        let thread = std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || {
                let (stopped, wake) = &*signal;
                let mut guard = stopped.lock().unwrap_or_else(|p| p.into_inner());
                loop {
                    let (next, _) = wake
                        .wait_timeout(guard, CHECKPOINT_PERIOD)
                        .unwrap_or_else(|p| p.into_inner());
                    guard = next;
                    if *guard {
                        return;
                    }
                    // PASSIVE: copies what no reader still needs, waits for nobody; the next run finishes it.
                    if let Err(error) =
                        connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                    {
                        tracing::warn!(database = %name, %error, "cannot checkpoint the WAL; will try again");
                    }
                }
            })
            .map_err(|e| {
                rusqlite::Error::InvalidPath(format!("cannot start a checkpoint thread: {e}").into())
            })?;
        Ok(WalCheckpointer {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for WalCheckpointer {
    fn drop(&mut self) {
        let (stopped, wake) = &*self.stop;
        *stopped.lock().unwrap_or_else(|p| p.into_inner()) = true;
        wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_leave_the_checkpoint_to_the_thread_which_empties_the_wal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let connection = Connection::open(&path).unwrap();
        configure_writer(&connection).unwrap();
        connection.execute_batch("CREATE TABLE t (x BLOB)").unwrap();
        let checkpointer = WalCheckpointer::start(&path).unwrap();
        for _ in 0..2000 {
            connection
                .execute("INSERT INTO t VALUES (zeroblob(1000))", [])
                .unwrap();
        }
        // More than SQLite's default 1,000 pages were committed; the thread has copied them into the database.
        std::thread::sleep(CHECKPOINT_PERIOD * 3);
        let (log, copied): (i64, i64) = connection
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
                Ok((row.get(1)?, row.get(2)?))
            })
            .unwrap();
        assert_eq!(log, copied, "every WAL frame is in the database");
        let pages: i64 = connection
            .query_row("PRAGMA page_count", [], |row| row.get(0))
            .unwrap();
        assert!(pages > 400, "{pages} pages in the database file");
        drop(checkpointer);
    }
}
