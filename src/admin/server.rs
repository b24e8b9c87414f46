//! Serving the admin API: the accept loop, TLS, and the limits that keep one client from locking the others out.
//!
//! Invariants:
//! - At most [`Limits::max_connections`] connections are open. A connection beyond the cap closes the open
//!   connection that has been idle (no request being handled) the longest, so a flood of idle connections cannot
//!   keep an operator, a probe or a scraper out; when every open connection is handling a request, the new one is
//!   closed at once.
//! - A client has [`Limits::header_read_timeout`] to complete the TLS handshake and send a request's headers,
//!   counted from the moment the connection is ready for a request (accepted, or the previous answer sent): a
//!   connection that sends nothing, or trickles its headers, is closed.
//! - A connection with no request being handled for [`Limits::idle_timeout`] is closed, whatever it is doing; a
//!   request body from which nothing arrives for that long while a handler waits for it fails the request (400).
//! - A request is otherwise never cut short by these limits once its handler runs: re-pushing dead letters can
//!   take minutes.
//! - HTTP/1.1 only (ALPN offers `http/1.1`), request heads at most [`MAX_HEAD_BYTES`] and [`MAX_HEADERS`]
//!   headers; bodies are limited by the routes ([`super::api::MAX_BODY_BYTES`]).
//!
//! The bookkeeping ([`ConnectionTable`]) is a pure structure: which connection to admit, to evict, to expire.

use std::collections::{BTreeSet, HashMap};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config;

/// The largest request head (request line and headers) read: admin requests carry a token and a few headers.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

/// The most headers one request may carry.
pub const MAX_HEADERS: usize = 64;

/// How long the requests in flight may take to finish once the daemon stops, before their connections are dropped.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How often, at most, the log says that the connection cap was reached (with counts since the last time).
const PRESSURE_REPORT_INTERVAL: Duration = Duration::from_secs(60);

/// How the API protects itself from clients; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The most connections open at once.
    pub max_connections: usize,
    /// Time to complete the TLS handshake and a request's headers.
    pub header_read_timeout: Duration,
    /// Time a connection may stay open without a request being handled.
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: config::DEFAULT_ADMIN_MAX_CONNECTIONS as usize,
            header_read_timeout: config::DEFAULT_ADMIN_HEADER_READ_TIMEOUT,
            idle_timeout: config::DEFAULT_ADMIN_IDLE_TIMEOUT,
        }
    }
}

impl Limits {
    /// The limits `[admin]` sets.
    pub fn from_config(admin: &config::Admin) -> Self {
        Limits {
            max_connections: *admin.max_connections.get_ref() as usize,
            header_read_timeout: admin.header_read_timeout.get_ref().0,
            idle_timeout: admin.idle_timeout.get_ref().0,
        }
    }
}

/// How the API is served: its limits, and TLS when configured.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// Connection cap and timeouts.
    pub limits: Limits,
    /// HTTPS with this configuration; plain HTTP when `None` (loopback only).
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// One open connection as the [`ConnectionTable`] sees it.
#[derive(Debug)]
struct Slot {
    /// Requests being handled on it (0 or 1 with HTTP/1.1).
    in_flight: u32,
    /// Since when no request has been handled on it (meaningful while `in_flight` is 0).
    idle_since: Instant,
    /// Cancelled to close it.
    close: CancellationToken,
}

/// What [`ConnectionTable::admit`] decided for a new connection.
#[derive(Debug)]
pub enum Admission {
    /// Serve it.
    Admitted {
        /// The connection's id in the table, for [`ConnectionTable::begin`], `end` and `remove`.
        id: u64,
        /// Cancelled when the table evicts or expires the connection: its task then closes it.
        close: CancellationToken,
        /// The connection closed to make room, if any: the caller cancels it.
        evicted: Option<CancellationToken>,
    },
    /// Every open connection is handling a request: close the new one.
    Refused,
}

/// The open connections: who is idle since when. Pure bookkeeping, no I/O.
///
/// Idle connections are also kept ordered by the time they became idle, so finding the one idle the longest (at
/// every admission into a full table, under a flood) and the ones past the idle timeout costs a logarithm, not a
/// scan of every connection.
#[derive(Debug)]
pub struct ConnectionTable {
    /// The cap.
    max: usize,
    /// The next connection's id.
    next_id: u64,
    /// Open connections by id.
    slots: HashMap<u64, Slot>,
    /// The idle connections (no request in flight) as `(idle since, id)`, oldest first.
    idle: BTreeSet<(Instant, u64)>,
}

impl ConnectionTable {
    /// An empty table admitting at most `max` connections (at least 1).
    pub fn new(max: usize) -> Self {
        ConnectionTable {
            max: max.max(1),
            next_id: 0,
            slots: HashMap::new(),
            idle: BTreeSet::new(),
        }
    }

    /// Open connections.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether no connection is open.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Admits a new connection at `now`, evicting the connection idle the longest when the table is full.
    pub fn admit(&mut self, now: Instant) -> Admission {
        let mut evicted = None;
        if self.slots.len() >= self.max {
            match self.idle.pop_first() {
                Some((_, id)) => evicted = self.slots.remove(&id).map(|slot| slot.close),
                None => return Admission::Refused,
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        let close = CancellationToken::new();
        self.slots.insert(
            id,
            Slot {
                in_flight: 0,
                idle_since: now,
                close: close.clone(),
            },
        );
        self.idle.insert((now, id));
        Admission::Admitted { id, close, evicted }
    }

    /// A request started on connection `id`.
    pub fn begin(&mut self, id: u64) {
        if let Some(slot) = self.slots.get_mut(&id) {
            if slot.in_flight == 0 {
                self.idle.remove(&(slot.idle_since, id));
            }
            slot.in_flight += 1;
        }
    }

    /// A request on connection `id` finished at `now`.
    pub fn end(&mut self, id: u64, now: Instant) {
        if let Some(slot) = self.slots.get_mut(&id)
            && slot.in_flight > 0
        {
            slot.in_flight -= 1;
            if slot.in_flight == 0 {
                slot.idle_since = now;
                self.idle.insert((now, id));
            }
        }
    }

    /// Connection `id` is gone.
    pub fn remove(&mut self, id: u64) {
        if let Some(slot) = self.slots.remove(&id)
            && slot.in_flight == 0
        {
            self.idle.remove(&(slot.idle_since, id));
        }
    }

    /// Removes every connection and returns their close tokens (the daemon stops).
    pub fn close_all(&mut self) -> Vec<CancellationToken> {
        self.idle.clear();
        std::mem::take(&mut self.slots)
            .into_values()
            .map(|slot| slot.close)
            .collect()
    }

    /// Removes the connections idle for at least `idle_timeout` at `now` and returns their close tokens.
    pub fn expire(&mut self, now: Instant, idle_timeout: Duration) -> Vec<CancellationToken> {
        let mut expired = Vec::new();
        while let Some(&(since, id)) = self.idle.first() {
            if now.saturating_duration_since(since) < idle_timeout {
                break;
            }
            self.idle.pop_first();
            if let Some(slot) = self.slots.remove(&id) {
                expired.push(slot.close);
            }
        }
        expired
    }
}

/// The table shared by the accept loop, the connections and the idle sweeper.
#[derive(Debug, Clone)]
struct Connections(Arc<Mutex<ConnectionTable>>);

impl Connections {
    fn lock(&self) -> std::sync::MutexGuard<'_, ConnectionTable> {
        // The table holds no invariant a panic could break half-way: keep serving.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Removes its connection from the table when the connection's task ends, however it ends.
struct Registered {
    connections: Connections,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.connections.lock().remove(self.id);
    }
}

/// Marks a request in flight on its connection until dropped (when the handler's answer is ready).
struct InFlight {
    connections: Connections,
    id: u64,
}

impl InFlight {
    fn start(connections: &Connections, id: u64) -> Self {
        connections.lock().begin(id);
        InFlight {
            connections: connections.clone(),
            id,
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.connections.lock().end(self.id, Instant::now());
    }
}

/// Counts what the cap did, for a periodic warning instead of one line per connection.
#[derive(Debug, Default)]
struct Pressure {
    evicted: u64,
    refused: u64,
    last_report: Option<Instant>,
}

impl Pressure {
    fn note(&mut self, evicted: bool, max: usize) {
        if evicted {
            self.evicted += 1;
        } else {
            self.refused += 1;
        }
        let now = Instant::now();
        if self
            .last_report
            .is_none_or(|last| now.duration_since(last) >= PRESSURE_REPORT_INTERVAL)
        {
            tracing::warn!(
                max_connections = max,
                closed_idle = self.evicted,
                refused = self.refused,
                "admin API at its connection cap: closing the connections idle the longest (a client may be holding \
                 connections open; see [admin] max_connections)"
            );
            *self = Pressure {
                last_report: Some(now),
                ..Pressure::default()
            };
        }
    }
}

/// Serves `router` on `listener` until `shutdown`, then lets the requests in flight finish (at most
/// [`SHUTDOWN_GRACE`]).
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    options: ServeOptions,
    shutdown: CancellationToken,
) {
    let limits = options.limits;
    raise_descriptor_limit(limits.max_connections);
    let connections = Connections(Arc::new(Mutex::new(ConnectionTable::new(
        limits.max_connections,
    ))));
    let acceptor = options.tls.map(TlsAcceptor::from);
    let tracker = TaskTracker::new();
    tracker.spawn(sweep_idle(
        connections.clone(),
        limits.idle_timeout,
        shutdown.clone(),
    ));
    let mut pressure = Pressure::default();
    let mut accept_errors = 0u32;
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => {
                    accept_errors = 0;
                    accepted
                }
                Err(error) => {
                    // Out of descriptors (EMFILE) or a connection gone before it was accepted: wait a little
                    // rather than spin, and keep serving.
                    accept_errors = accept_errors.saturating_add(1);
                    if accept_errors == 1 || accept_errors.is_power_of_two() {
                        tracing::warn!(%error, times = accept_errors, "admin API cannot accept a connection");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let admission = connections.lock().admit(Instant::now());
        let (id, close) = match admission {
            Admission::Admitted { id, close, evicted } => {
                if let Some(evicted) = evicted {
                    evicted.cancel();
                    pressure.note(true, limits.max_connections);
                }
                (id, close)
            }
            Admission::Refused => {
                pressure.note(false, limits.max_connections);
                drop(stream);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let registered = Registered {
            connections: connections.clone(),
            id,
        };
        let connection = Connection {
            router: router.clone(),
            peer,
            limits,
            close,
            shutdown: shutdown.clone(),
            registered,
        };
        match &acceptor {
            None => tracker.spawn(connection.serve(stream)),
            Some(acceptor) => tracker.spawn(connection.serve_tls(acceptor.clone(), stream)),
        };
    }
    drop(listener);
    tracker.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            "admin API: requests still running after {SHUTDOWN_GRACE:?}; closing their connections"
        );
        for close in connections.lock().close_all() {
            close.cancel();
        }
        tracker.wait().await;
    }
}

/// Closes the connections idle past `idle_timeout`, checking a few times per timeout.
async fn sweep_idle(connections: Connections, idle_timeout: Duration, shutdown: CancellationToken) {
    let tick = (idle_timeout / 4).clamp(Duration::from_millis(25), Duration::from_secs(1));
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = interval.tick() => {}
        }
        let expired = connections.lock().expire(Instant::now(), idle_timeout);
        if !expired.is_empty() {
            tracing::debug!(count = expired.len(), "admin API: closing idle connections");
        }
        for close in expired {
            close.cancel();
        }
    }
}

/// One accepted connection and what it needs to be served.
struct Connection {
    router: Router,
    peer: SocketAddr,
    limits: Limits,
    /// Cancelled when the table evicts or expires the connection.
    close: CancellationToken,
    shutdown: CancellationToken,
    /// Keeps the connection in the table until this task ends.
    registered: Registered,
}

impl Connection {
    /// Completes the TLS handshake within the header-read timeout, then serves HTTP over it.
    async fn serve_tls(self, acceptor: TlsAcceptor, stream: tokio::net::TcpStream) {
        let handshake =
            tokio::time::timeout(self.limits.header_read_timeout, acceptor.accept(stream));
        let result = tokio::select! {
            result = handshake => result,
            _ = self.close.cancelled() => return,
            _ = self.shutdown.cancelled() => return,
        };
        match result {
            Ok(Ok(stream)) => self.serve(stream).await,
            Ok(Err(error)) => {
                tracing::debug!(peer = %self.peer, %error, "admin API: TLS handshake failed");
            }
            Err(_) => {
                tracing::debug!(peer = %self.peer, "admin API: TLS handshake not completed in time");
            }
        }
    }

    /// Serves HTTP/1.1 until the client leaves, a limit closes the connection, or the daemon stops.
    async fn serve<I>(self, io: I)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Connection {
            router,
            peer,
            limits,
            close,
            shutdown,
            registered,
        } = self;
        let connections = registered.connections.clone();
        let id = registered.id;
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let in_flight = InFlight::start(&connections, id);
            let mut request = request.map(|body| StallLimitedBody::new(body, limits.idle_timeout));
            request.extensions_mut().insert(ConnectInfo(peer));
            let mut router = router.clone();
            async move {
                let response = tower_service::Service::call(&mut router, request).await;
                drop(in_flight);
                Ok::<_, Infallible>(response.unwrap_or_else(|never| match never {}))
            }
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_buf_size(MAX_HEAD_BYTES)
            .max_headers(MAX_HEADERS)
            .keep_alive(true);
        let connection = builder.serve_connection(TokioIo::new(io), service);
        tokio::pin!(connection);
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%peer, %error, "admin API connection ended");
                }
            }
            _ = close.cancelled() => {}
            _ = shutdown.cancelled() => {
                connection.as_mut().graceful_shutdown();
                tokio::select! {
                    _ = connection.as_mut() => {}
                    _ = close.cancelled() => {}
                }
            }
        }
        drop(registered);
    }
}

/// Why a request body failed: the client stopped sending it.
#[derive(Debug, thiserror::Error)]
#[error("the client sent nothing more of the request body for {} ms", .0.as_millis())]
struct BodyStalled(Duration);

/// A request body that fails when nothing of it arrives for `limit` while a handler waits for it: a connection
/// whose request is being handled is not idle, so this is what bounds a client that stops mid-body.
struct StallLimitedBody {
    inner: Incoming,
    limit: Duration,
    /// Armed while the handler waits for the next frame.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl StallLimitedBody {
    fn new(inner: Incoming, limit: Duration) -> Self {
        StallLimitedBody {
            inner,
            limit,
            deadline: None,
        }
    }
}

impl http_body::Body for StallLimitedBody {
    type Data = bytes::Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.deadline = None;
                Poll::Ready(frame.map(|frame| frame.map_err(Into::into)))
            }
            Poll::Pending => {
                let limit = this.limit;
                let deadline = this
                    .deadline
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                match deadline.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyStalled(limit))))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Raises this process's soft limit on open files towards its hard limit when the cap needs more than the soft
/// limit allows (each connection holds a descriptor; the daemon needs others for peers, the database and the
/// runtime), and warns when even the hard limit is too low.
fn raise_descriptor_limit(max_connections: usize) {
    #[cfg(unix)]
    {
        /// Descriptors kept for everything but admin connections.
        const RESERVE: libc::rlim_t = 256;
        let wanted = max_connections as libc::rlim_t + RESERVE;
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the struct we own.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
            return;
        }
        let current = limit.rlim_cur;
        if limit.rlim_cur == libc::RLIM_INFINITY || current >= wanted {
            return;
        }
        let raised = if limit.rlim_max == libc::RLIM_INFINITY {
            wanted
        } else {
            wanted.min(limit.rlim_max)
        };
        if raised > current {
            let new = libc::rlimit {
                rlim_cur: raised,
                rlim_max: limit.rlim_max,
            };
            // SAFETY: setrlimit reads the struct we own; raising the soft limit up to the hard one is allowed.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) } == 0 {
                tracing::debug!(
                    from = current,
                    to = raised,
                    "raised the open-file limit for the admin API"
                );
                if raised >= wanted {
                    return;
                }
            }
        }
        tracing::warn!(
            limit = raised.max(current),
            max_connections,
            "the open-file limit is low for [admin] max_connections: raise it (ulimit -n, LimitNOFILE=) or lower \
             max_connections"
        );
    }
    #[cfg(not(unix))]
    let _ = max_connections;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admitted(admission: Admission) -> (u64, Option<CancellationToken>) {
        match admission {
            Admission::Admitted { id, evicted, .. } => (id, evicted),
            Admission::Refused => panic!("refused"),
        }
    }

    #[test]
    fn below_the_cap_every_connection_is_admitted() {
        let mut table = ConnectionTable::new(3);
        let now = Instant::now();
        for expected in 0..3 {
            let (id, evicted) = admitted(table.admit(now));
            assert_eq!(id, expected);
            assert!(evicted.is_none());
        }
        assert_eq!(table.len(), 3);
    }

    #[test]
    fn at_the_cap_the_connection_idle_the_longest_makes_room() {
        let mut table = ConnectionTable::new(2);
        let start = Instant::now();
        let (first, _) = admitted(table.admit(start));
        let (second, _) = admitted(table.admit(start + Duration::from_secs(1)));
        // The first one answered a request later than the second was opened: the second is idle longer.
        table.begin(first);
        table.end(first, start + Duration::from_secs(2));
        let (third, evicted) = admitted(table.admit(start + Duration::from_secs(3)));
        let evicted = evicted.expect("one connection evicted");
        assert!(
            !evicted.is_cancelled(),
            "the table leaves closing to the caller"
        );
        assert_eq!(table.len(), 2);
        table.remove(second);
        assert_eq!(
            table.len(),
            2,
            "the evicted connection was already gone from the table"
        );
        assert!(third > first);
    }

    #[test]
    fn connections_handling_a_request_are_never_evicted() {
        let mut table = ConnectionTable::new(2);
        let now = Instant::now();
        let (a, _) = admitted(table.admit(now));
        let (b, _) = admitted(table.admit(now));
        table.begin(a);
        table.begin(b);
        assert!(matches!(table.admit(now), Admission::Refused));
        table.end(b, now + Duration::from_millis(1));
        let (_, evicted) = admitted(table.admit(now + Duration::from_millis(2)));
        assert!(evicted.is_some(), "b is idle again, so it makes room");
    }

    #[test]
    fn idle_connections_expire_and_busy_ones_do_not() {
        let mut table = ConnectionTable::new(10);
        let start = Instant::now();
        let at = |seconds: u64| start + Duration::from_secs(seconds);
        let (_idle, _) = admitted(table.admit(start));
        let (busy, _) = admitted(table.admit(start));
        let (_recent, _) = admitted(table.admit(at(50)));
        table.begin(busy);
        assert_eq!(
            table.expire(at(60), Duration::from_secs(60)).len(),
            1,
            "only `idle`"
        );
        assert_eq!(table.len(), 2);
        table.end(busy, at(61));
        assert_eq!(
            table.expire(at(111), Duration::from_secs(60)).len(),
            1,
            "`recent` (idle 61 s); `busy` has been idle for 50 s only"
        );
        assert_eq!(
            table.expire(at(121), Duration::from_secs(60)).len(),
            1,
            "now `busy`"
        );
        assert!(table.is_empty());
    }

    #[test]
    fn a_closed_connection_leaves_no_trace() {
        let mut table = ConnectionTable::new(2);
        let now = Instant::now();
        let (a, _) = admitted(table.admit(now));
        let (b, _) = admitted(table.admit(now));
        table.begin(b);
        table.remove(a);
        table.remove(b);
        assert!(table.is_empty());
        // Nothing idle is left to evict or expire: a stale entry would evict a connection that is gone.
        assert!(
            table
                .expire(now + Duration::from_secs(3600), Duration::ZERO)
                .is_empty()
        );
        let (_, evicted) = admitted(table.admit(now));
        assert!(evicted.is_none());
        assert_eq!(table.close_all().len(), 1);
    }
}
