//! A handler process started by [`super::sandbox::start`]: waited on through its pidfd, killed through it
//! (never by a pid number that may have been reused), reaped exactly once.

use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use tokio::io::unix::AsyncFd;

/// One handler process (the init of its PID namespace when namespaces are used).
#[derive(Debug)]
pub struct HandlerProcess {
    /// Its pid in the runtime's namespace.
    pid: i32,
    /// Readable once the process has exited.
    pidfd: AsyncFd<OwnedFd>,
    /// Its wait status, once reaped.
    status: Option<i32>,
    /// Whether to also signal its process group (no PID namespace: the group is all that holds its children).
    group: bool,
}

impl HandlerProcess {
    /// Takes ownership of a started child. Call inside a tokio runtime.
    pub fn new(pid: i32, pidfd: OwnedFd, group: bool) -> std::io::Result<Self> {
        // SAFETY: the `OwnedFd` is moved into the `AsyncFd` and stays open, unchanged, for its whole life.
        let pidfd =
            unsafe { AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE) }
                .map_err(std::io::Error::from)?;
        Ok(HandlerProcess {
            pid,
            pidfd,
            status: None,
            group,
        })
    }

    /// The process id, for `/proc/<pid>/status`.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Whether it has exited, as far as the reactor has seen its pidfd become readable: no system call while it
    /// runs (this is asked before every invocation on a warm instance). A process that died a moment ago and is not
    /// seen yet fails its invocation as any process dying during one does.
    pub fn has_exited(&mut self) -> bool {
        if self.status.is_some() {
            return true;
        }
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        match self.pidfd.poll_read_ready(&mut context) {
            std::task::Poll::Pending => false,
            std::task::Poll::Ready(_) => self.try_wait().is_some(),
        }
    }

    /// Its wait status if it has exited (reaping it).
    pub fn try_wait(&mut self) -> Option<i32> {
        if self.status.is_none() {
            self.status = reap(self.pid, false);
        }
        self.status
    }

    /// Waits until it exits; cancel-safe.
    ///
    /// Asks the kernel (`waitid`) only once the pidfd says the process ended: an invocation polls this at every
    /// step of its exchange with the handler, which would otherwise cost a system call each time.
    pub async fn wait(&mut self) -> i32 {
        if let Some(status) = self.status {
            return status;
        }
        loop {
            match self.pidfd.readable().await {
                // Readable means exited: it becomes waitable at once, or within moments.
                Ok(_) => loop {
                    if let Some(status) = self.try_wait() {
                        return status;
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                },
                // The reactor cannot watch it: ask the kernel now and then instead.
                Err(_) => {
                    if let Some(status) = self.try_wait() {
                        return status;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }

    /// Sends SIGKILL (to its process group too without namespaces). With a PID namespace, the death of its init
    /// takes every process of the namespace with it.
    pub fn kill(&self) {
        if self.status.is_some() {
            // Reaped: the pid may belong to someone else now. A group outliving its leader keeps the number.
            if self.group {
                // SAFETY: kill has no memory preconditions.
                unsafe { libc::kill(-self.pid, libc::SIGKILL) };
            }
            return;
        }
        // SAFETY: signalling through our own pidfd; kill has no memory preconditions.
        unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.pidfd.get_ref().as_raw_fd() as libc::c_long,
                libc::SIGKILL as libc::c_long,
                std::ptr::null::<libc::siginfo_t>(),
                0 as libc::c_long,
            );
            if self.group {
                libc::kill(-self.pid, libc::SIGKILL);
            }
        }
    }
}

/// `waitpid` for one child; `None` while it runs (or when it is not ours any more).
pub fn reap(pid: i32, block: bool) -> Option<i32> {
    let mut status = 0;
    let flags = if block { 0 } else { libc::WNOHANG };
    loop {
        // SAFETY: waitpid writes the status into our local.
        let result = unsafe { libc::waitpid(pid, &mut status, flags) };
        if result == pid {
            return Some(status);
        }
        if result == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        if result == -1 {
            // ECHILD: already reaped elsewhere; report it as gone.
            return Some(0);
        }
        return None;
    }
}

impl Drop for HandlerProcess {
    fn drop(&mut self) {
        self.kill();
        if self.try_wait().is_none() {
            // Killed but not gone yet (a PID namespace's init waits for its namespace to empty): reap it off
            // this thread, so it leaves no zombie and no caller waits.
            let pid = self.pid;
            let _ = std::thread::Builder::new()
                .name("reap-handler".into())
                .spawn(move || reap(pid, true));
        }
    }
}
