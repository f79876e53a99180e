//! The HTTP plumbing every fake shares: the thread, runtime and listener (plain or TLS) it runs
//! on and its shutdown ([`ServerHandle`]), the request log and stall switch ([`Common`]), the
//! extractor that records each request ([`Recorded`]) and JSON answers ([`json_response`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;

use super::FakeError;

/// One request a fake answered, as the client sent it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RecordedRequest {
    /// HTTP method.
    pub method: String,
    /// Path and query.
    pub path_and_query: String,
    /// Headers, lower-case names; repeated headers are joined with `, `.
    pub headers: BTreeMap<String, String>,
    /// Body, as text (lossy UTF-8).
    pub body: String,
}

impl RecordedRequest {
    /// The header called `name` (case-insensitive), if sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

/// A fake's shared state, which holds its [`Common`] part.
pub(crate) trait FakeState: Send + Sync + 'static {
    /// The request log and the stall switch.
    fn common(&self) -> &Common;
}

/// The request a fake's handler answers, already written to the fake's log. Every handler
/// takes it (as its last argument, since it reads the body), so no request goes unrecorded;
/// one that the routing or an earlier extractor (`Path`, `Query`) rejects is not recorded.
#[derive(Debug)]
pub(crate) struct Recorded {
    pub(crate) method: Method,
    pub(crate) uri: Uri,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl<T: FakeState> FromRequest<Arc<T>> for Recorded {
    type Rejection = Response;

    async fn from_request(request: Request, state: &Arc<T>) -> Result<Self, Response> {
        let (parts, body) = request.into_parts();
        // Through `Bytes`' own extractor, so that axum's body limit applies as before.
        let body = Bytes::from_request(Request::from_parts(parts.clone(), body), state)
            .await
            .map_err(IntoResponse::into_response)?;
        state
            .common()
            .record(&parts.method, &parts.uri, &parts.headers, &body);
        Ok(Self {
            method: parts.method,
            uri: parts.uri,
            headers: parts.headers,
            body,
        })
    }
}

/// What every fake shares: the request log and the "stall" switch.
#[derive(Debug, Default)]
pub(crate) struct Common {
    requests: Mutex<Vec<RecordedRequest>>,
    stalled: AtomicBool,
}

impl Common {
    fn record(&self, method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) {
        let mut map = BTreeMap::<String, String>::new();
        for (name, value) in headers {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            map.entry(name.as_str().to_owned())
                .and_modify(|v| {
                    v.push_str(", ");
                    v.push_str(&value);
                })
                .or_insert(value);
        }
        let request = RecordedRequest {
            method: method.to_string(),
            path_and_query: uri
                .path_and_query()
                .map_or_else(|| uri.path().to_owned(), ToString::to_string),
            headers: map,
            body: String::from_utf8_lossy(body).into_owned(),
        };
        lock(&self.requests).push(request);
    }

    pub(crate) fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.requests).clone()
    }

    pub(crate) fn set_stalled(&self, stalled: bool) {
        self.stalled.store(stalled, Ordering::SeqCst);
    }

    /// Never returns while the fake is stalled: the request hangs until the client gives up.
    pub(crate) async fn maybe_stall(&self) {
        if self.stalled.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
    }
}

/// A JSON answer. `content_type` is what the real server sends (`application/json`, with or
/// without a charset), since vendor clients may look at it.
pub(crate) fn json_response(
    status: StatusCode,
    content_type: &'static str,
    body: &serde_json::Value,
) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, content_type)],
        body.to_string(),
    )
        .into_response()
}

/// Locks a mutex, recovering the data if a handler panicked while holding it.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A running server: its address, and what stops it.
#[derive(Debug)]
pub(crate) struct ServerHandle {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl ServerHandle {
    /// Binds `127.0.0.1:0` and serves `router` on a thread of its own, over TLS when `tls`
    /// is given.
    pub(crate) fn spawn(
        fake: &'static str,
        router: Router,
        tls: Option<Arc<ServerConfig>>,
    ) -> Result<Self, FakeError> {
        let start = |source| FakeError::Start { fake, source };
        let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(start)?;
        listener.set_nonblocking(true).map_err(start)?;
        let addr = listener.local_addr().map_err(start)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(start)?;
        let (shutdown, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("fake-{fake}"))
            .spawn(move || {
                runtime.block_on(async move {
                    let Ok(listener) = TcpListener::from_std(listener) else {
                        return;
                    };
                    let serve = async move {
                        match tls {
                            None => {
                                let _ = axum::serve(listener, router).await;
                            }
                            Some(config) => {
                                let listener = TlsListener {
                                    inner: listener,
                                    acceptor: TlsAcceptor::from(config),
                                };
                                let _ = axum::serve(listener, router).await;
                            }
                        }
                    };
                    tokio::select! {
                        () = serve => {}
                        _ = stopped => {}
                    }
                });
                // Dropping the runtime here cancels every connection still open.
            })
            .map_err(start)?;
        Ok(Self {
            addr,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A TCP listener that completes the TLS handshake before handing the connection to axum.
struct TlsListener {
    inner: TcpListener,
    acceptor: TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, addr)) = self.inner.accept().await else {
                // Out of file descriptors or similar: back off instead of spinning.
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            };
            // A failed handshake (a client that does not trust the test CA) is that
            // client's problem; keep serving the others.
            if let Ok(tls) = self.acceptor.accept(tcp).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}
