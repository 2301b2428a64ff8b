//! Serving the nodes: listeners, HTTP/1 connections, and the faults that act on the wire
//! (`die`, `hang`, `slow`, and the broken bodies).
//!
//! Each listener is one task that accepts and also drives all of its connections (a
//! `FuturesUnordered`), so aborting that task closes the port and every open connection
//! at once: that is how `die` is immediate. Idle nodes have no timers and no tasks that
//! wake up.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use hyper::body::Incoming;
use hyper::header::{CONNECTION, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use jiff::Timestamp;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::body::SimBody;
use super::cosmos::{self, PeerPool};
use super::duty;
use super::model::{Fault, FaultSet, NodeState, Params, SimChain};
use super::view::{Identity, View};
use super::{ethereum, jsonrpc, substrate};

/// Largest accepted request body (real nodes refuse more, too).
const MAX_REQUEST_BYTES: usize = 1024 * 1024;
/// Pending connections per listener.
const BACKLOG: u32 = 1024;
/// File descriptors kept free for the admin server, the ready file and logging.
const RESERVED_FDS: usize = 256;

/// Which of a node's ports a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    /// JSON-RPC (and health) port.
    Rpc,
    /// Prometheus port.
    Metrics,
}

/// One simulated node.
#[derive(Debug)]
pub struct Node {
    /// Who it is.
    pub id: Identity,
    /// Its height parameters.
    pub params: Params,
    /// Its faults and frozen heights.
    pub state: Mutex<NodeState>,
    /// Bumped when `hang` is cleared, to end the requests it holds.
    pub release: watch::Sender<u64>,
    /// The accept tasks of its listeners (empty while dead).
    pub tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Node {
    /// A healthy node that is not yet listening.
    pub fn new(id: Identity, params: Params) -> Node {
        Node {
            id,
            params,
            state: Mutex::new(NodeState::new()),
            release: watch::Sender::new(0),
            tasks: Mutex::new(Vec::new()),
        }
    }

    /// The node's state. A panic elsewhere cannot leave it half-written (every change
    /// is one method call on plain data), so a poisoned lock is still usable.
    pub fn state(&self) -> MutexGuard<'_, NodeState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The address of `port`.
    pub fn addr(&self, port: Port) -> SocketAddr {
        let p = match port {
            Port::Rpc => self.id.chain.rpc_port(),
            Port::Metrics => self.id.chain.metrics_port(),
        };
        SocketAddr::from((self.id.ip, p))
    }
}

/// Everything the request handlers share.
#[derive(Debug)]
pub struct Shared {
    /// The fleet, by index.
    pub nodes: Vec<Node>,
    /// Monotonic time of `e = 0`.
    pub start: Instant,
    /// Wall-clock time of `e = 0`.
    pub start_wall: Timestamp,
    /// Whether nodes have a metrics port.
    pub metrics: bool,
    /// CometBFT `/net_info` peers.
    pub pool: PeerPool,
    /// Who signs and authors which block, per chain.
    pub duty: duty::Chains,
    /// Open connections across the fleet.
    pub conns: AtomicUsize,
    /// Above this many open connections, replies close their connection, so idle
    /// keep-alive connections cannot exhaust the open-file limit.
    pub close_above: usize,
    /// Second (since the start, plus one) of the last accept-failure warning.
    pub accept_warned: AtomicU64,
}

impl Shared {
    /// Nanoseconds since the start.
    pub fn e(&self) -> u128 {
        self.start.elapsed().as_nanos()
    }

    /// Runs `f` on the current view of `node`.
    pub fn with_view<T>(&self, node: &Node, f: impl FnOnce(&View<'_>) -> T) -> T {
        let (facts, duty) = {
            let st = node.state();
            (st.facts(&node.params, self.e()), st.duty())
        };
        f(&View {
            node: &node.id,
            facts,
            params: node.params,
            start_wall: self.start_wall,
            duty,
        })
    }

    /// Records in its chain's duty timeline what node `index`'s validator does now (after
    /// its faults changed).
    pub fn sync_duty(&self, index: usize) {
        let Some(node) = self.nodes.get(index) else {
            return;
        };
        let duty = node.state().duty();
        self.duty.update(index, node.id.chain, duty, self.e());
    }

    /// The connection budget for `listeners` listening sockets under `fd_limit`.
    pub fn connection_budget(fd_limit: u64, listeners: usize) -> usize {
        usize::try_from(fd_limit)
            .unwrap_or(usize::MAX)
            .saturating_sub(listeners + RESERVED_FDS)
    }
}

/// Opens a listening socket on `addr` (address reuse on, so a node that died can
/// rebind while its old connections sit in TIME_WAIT).
pub fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// Opens every port of `node`, or none: on failure the ones already open are closed.
pub fn bind(node: &Node, metrics: bool) -> io::Result<Vec<(Port, TcpListener)>> {
    let ports: &[Port] = if metrics {
        &[Port::Rpc, Port::Metrics]
    } else {
        &[Port::Rpc]
    };
    ports
        .iter()
        .map(|&p| {
            let addr = node.addr(p);
            listen(addr)
                .map(|l| (p, l))
                .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))
        })
        .collect()
}

/// Starts serving `listeners` for node `index`.
pub fn spawn(shared: &Arc<Shared>, index: usize, listeners: Vec<(Port, TcpListener)>) {
    let Some(node) = shared.nodes.get(index) else {
        return;
    };
    let handles: Vec<JoinHandle<()>> = listeners
        .into_iter()
        .map(|(port, l)| tokio::spawn(accept_loop(shared.clone(), index, port, l)))
        .collect();
    node.tasks
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .extend(handles);
}

/// Closes every port and connection of `node`, and returns once they are closed.
pub async fn kill(node: &Node) {
    let handles = std::mem::take(&mut *node.tasks.lock().unwrap_or_else(|e| e.into_inner()));
    for h in &handles {
        h.abort();
    }
    for h in handles {
        // Resolves after the task's future (listener and connections) was dropped.
        let _ = h.await;
    }
}

/// Accepts connections on `listener` and serves them, until aborted.
async fn accept_loop(shared: Arc<Shared>, index: usize, port: Port, listener: TcpListener) {
    let mut conns = FuturesUnordered::new();
    let mut backoff: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            accepted = listener.accept(), if backoff.is_none() => match accepted {
                Ok((stream, _)) => conns.push(serve_conn(shared.clone(), index, port, stream)),
                Err(e) => {
                    // Out of file descriptors (or a transient network error): pause accepting
                    // instead of spinning on the error, while still serving open connections.
                    warn_rarely(&shared, index, &e);
                    backoff = Some(tokio::time::Instant::now() + Duration::from_millis(100));
                }
            },
            Some(()) = conns.next(), if !conns.is_empty() => {}
            () = sleep_until(backoff), if backoff.is_some() => backoff = None,
        }
    }
}

/// Logs a failed accept at most once a second across the fleet: when descriptors run
/// out, every listener with a waiting client fails at once.
fn warn_rarely(shared: &Shared, index: usize, e: &io::Error) {
    let now = shared.start.elapsed().as_secs() + 1;
    let last = shared.accept_warned.load(Ordering::Relaxed);
    if now > last
        && shared
            .accept_warned
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        tracing::warn!(
            node = index,
            error = %e,
            open_connections = shared.conns.load(Ordering::Relaxed),
            "accept failed; pausing listeners that fail for 100ms (out of file descriptors? \
             split the fleet over several simulator processes)"
        );
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at).await;
    }
}

/// Counts a connection while it is open.
struct ConnGuard(Arc<Shared>);

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.0.conns.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn serve_conn(shared: Arc<Shared>, index: usize, port: Port, stream: TcpStream) {
    shared.conns.fetch_add(1, Ordering::Relaxed);
    let guard = ConnGuard(shared.clone());
    let _ = stream.set_nodelay(true);
    let svc = service_fn(move |req| handle(guard.0.clone(), index, port, req));
    if let Err(e) = http1::Builder::new()
        .serve_connection(TokioIo::new(stream), svc)
        .await
    {
        tracing::trace!(node = index, error = %e, "connection ended");
    }
}

/// Ends a connection without an answer (`hang` released, or the node died meanwhile).
#[derive(Debug)]
struct Hangup;

impl std::fmt::Display for Hangup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the node closed the connection without answering")
    }
}

impl std::error::Error for Hangup {}

async fn handle(
    shared: Arc<Shared>,
    index: usize,
    port: Port,
    req: Request<Incoming>,
) -> Result<Response<SimBody>, Hangup> {
    let Some(node) = shared.nodes.get(index) else {
        return Err(Hangup);
    };
    // Subscribe before looking at the faults, so a recover in between is not missed.
    let mut release = node.release.subscribe();
    let (parts, body) = req.into_parts();
    // Even a hung node reads what it is sent.
    let body = axum::body::to_bytes(axum::body::Body::new(body), MAX_REQUEST_BYTES).await;
    let (faults, slow) = {
        let st = node.state();
        (st.faults(), st.slow())
    };
    if faults.contains(Fault::Die) {
        return Err(Hangup);
    }
    if faults.contains(Fault::Hang) {
        let _ = release.changed().await;
        return Err(Hangup);
    }
    if let Some(delay) = slow {
        tokio::time::sleep(delay).await;
    }
    let mut resp = match body {
        Ok(body) => route(
            &shared,
            node,
            port,
            &parts.method,
            (parts.uri.path(), parts.uri.query()),
            &body,
        ),
        Err(_) => text(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body is larger than 1 MiB\n",
        ),
    };
    // Facts may have changed during the delay: the broken-body faults are read again.
    let faults = if slow.is_some() {
        node.state().faults()
    } else {
        faults
    };
    break_body(&mut resp, faults, port);
    if shared.conns.load(Ordering::Relaxed) > shared.close_above {
        resp.headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    Ok(resp)
}

/// Replaces the body of `resp` as the broken-body faults say (status 200, whatever
/// the real answer was).
fn break_body(resp: &mut Response<SimBody>, faults: FaultSet, port: Port) {
    let json = port == Port::Rpc;
    let body = if faults.contains(Fault::Oversized) {
        SimBody::oversized(json, faults.contains(Fault::NonUtf8))
    } else if faults.contains(Fault::NonUtf8) {
        SimBody::full(if json {
            &b"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":\"caf\xe9 \xff\xfe\"}"[..]
        } else {
            &b"# HELP block_height \xff\xfe\nblock_height{status=\"best\",chain=\"sim\xe9\"} 1\n"[..]
        })
    } else if faults.contains(Fault::Malformed) {
        SimBody::full(if json {
            &b"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"peers\":25,\"isSyncing\":fal"[..]
        } else {
            &b"# TYPE block_height gauge\nblock_height{status=\"best\" 12 x\n}}{{\n"[..]
        })
    } else {
        return;
    };
    *resp.status_mut() = StatusCode::OK;
    *resp.body_mut() = body;
}

fn respond(status: StatusCode, content_type: &'static str, body: SimBody) -> Response<SimBody> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn text(status: StatusCode, body: &'static str) -> Response<SimBody> {
    respond(status, "text/plain; charset=utf-8", SimBody::full(body))
}

fn json(status: StatusCode, body: String) -> Response<SimBody> {
    respond(
        status,
        "application/json; charset=utf-8",
        SimBody::full(body),
    )
}

fn not_found() -> Response<SimBody> {
    text(StatusCode::NOT_FOUND, "404 page not found\n")
}

fn method_not_allowed() -> Response<SimBody> {
    text(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed\n")
}

/// The answer of a healthy node.
fn route(
    shared: &Shared,
    node: &Node,
    port: Port,
    method: &Method,
    (path, query): (&str, Option<&str>),
    body: &Bytes,
) -> Response<SimBody> {
    let chain = node.id.chain;
    if port == Port::Metrics {
        if path != chain.metrics_path() {
            return not_found();
        }
        if method != Method::GET {
            return method_not_allowed();
        }
        let text = shared.with_view(node, |v| match chain {
            SimChain::Substrate => {
                let authored = shared.duty.substrate.as_ref().map_or(0, |s| {
                    s.authored(node.id.index, v.facts.starting, v.facts.best)
                });
                substrate::metrics(v, authored)
            }
            SimChain::Ethereum => ethereum::metrics(v),
            SimChain::Cosmos => {
                let sig = shared
                    .duty
                    .cosmos
                    .as_ref()
                    .map_or_else(Default::default, |c| {
                        cosmos::Signing::of(c, node.id.index, v.facts.starting, v.facts.best)
                    });
                cosmos::metrics(v, &sig)
            }
        });
        return respond(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            SimBody::full(text),
        );
    }
    match (chain, method, path) {
        (_, &Method::POST, _) => rpc(shared, node, body),
        (SimChain::Substrate, &Method::GET, "/health") => json(
            StatusCode::OK,
            shared.with_view(node, |v| substrate::health(v).to_string()),
        ),
        (SimChain::Substrate, &Method::GET, "/health/readiness") => {
            let status = if shared.with_view(node, substrate::ready) {
                StatusCode::OK
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            };
            respond(status, "application/json; charset=utf-8", SimBody::empty())
        }
        // geth answers an empty GET with 200, for load balancers' health checks.
        (SimChain::Ethereum, &Method::GET, _) => text(StatusCode::OK, ""),
        (SimChain::Cosmos, &Method::GET, "/status") => json(
            StatusCode::OK,
            shared.with_view(node, |v| cosmos::envelope(&cosmos::status(v).to_string())),
        ),
        (SimChain::Cosmos, &Method::GET, "/net_info") => json(
            StatusCode::OK,
            shared.with_view(node, |v| cosmos::envelope(&shared.pool.net_info(v))),
        ),
        (SimChain::Cosmos, &Method::GET, "/health") => json(StatusCode::OK, cosmos::envelope("{}")),
        (SimChain::Cosmos, &Method::GET, "/commit") => commit(shared, node, query),
        (SimChain::Cosmos, &Method::GET, "/validators") => validators(shared, node, query),
        (SimChain::Cosmos, &Method::GET, p) if p.starts_with(SIGNING_INFOS) => rest(
            shared,
            node,
            &p[SIGNING_INFOS.len()..],
            cosmos::signing_info,
        ),
        (SimChain::Cosmos, &Method::GET, p) if p.starts_with(STAKING_VALIDATORS) => rest(
            shared,
            node,
            &p[STAKING_VALIDATORS.len()..],
            cosmos::staking_validator,
        ),
        (SimChain::Cosmos, &Method::GET, "/") => text(
            StatusCode::OK,
            "Available endpoints:\n//commit?height=_\n//health\n//net_info\n//status\n//validators?height=_&page=_&per_page=_\n",
        ),
        (_, &Method::GET, _) => not_found(),
        _ => method_not_allowed(),
    }
}

/// Path prefix of the Cosmos SDK signing info query.
const SIGNING_INFOS: &str = "/cosmos/slashing/v1beta1/signing_infos/";
/// Path prefix of the Cosmos SDK staking validator query.
const STAKING_VALIDATORS: &str = "/cosmos/staking/v1beta1/validators/";

/// A CometBFT error reply (HTTP 500, as CometBFT sends it).
fn rpc_error(code: i64, message: &str, data: &str) -> Response<SimBody> {
    json(
        StatusCode::INTERNAL_SERVER_ERROR,
        cosmos::error_envelope(code, message, data),
    )
}

/// `GET /commit?height=H`: from the chain's cache of rendered commits, without a copy.
fn commit(shared: &Shared, node: &Node, query: Option<&str>) -> Response<SimBody> {
    let Some(chain) = shared.duty.cosmos.as_ref() else {
        return not_found();
    };
    let h = match cosmos::query_int(query, "height") {
        Ok(h) => h,
        Err(e) => return rpc_error(-32602, "Invalid params", &e),
    };
    let (best, start_wall) = shared.with_view(node, |v| (v.facts.best, v.start_wall));
    let h = match duty::check_height(h.map(|h| h.max(0) as u64), best) {
        Ok(h) => h,
        Err(e) => return rpc_error(-32603, "Internal error", &e.0),
    };
    let head = chain.commit(h, |st| cosmos::render_commit(chain, st, h, start_wall));
    respond(
        StatusCode::OK,
        "application/json; charset=utf-8",
        SimBody::pair(head, cosmos::commit_tail(h < best)),
    )
}

/// `GET /validators?height=H&page=P&per_page=N`.
fn validators(shared: &Shared, node: &Node, query: Option<&str>) -> Response<SimBody> {
    let Some(chain) = shared.duty.cosmos.as_ref() else {
        return not_found();
    };
    let args = ["height", "page", "per_page"].map(|k| cosmos::query_int(query, k));
    let [h, page, per_page] = match args {
        [Ok(h), Ok(p), Ok(n)] => [h, p, n],
        [h, p, n] => {
            let e = [h, p, n]
                .into_iter()
                .find_map(Result::err)
                .unwrap_or_default();
            return rpc_error(-32602, "Invalid params", &e);
        }
    };
    let best = shared.with_view(node, |v| v.facts.best);
    let text = duty::check_height(h.map(|h| h.max(0) as u64), best)
        .and_then(|h| cosmos::render_validators(chain, &chain.state(), h, page, per_page));
    match text {
        Ok(t) => json(StatusCode::OK, cosmos::envelope(&t)),
        Err(e) => rpc_error(-32603, "Internal error", &e.0),
    }
}

/// A Cosmos SDK REST query: the chain, the address asked about, the node's best block and
/// the wall time of the start; the document or (HTTP status, error body).
type RestQuery =
    fn(&duty::Cosmos, &str, u64, jiff::Timestamp) -> Result<serde_json::Value, (u16, String)>;

/// One of the Cosmos SDK REST queries, about the validator `addr`, as of the node's best
/// block.
fn rest(shared: &Shared, node: &Node, addr: &str, query: RestQuery) -> Response<SimBody> {
    let Some(chain) = shared.duty.cosmos.as_ref() else {
        return not_found();
    };
    let (best, start_wall) = shared.with_view(node, |v| (v.facts.best, v.start_wall));
    match query(chain, addr, best, start_wall) {
        Ok(doc) => json(StatusCode::OK, doc.to_string()),
        Err((status, body)) => json(
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            body,
        ),
    }
}

/// A JSON-RPC POST, answered from one view of the node (a batch sees one instant).
fn rpc(shared: &Shared, node: &Node, body: &Bytes) -> Response<SimBody> {
    let reply = shared.with_view(node, |v| {
        jsonrpc::respond(body, &mut |method, params| match v.node.chain {
            SimChain::Substrate => substrate::call(v, method, params),
            SimChain::Ethereum => ethereum::call(v, method, params),
            SimChain::Cosmos => {
                cosmos::call(v, &shared.pool, shared.duty.cosmos.as_ref(), method, params)
            }
        })
    });
    match reply {
        Some(doc) => json(StatusCode::OK, doc.to_string()),
        None => respond(
            StatusCode::OK,
            "application/json; charset=utf-8",
            SimBody::empty(),
        ),
    }
}
