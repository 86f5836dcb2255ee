//! Accepting and keeping connections, with a bound on each. The relay speaks HTTP/1.1 only (the
//! platform does), so there is no protocol sniffing without a deadline. Every connection lives
//! under a watchdog:
//!
//! - while no request is in flight, a complete request head must arrive within `header_timeout`
//!   of the first byte of it, or of the accept (a silent socket is closed after that long);
//! - a kept-alive connection with no request for `idle_timeout` is closed;
//! - at most `max_connections` are open: beyond that the oldest idle one is closed to make room,
//!   and when every one is busy the new one is refused (closed at once).
//!
//! A request in flight is never cut off by these: its body has its own deadline
//! (`server.body_timeout_ms`), and storing it is never interrupted.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use tower::ServiceExt;

/// Request headers beyond this are refused with 431 before any handler runs (the platform sends a
/// few hundred bytes). Bodies are streamed and limited separately (`server.body_limit_bytes`).
const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Connections the rest of the process keeps for itself below the file limit: database
/// connections, the outbound clients, log and database files.
pub const RESERVED_DESCRIPTORS: u64 = 256;

#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

/// Raises the soft limit of open files to the hard limit and returns the soft limit now in force.
pub fn raise_file_limit() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => Some(limit),
        Err(e) => {
            tracing::warn!(error = %e, "could not raise the open-file limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE).ok().map(|(soft, _)| soft)
        }
    }
}

/// The connection cap in force: the configured one, lowered to fit under the file limit.
pub fn effective_max_connections(configured: usize, file_limit: Option<u64>) -> usize {
    let fits = file_limit.map_or(u64::MAX, |limit| limit.saturating_sub(RESERVED_DESCRIPTORS).max(1));
    let effective = (configured as u64).min(fits) as usize;
    if effective < configured {
        tracing::warn!(configured, effective, "server.max_connections lowered to fit under the open-file limit");
    }
    effective
}

/// One connection's state, shared by its reader, its service and its watchdog.
struct Connection {
    /// Requests being handled now.
    busy: AtomicUsize,
    /// Set when the connection is gone, so that the registry forgets it.
    closed: AtomicBool,
    /// When the connection last did something the watchdog counts (accept, a response, the first
    /// byte of a request head), and whether a head has started since.
    clock: Mutex<Clock>,
    /// Wakes the watchdog: a request began or ended, or the connection is to be closed.
    changed: Notify,
    /// Set to ask the connection to close (eviction).
    evicted: AtomicBool,
}

#[derive(Clone, Copy)]
struct Clock {
    since: Instant,
    head_started: bool,
    served: u64,
}

impl Connection {
    fn new() -> Arc<Connection> {
        Arc::new(Connection {
            busy: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            clock: Mutex::new(Clock { since: Instant::now(), head_started: false, served: 0 }),
            changed: Notify::new(),
            evicted: AtomicBool::new(false),
        })
    }

    fn clock(&self) -> std::sync::MutexGuard<'_, Clock> {
        self.clock.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn is_idle(&self) -> bool {
        self.busy.load(Ordering::SeqCst) == 0
    }

    fn bytes_arrived(&self) {
        if self.is_idle() {
            let mut clock = self.clock();
            if !clock.head_started {
                *clock = Clock { since: Instant::now(), head_started: true, ..*clock };
            }
        }
    }

    fn request_began(&self) {
        self.busy.fetch_add(1, Ordering::SeqCst);
        self.changed.notify_one();
    }

    fn request_ended(&self) {
        {
            let mut clock = self.clock();
            *clock = Clock { since: Instant::now(), head_started: false, served: clock.served + 1 };
        }
        self.busy.fetch_sub(1, Ordering::SeqCst);
        self.changed.notify_one();
    }

    /// When an idle connection must have shown progress by.
    fn deadline(&self, limits: &ConnectionLimits) -> Instant {
        let clock = *self.clock();
        let allowed = if clock.head_started || clock.served == 0 { limits.header_timeout } else { limits.idle_timeout };
        clock.since + allowed
    }

    fn evict(&self) {
        self.evicted.store(true, Ordering::SeqCst);
        self.changed.notify_one();
    }
}

/// The open connections, oldest first, to find one to close when the cap is reached. Admitting
/// a connection is O(1) (accepting must stay fast under a flood of connects): closed ones are
/// counted at once and dropped from the list lazily.
#[derive(Default)]
struct Registry {
    open: Mutex<VecDeque<Arc<Connection>>>,
    count: AtomicUsize,
}

/// Backlog of connections the kernel accepts before the relay does (it caps this at
/// `net.core.somaxconn`): deep enough that a burst of connects does not drop a probe's SYN.
const LISTEN_BACKLOG: u32 = 4096;

/// Binds `addr` with a deep accept backlog.
pub fn bind(addr: std::net::SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// How many of the oldest connections are looked at for an idle one before a new one is refused.
const EVICTION_CANDIDATES: usize = 64;

impl Registry {
    /// Registers a new connection, closing the oldest idle one if the cap is reached. `None`: every
    /// connection is busy; the new one is refused.
    fn admit(&self, limit: usize) -> Option<Arc<Connection>> {
        let mut open = self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if open.len() > 2 * limit {
            // Amortized: happens after as many closes as there are places.
            open.retain(|c| !c.closed.load(Ordering::SeqCst));
        }
        if self.count.load(Ordering::SeqCst) >= limit {
            let mut evicted = false;
            let mut looked = 0;
            while looked < EVICTION_CANDIDATES {
                let Some(oldest) = open.pop_front() else { break };
                if oldest.closed.load(Ordering::SeqCst) {
                    continue;
                }
                looked += 1;
                if oldest.is_idle() && !oldest.evicted.load(Ordering::SeqCst) {
                    oldest.evict();
                    evicted = true;
                    break;
                }
                open.push_back(oldest);
            }
            if !evicted {
                return None;
            }
        }
        let connection = Connection::new();
        open.push_back(connection.clone());
        self.count.fetch_add(1, Ordering::SeqCst);
        Some(connection)
    }

    fn closed(&self, connection: &Connection) {
        connection.closed.store(true, Ordering::SeqCst);
        self.count.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Counts the connection tasks still running, so that shutdown can wait for them.
#[derive(Default)]
struct Running {
    count: AtomicU64,
    drained: Notify,
}

/// Accepts connections until `shutdown`, then lets the open ones finish their requests.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let registry = Arc::new(Registry::default());
    let running = Arc::new(Running::default());
    let (stop, stopping) = watch::channel(false);
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_header_size(MAX_HEADER_BYTES)
        .max_buf_size(MAX_HEADER_BYTES);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _peer)) => stream,
                    Err(e) => {
                        // Out of file descriptors and the like: wait a little rather than spin.
                        tracing::warn!(error = %e, "could not accept a connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Some(connection) = registry.admit(limits.max_connections) else {
                    tracing::warn!(max_connections = limits.max_connections, "every connection is busy: refusing one");
                    drop(stream);
                    continue;
                };
                let _ = stream.set_nodelay(true);
                running.count.fetch_add(1, Ordering::SeqCst);
                let (builder, router, running, stopping) = (builder.clone(), router.clone(), running.clone(), stopping.clone());
                let registry = registry.clone();
                tokio::spawn(async move {
                    drive(builder, stream, router, connection.clone(), limits, stopping).await;
                    registry.closed(&connection);
                    if running.count.fetch_sub(1, Ordering::SeqCst) == 1 {
                        running.drained.notify_waiters();
                    }
                });
            }
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    let _ = stop.send(true);
    while running.count.load(Ordering::SeqCst) > 0 {
        let drained = running.drained.notified();
        if running.count.load(Ordering::SeqCst) == 0 {
            break;
        }
        drained.await;
    }
    Ok(())
}

/// Serves one connection under its watchdog.
async fn drive(
    builder: http1::Builder,
    stream: TcpStream,
    router: Router,
    connection: Arc<Connection>,
    limits: ConnectionLimits,
    mut stopping: watch::Receiver<bool>,
) {
    let service = Tracked { router, connection: connection.clone() };
    let io = TokioIo::new(Watched { inner: stream, connection: connection.clone() });
    let served = builder.serve_connection(io, service);
    tokio::pin!(served);
    let mut closing = false;
    loop {
        let deadline = connection.deadline(&limits);
        tokio::select! {
            result = served.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            _ = tokio::time::sleep_until(deadline), if !closing && connection.is_idle() => {
                // Re-checked: a request may have begun, or a head started, since the deadline was read.
                if connection.is_idle() && Instant::now() >= connection.deadline(&limits) {
                    served.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
            _ = connection.changed.notified(), if !closing => {
                if connection.evicted.load(Ordering::SeqCst) && connection.is_idle() {
                    served.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
            _ = stopping.changed(), if !closing => {
                served.as_mut().graceful_shutdown();
                closing = true;
            }
        }
    }
}

/// The router, with the connection told when each request begins and ends (its response is
/// ready, or it was given up).
#[derive(Clone)]
struct Tracked {
    router: Router,
    connection: Arc<Connection>,
}

impl hyper::service::Service<hyper::Request<hyper::body::Incoming>> for Tracked {
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn call(&self, request: hyper::Request<hyper::body::Incoming>) -> Self::Future {
        self.connection.request_began();
        let ended = RequestEnded(self.connection.clone());
        let router = self.router.clone();
        Box::pin(async move {
            let _ended = ended;
            router.oneshot(request.map(axum::body::Body::new)).await
        })
    }
}

/// Ends the request when dropped: with its response, or when the connection gives it up.
struct RequestEnded(Arc<Connection>);

impl Drop for RequestEnded {
    fn drop(&mut self) {
        self.0.request_ended();
    }
}

/// The socket, noticing when bytes arrive (the start of a request head).
struct Watched {
    inner: TcpStream,
    connection: Arc<Connection>,
}

impl AsyncRead for Watched {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.connection.bytes_arrived();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
