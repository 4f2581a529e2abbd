//! The connection loop: accepts while fewer than `[api] max_connections`
//! are open, serves each over hyper's HTTP/1 connection with a timer, and
//! bounds what a client can hold:
//!
//! - the headers of a request must arrive within `header_read_timeout`,
//!   counted from when the server waits for them (a kept-alive connection's
//!   wait for its next request included): hyper's own header-read timeout;
//! - a request, its body and the server's work, gets `request_timeout`,
//!   then 503;
//! - a connection on which no byte moves for `idle_timeout` while no
//!   request is being worked on (a client that stops reading its answer) is
//!   closed;
//! - past the cap, connections wait in the kernel's backlog, so the server
//!   never runs out of descriptors (the cap is lowered to fit the
//!   descriptor limit it runs under).
//!
//! `axum::serve` has none of these (no header-read timeout, no cap, an
//! unbounded graceful shutdown): 1,100 connections that never finished
//! their headers took every descriptor and the server answered nobody.
//!
//! Stopping: no new connection is taken, idle ones close, the requests in
//! progress get `shutdown_timeout`, then the rest are dropped.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::{header, HeaderValue, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use libdiycloud::config::ApiConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower_service::Service;

use crate::error::ApiError;

/// Descriptors kept for everything but connections: the database's files,
/// the listening socket, D-Bus, NVML, the blocking pool's work.
const RESERVED_FDS: u64 = 256;

/// How long to wait before accepting again after the process or the system
/// ran out of descriptors (accepting at once would only fail again).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub header_read: Duration,
    pub request: Duration,
    pub idle: Duration,
    pub max_connections: usize,
    pub shutdown: Duration,
}

impl Limits {
    /// The `[api]` limits, the connection cap lowered to fit under the
    /// process's descriptor limit (with a line on stderr when it is).
    pub fn of(api: &ApiConfig) -> Self {
        let wanted = usize::try_from(api.max_connections).unwrap_or(usize::MAX);
        let max_connections = match fd_limit() {
            Some(fds) => {
                let fit = usize::try_from(fds.saturating_sub(RESERVED_FDS))
                    .unwrap_or(usize::MAX)
                    .max(1);
                if fit < wanted {
                    tracing::warn!(
                        "[api] max_connections lowered from {wanted} to {fit}: \
                         the descriptor limit is {fds} (LimitNOFILE in the unit, ulimit -n)"
                    );
                }
                wanted.min(fit)
            }
            None => wanted,
        };
        Self {
            header_read: Duration::from_secs(api.header_read_timeout),
            request: Duration::from_secs(api.request_timeout),
            idle: Duration::from_secs(api.idle_timeout),
            max_connections,
            shutdown: Duration::from_secs(api.shutdown_timeout),
        }
    }
}

/// The soft limit on open descriptors, where it is known and finite.
fn fd_limit() -> Option<u64> {
    use nix::sys::resource::{getrlimit, Resource, RLIM_INFINITY};
    let (soft, _) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    (soft != RLIM_INFINITY).then_some(soft)
}

pub enum Listener {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener),
}

enum Stream {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

impl Listener {
    /// The next connection and its peer's address (none on the unix
    /// socket).
    async fn accept(&self) -> std::io::Result<(Stream, Option<SocketAddr>)> {
        match self {
            Listener::Tcp(listener) => {
                let (stream, peer) = listener.accept().await?;
                // Small answers go out at once (as axum::serve does).
                let _ = stream.set_nodelay(true);
                Ok((Stream::Tcp(stream), Some(peer)))
            }
            Listener::Unix(listener) => {
                let (stream, _) = listener.accept().await?;
                Ok((Stream::Unix(stream), None))
            }
        }
    }
}

/// Serves `app` on `listener` within `limits` until `stop` completes and
/// the connections are done (or `limits.shutdown` has passed).
pub async fn serve(
    listener: Listener,
    app: Router,
    limits: Limits,
    stop: impl std::future::Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (closing, close) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(stop);
    loop {
        while connections.try_join_next().is_some() {}
        let slot = tokio::select! {
            () = &mut stop => break,
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            () = &mut stop => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                connections.spawn(connection(
                    stream,
                    peer,
                    app.clone(),
                    limits,
                    close.clone(),
                    slot,
                ));
            }
            Err(e) if out_of_descriptors(&e) => {
                tracing::warn!("accept: {e}; trying again shortly");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
            // The peer gave up before it was accepted, and the like.
            Err(_) => {}
        }
    }
    drop(listener);
    let _ = closing.send(true);
    let drained = tokio::time::timeout(limits.shutdown, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            "{} connection(s) still busy {} s after the stop: closing them",
            connections.len(),
            limits.shutdown.as_secs()
        );
        connections.abort_all();
    }
}

fn out_of_descriptors(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(nix::libc::EMFILE | nix::libc::ENFILE | nix::libc::ENOBUFS | nix::libc::ENOMEM)
    )
}

/// One connection, from its first byte until it closes; `_slot` is its
/// place under the cap.
async fn connection(
    stream: Stream,
    peer: Option<SocketAddr>,
    app: Router,
    limits: Limits,
    mut close: watch::Receiver<bool>,
    _slot: OwnedSemaphorePermit,
) {
    let activity = Arc::new(Activity::new());
    let service = {
        let activity = Arc::clone(&activity);
        hyper::service::service_fn(move |mut request: Request<Incoming>| {
            if let Some(peer) = peer {
                request.extensions_mut().insert(ConnectInfo(peer));
            }
            let working = activity.working();
            let mut app = app.clone();
            async move {
                let _working = working;
                match tokio::time::timeout(limits.request, app.call(request)).await {
                    Ok(answered) => answered,
                    Err(_) => Ok::<_, Infallible>(timed_out(limits.request)),
                }
            }
        })
    };
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read);
    let watched = Watched {
        stream,
        activity: Arc::clone(&activity),
    };
    let served = http.serve_connection(TokioIo::new(watched), service);
    tokio::pin!(served);
    let mut stopping = false;
    loop {
        tokio::select! {
            // Its end, an error (a header that came too late) included:
            // nothing to tell anyone.
            _ = served.as_mut() => return,
            changed = close.changed(), if !stopping => {
                stopping = true;
                if changed.is_ok() {
                    served.as_mut().graceful_shutdown();
                }
            }
            () = activity.stalled(limits.idle) => return,
        }
    }
}

/// 503 for a request that ran out of time.
fn timed_out(limit: Duration) -> Response {
    let mut response = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        format!(
            "the request took longer than {} s ([api] request_timeout)",
            limit.as_secs()
        ),
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// When a byte last moved on a connection, and how many of its requests
/// the server is working on.
struct Activity {
    start: Instant,
    /// Milliseconds after `start`.
    last: AtomicU64,
    working: AtomicUsize,
}

impl Activity {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            last: AtomicU64::new(0),
            working: AtomicUsize::new(0),
        }
    }

    fn moved(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, Ordering::Relaxed);
    }

    fn working(self: &Arc<Self>) -> Working {
        self.working.fetch_add(1, Ordering::AcqRel);
        Working(Arc::clone(self))
    }

    /// Completes once nothing has moved for `idle` while no request was
    /// being worked on.
    async fn stalled(&self, idle: Duration) {
        loop {
            let last = self.start + Duration::from_millis(self.last.load(Ordering::Relaxed));
            let deadline = last + idle;
            let now = Instant::now();
            if now >= deadline {
                if self.working.load(Ordering::Acquire) == 0 {
                    return;
                }
                // Its request's own timeout bounds it meanwhile.
                tokio::time::sleep(idle).await;
            } else {
                tokio::time::sleep_until(deadline).await;
            }
        }
    }
}

/// A request being worked on; its end counts as activity.
struct Working(Arc<Activity>);

impl Drop for Working {
    fn drop(&mut self) {
        self.0.moved();
        self.0.working.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A stream that notes each time a byte moves.
struct Watched {
    stream: Stream,
    activity: Arc<Activity>,
}

impl Watched {
    fn note<T>(&self, polled: Poll<std::io::Result<T>>, moved: bool) -> Poll<std::io::Result<T>> {
        if moved && matches!(polled, Poll::Ready(Ok(_))) {
            self.activity.moved();
        }
        polled
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = match &mut this.stream {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_read(cx, buf),
        };
        let moved = buf.filled().len() > before;
        this.note(polled, moved)
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = match &mut this.stream {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, data),
            Stream::Unix(s) => Pin::new(s).poll_write(cx, data),
        };
        let moved = matches!(polled, Poll::Ready(Ok(n)) if n > 0);
        this.note(polled, moved)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = match &mut this.stream {
            Stream::Tcp(s) => Pin::new(s).poll_write_vectored(cx, data),
            Stream::Unix(s) => Pin::new(s).poll_write_vectored(cx, data),
        };
        let moved = matches!(polled, Poll::Ready(Ok(n)) if n > 0);
        this.note(polled, moved)
    }

    fn is_write_vectored(&self) -> bool {
        match &self.stream {
            Stream::Tcp(s) => s.is_write_vectored(),
            Stream::Unix(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.get_mut().stream {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.get_mut().stream {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
