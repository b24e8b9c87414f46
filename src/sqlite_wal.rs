//! WAL checkpoints off the write path, and rare, for the SQLite files the daemon and the function runtime write on
//! every event.
//!
//! Two things in a WAL database wait for the disk, and both would otherwise land on an event's commit:
//!
//! - **The checkpoint** copies the WAL into the database and syncs both. SQLite's automatic checkpoint runs it
//!   inside the commit that takes the WAL past 1,000 pages (the end-to-end bench saw 15-30 ms). A
//!   [`WalCheckpointer`] runs it from its own connection on a thread instead, passive: it never blocks a writer.
//! - **The WAL restart.** Once a checkpoint has copied every frame, the next commit starts the WAL over from its
//!   first byte and, even with `synchronous=NORMAL`, syncs the new WAL header before writing its frames (SQLite's
//!   guard against mixing two generations of the log after a power loss). That sync is on the committing writer
//!   and cannot be moved off it. It is usually a fraction of a millisecond, but the disk's flush sometimes takes
//!   tens of milliseconds. Every checkpoint that empties the WAL costs one, so checkpoints run by size, not by the
//!   clock: the writer's commit hook asks for one when the WAL reaches [`CHECKPOINT_PAGES`]. (With a 250 ms timer
//!   the writers synced 26-47 times in a run of the end-to-end bench, 45-77 ms for the slowest; now, after the
//!   backlog, only to restart the WAL right after the thread's checkpoint flushed the disk, in 0.2-0.6 ms. A
//!   larger size restarts less often but each restart waits longer for the disk: see BENCHMARKS.md.)
//!
//! A checkpoint that ends with every frame copied lets the next commit restart the WAL. Under a steady stream of
//! commits, new frames often arrive while it runs: the WAL then keeps growing. The hook asks for the next
//! checkpoint only once another [`CHECKPOINT_PAGES`] have been appended, so the thread never checkpoints (and
//! syncs) once per commit; the thread itself tries again every [`RETRY_PERIOD`] until the WAL is emptied (two
//! checkpoints in a row found nothing new to copy, or it restarted), which happens in the first pause of the
//! stream. Only a stream with no pause long enough for a
//! checkpoint (a backlog pushed as fast as it goes) takes the WAL to the writer's own fallback checkpoint.
//!
//! Invariants: a commit never copies the WAL unless the WAL has reached [`FALLBACK_CHECKPOINT_PAGES`] (the thread
//! fell behind, or a long-running reader holds every checkpoint back), so the WAL stays bounded; a failed
//! checkpoint never fails the commit that asked for it (the commit has happened); the next commit asks again.

use std::os::raw::c_int;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;
use rusqlite::wal::CheckpointMode;

/// The WAL size, in pages, at which the writer asks the thread for a checkpoint: SQLite's own default (about
/// 4 MB of WAL with 4 KiB pages). 4,000 was measured too: the disk then took 17-44 ms, not 8-12, to flush the
/// header of the WAL restarted after such a checkpoint.
pub const CHECKPOINT_PAGES: c_int = 1_000;
/// How soon the thread tries again after a checkpoint that could not copy every frame: a stream of commits that
/// pauses (a paced stream does, between events) then gets its WAL emptied within this time, rather than only
/// once another [`CHECKPOINT_PAGES`] have been appended, which could be the committing writer's own
/// [`FALLBACK_CHECKPOINT_PAGES`] checkpoint. (The same period the thread once checkpointed on: at most four
/// tries a second, each off the write path.)
pub const RETRY_PERIOD: Duration = Duration::from_millis(250);
/// The size at which the committing writer checkpoints itself, a safety net: 10,000 pages (about 40 MB of WAL).
pub const FALLBACK_CHECKPOINT_PAGES: c_int = 10_000;

/// What the writer's hook and the thread share.
#[derive(Debug, Default)]
struct Requests {
    /// A checkpoint was asked for and has not started yet.
    due: bool,
    /// The checkpointer is dropped: the thread ends.
    stop: bool,
    /// Checkpoints the thread has run.
    runs: u64,
}

#[derive(Debug, Default)]
struct Signal {
    requests: Mutex<Requests>,
    wake: Condvar,
}

impl Signal {
    fn requests(&self) -> std::sync::MutexGuard<'_, Requests> {
        self.requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A thread checkpointing one database file whenever its writer's WAL has grown to [`CHECKPOINT_PAGES`], until
/// dropped.
#[derive(Debug)]
pub struct WalCheckpointer {
    signal: Arc<Signal>,
    thread: Option<JoinHandle<()>>,
}

impl WalCheckpointer {
    /// Puts `writer`, a connection to the database at `path`, in WAL mode with its commits asking this
    /// checkpointer for checkpoints, and starts the thread, which checkpoints from a connection of its own.
    /// `writer` should be the database's only writing connection: another writer's commits ask for nothing and
    /// checkpoint themselves at SQLite's default size.
    pub fn start(path: &Path, writer: &mut Connection) -> rusqlite::Result<WalCheckpointer> {
        writer.pragma_update(None, "journal_mode", "WAL")?;
        let connection = Connection::open(path)?;
        connection.busy_timeout(Duration::from_secs(5))?;
        let signal = Arc::new(Signal::default());
        let name = path.display().to_string();
        let hook_signal = signal.clone();
        let hook_name = name.clone();
        // The WAL size at which the hook next asks: a checkpoint that could not empty the WAL (commits kept
        // coming, or a reader kept a snapshot) is not asked for again until as much again has been appended, so
        // a busy writer never has a checkpoint (and its two syncs) per commit.
        let mut next_request = CHECKPOINT_PAGES;
        let mut last_pages = 0;
        // Replaces SQLite's automatic checkpoint, which is itself a WAL hook.
        writer.wal_hook(Some(move |wal: &mut rusqlite::hooks::Wal, pages: c_int| {
            if pages < last_pages {
                // The WAL was restarted: it starts over from its first frame.
                next_request = CHECKPOINT_PAGES;
            }
            last_pages = pages;
            if pages >= FALLBACK_CHECKPOINT_PAGES {
                match wal.checkpoint_v2(CheckpointMode::PASSIVE) {
                    // The thread's checkpoint is running: it does the same work.
                    Err(rusqlite::Error::SqliteFailure(error, _))
                        if error.code == rusqlite::ErrorCode::DatabaseBusy => {}
                    Err(error) => {
                        tracing::warn!(database = %hook_name, %error, pages, "cannot checkpoint the WAL; will try again");
                    }
                    Ok(_) => {}
                }
            } else if pages >= next_request {
                next_request = pages.saturating_add(CHECKPOINT_PAGES);
                let mut requests = hook_signal.requests();
                if !requests.due {
                    requests.due = true;
                    hook_signal.wake.notify_one();
                }
            }
            Ok(())
        }))?;
        let thread_signal = signal.clone();
        let thread = std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || checkpoint_when_asked(&connection, &thread_signal, &name))
            .map_err(|e| {
                rusqlite::Error::InvalidPath(
                    format!("cannot start a checkpoint thread: {e}").into(),
                )
            })?;
        Ok(WalCheckpointer {
            signal,
            thread: Some(thread),
        })
    }

    /// Checkpoints the thread has run (or started) so far.
    pub fn runs(&self) -> u64 {
        self.signal.requests().runs
    }
}

/// The thread's loop: one passive checkpoint per request, until stopped.
fn checkpoint_when_asked(connection: &Connection, signal: &Signal, name: &str) {
    // The WAL may hold frames no checkpoint has copied: try again after RETRY_PERIOD.
    let mut unfinished = false;
    // Frames in the WAL as the last checkpoint saw them.
    let mut last_log = -1;
    let mut requests = signal.requests();
    loop {
        if requests.stop {
            return;
        }
        if !requests.due {
            if unfinished {
                let (next, waited) = signal
                    .wake
                    .wait_timeout(requests, RETRY_PERIOD)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                requests = next;
                requests.due |= waited.timed_out();
            } else {
                requests = signal
                    .wake
                    .wait(requests)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            }
            continue;
        }
        requests.due = false;
        requests.runs += 1;
        drop(requests);
        // PASSIVE: copies what no reader still needs and waits for nobody. Its row is (busy, frames in the WAL,
        // frames copied), the frames counted as the checkpoint began: commits may have appended more while it
        // ran (then SQLite copied what it saw but does not let the WAL restart). So the WAL counts as emptied
        // only once a checkpoint saw every frame copied and no frame added since the one before it, or once
        // the WAL has restarted (fewer frames than a checkpoint is asked for at).
        let counts = connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, i64>(2)?,
            ))
        });
        unfinished = match counts {
            Ok((busy, log, copied)) => {
                let emptied = busy == 0
                    && copied >= log
                    && (log < i64::from(CHECKPOINT_PAGES) || log == last_log);
                last_log = log;
                !emptied
            }
            Err(error) => {
                tracing::warn!(database = %name, %error, "cannot checkpoint the WAL; will try again");
                true
            }
        };
        requests = signal.requests();
    }
}

impl Drop for WalCheckpointer {
    fn drop(&mut self) {
        self.signal.requests().stop = true;
        self.signal.wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database with a table `t`, its writer, and the writer's checkpointer.
    struct Database {
        _dir: tempfile::TempDir,
        path: std::path::PathBuf,
        writer: Connection,
        checkpointer: WalCheckpointer,
    }

    impl Database {
        fn new() -> Database {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("db.sqlite");
            let mut writer = Connection::open(&path).unwrap();
            let checkpointer = WalCheckpointer::start(&path, &mut writer).unwrap();
            writer
                .execute_batch("CREATE TABLE t (x BLOB); INSERT INTO t VALUES (1)")
                .unwrap();
            Database {
                _dir: dir,
                path,
                writer,
                checkpointer,
            }
        }

        /// `rows` commits of one row of `bytes` each.
        fn insert(&self, rows: usize, bytes: i64) {
            for _ in 0..rows {
                self.writer
                    .execute("INSERT INTO t VALUES (zeroblob(?1))", [bytes])
                    .unwrap();
                // Room for the thread to run between commits, as under a paced stream.
                std::thread::yield_now();
            }
        }

        /// Another connection in a read transaction: its snapshot keeps every checkpoint from copying the frames
        /// committed after it, until it is dropped.
        fn snapshot(&self) -> Connection {
            let reader = Connection::open(&self.path).unwrap();
            reader
                .execute_batch("BEGIN; SELECT count(*) FROM t;")
                .unwrap();
            reader
        }

        /// (frames in the WAL, frames copied into the database), from a passive checkpoint of the writer's own.
        fn wal_frames(&self) -> (i64, i64) {
            self.writer
                .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
                    Ok((row.get(1)?, row.get(2)?))
                })
                .unwrap()
        }

        fn count(connection: &Connection, sql: &str) -> i64 {
            connection.query_row(sql, [], |row| row.get(0)).unwrap()
        }
    }

    #[test]
    fn commits_leave_the_checkpoint_to_the_thread_which_copies_the_wal_into_the_database() {
        let db = Database::new();
        db.insert(2000, 1000);
        // More than CHECKPOINT_PAGES were committed: the thread copies them into the database.
        let reader = Connection::open(&db.path).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while Database::count(&reader, "PRAGMA page_count") <= 400 {
            assert!(
                std::time::Instant::now() < deadline,
                "the database file never got the rows"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(db.checkpointer.runs() >= 1);
    }

    #[test]
    fn a_small_wal_is_left_alone_so_the_next_commit_does_not_restart_it() {
        let db = Database::new();
        db.insert(100, 100);
        std::thread::sleep(Duration::from_millis(300));
        // The commits appended to the WAL and nothing copied it: a 250 ms timer would have by now, and the
        // next commit would have synced a new WAL header.
        assert_eq!(db.checkpointer.runs(), 0);
        let (log, _) = db.wal_frames();
        assert!(log >= 100, "{log} frames in the WAL");
        let reopened = Connection::open(&db.path).unwrap();
        assert_eq!(Database::count(&reopened, "SELECT count(*) FROM t"), 101);
    }

    #[test]
    fn a_wal_that_cannot_be_emptied_is_not_checkpointed_once_per_commit() {
        let db = Database::new();
        let snapshot = db.snapshot();
        let started = std::time::Instant::now();
        db.insert(4_000, 100);
        let (log, _) = db.wal_frames();
        assert!(log >= 4_000, "{log} frames in the WAL");
        let runs = db.checkpointer.runs();
        // One per CHECKPOINT_PAGES appended, and the thread's own tries after the first one.
        let most = u64::try_from(log).unwrap() / u64::try_from(CHECKPOINT_PAGES).unwrap()
            + u64::try_from(started.elapsed().as_millis() / RETRY_PERIOD.as_millis()).unwrap()
            + 1;
        assert!(
            (1..=most).contains(&runs),
            "{runs} checkpoints for {log} frames: at most {most}"
        );
        drop(snapshot);
    }

    #[test]
    fn a_checkpoint_cut_short_is_finished_in_the_next_pause_so_the_wal_restarts() {
        let db = Database::new();
        // The reader keeps the checkpoint asked for at CHECKPOINT_PAGES from copying everything.
        let snapshot = db.snapshot();
        db.insert(1_500, 100);
        drop(snapshot);
        // A pause: the thread tries again and copies the rest. (Without it the WAL would wait for 2,500 frames.)
        std::thread::sleep(RETRY_PERIOD * 3);
        db.insert(1, 100);
        let (log, _) = db.wal_frames();
        assert!(log < 100, "{log} frames in the WAL: it was not restarted");
    }

    #[test]
    fn a_reader_holding_every_checkpoint_back_leaves_the_wal_bounded_by_the_fallback() {
        let db = Database::new();
        let snapshot = db.snapshot();
        db.insert(12_000, 100);
        drop(snapshot);
        // The reader is gone: the next commit past the fallback copies the WAL itself, and then it restarts.
        db.insert(10, 100);
        let (log, _) = db.wal_frames();
        assert!(log < 100, "{log} frames in the WAL: it was not restarted");
    }
}
