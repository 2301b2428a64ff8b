//! The admin HTTP API: list the nodes, switch faults on and off. JSON in and out; bad
//! input is a 400 with a JSON `error` that says what to send instead.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::model::{Fault, FaultOptions, MAX_SLOW_MS, SimChain};
use super::serve::{self, Port, Shared};

/// What `GET /nodes` and the ready file say about one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeInfo {
    /// Position in the fleet, from 0 (the `{index}` of the admin routes).
    pub index: usize,
    /// `sim-<index>`.
    pub name: String,
    /// `substrate`, `ethereum` or `cosmos`.
    pub chain: String,
    /// The node's loopback address.
    pub ip: String,
    /// RPC URL (JSON-RPC endpoint, or the CometBFT RPC base).
    pub rpc: String,
    /// Prometheus URL; `null` with `--no-metrics`.
    pub metrics: Option<String>,
    /// Plain HTTP health URL; `null` for Ethereum, which has none.
    pub health: Option<String>,
    /// Faults that are on, by API name.
    pub faults: Vec<String>,
    /// Best block now.
    pub best: u64,
    /// Finalized block now.
    pub finalized: u64,
    /// Sync target now (the network height while syncing).
    pub target: u64,
    /// Peers now.
    pub peers: u32,
    /// Whether the node reports a major sync.
    pub syncing: bool,
    /// CometBFT: the validator's consensus address (hex, upper case, as in `/status`,
    /// `/validators` and commit signatures); `null` for other chains.
    #[serde(default)]
    pub validator_address: Option<String>,
    /// CometBFT: the validator's operator address (`cosmosvaloper1…`), for
    /// `/cosmos/staking/v1beta1/validators/{valoper}`.
    #[serde(default)]
    pub valoper: Option<String>,
    /// CometBFT: the validator's consensus address in bech32 (`cosmosvalcons1…`), for
    /// `/cosmos/slashing/v1beta1/signing_infos/{valcons}`.
    #[serde(default)]
    pub valcons: Option<String>,
    /// CometBFT: base URL of the Cosmos SDK REST API (the RPC port serves it too).
    #[serde(default)]
    pub api: Option<String>,
    /// Substrate: the node's position among the authorities (it authors the blocks whose
    /// height % `authorities` is this).
    #[serde(default)]
    pub author_index: Option<usize>,
    /// Substrate: how many authorities the chain has (every substrate node).
    #[serde(default)]
    pub authorities: Option<usize>,
}

/// Describes node `node` as of now.
pub fn info(shared: &Shared, node: &serve::Node) -> NodeInfo {
    let id = &node.id;
    let faults = node.state().faults();
    let facts = shared.with_view(node, |v| v.facts);
    let url = |port: Port, path: &str| format!("http://{}{path}", node.addr(port));
    let validator = shared
        .duty
        .cosmos
        .as_ref()
        .and_then(|c| c.validator(id.index));
    let substrate = shared.duty.substrate.as_ref();
    NodeInfo {
        index: id.index,
        name: id.name.clone(),
        chain: id.chain.as_str().into(),
        ip: id.ip.to_string(),
        rpc: url(Port::Rpc, ""),
        metrics: shared
            .metrics
            .then(|| url(Port::Metrics, id.chain.metrics_path())),
        health: id.chain.health_path().map(|p| url(Port::Rpc, p)),
        faults: faults.names().into_iter().map(String::from).collect(),
        best: facts.best,
        finalized: facts.finalized,
        target: facts.target,
        peers: facts.peers,
        syncing: facts.syncing,
        validator_address: validator.map(|v| v.address.clone()),
        valoper: validator.map(|v| v.valoper.clone()),
        valcons: validator.map(|v| v.valcons.clone()),
        api: validator.map(|_| url(Port::Rpc, "")),
        author_index: substrate.and_then(|s| s.rank(id.index)),
        authorities: substrate
            .filter(|s| s.rank(id.index).is_some())
            .map(|s| s.n),
    }
}

/// A JSON response. (axum's `Json` needs a feature this crate does not enable.)
fn reply(status: StatusCode, doc: &impl Serialize) -> Response {
    match serde_json::to_vec(doc) {
        Ok(body) => (
            status,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// State of the admin server.
#[derive(Debug, Clone)]
pub struct Admin {
    /// The fleet.
    pub shared: Arc<Shared>,
    /// Serialises fault changes, so a `die` and a `recover` of one node cannot interleave.
    pub lock: Arc<tokio::sync::Mutex<()>>,
}

/// An admin error: its status and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminError {
    /// HTTP status.
    pub status: StatusCode,
    /// What went wrong and what to do.
    pub message: String,
}

impl AdminError {
    fn bad(message: impl Into<String>) -> AdminError {
        AdminError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        reply(self.status, &json!({"error": self.message}))
    }
}

/// Body of the fault routes.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultBody {
    /// Fault name; required for `/fault`, optional for `/recover` (then all faults).
    fault: Option<String>,
    /// Delay of `slow`, in milliseconds.
    ms: Option<u64>,
    /// How many blocks `syncing` drops behind at once.
    blocks: Option<u64>,
    /// Fleet routes: which nodes (default: all).
    nodes: Option<Vec<usize>>,
    /// Fleet routes: only nodes of this chain.
    chain: Option<String>,
}

/// A validated fault request.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Request {
    fault: Option<Fault>,
    opts: FaultOptions,
    nodes: Option<Vec<usize>>,
    chain: Option<SimChain>,
}

fn parse_body(body: &[u8], fleet: bool, need_fault: bool) -> Result<Request, AdminError> {
    let b: FaultBody = if body.iter().all(u8::is_ascii_whitespace) {
        FaultBody::default()
    } else {
        serde_json::from_slice(body).map_err(|e| {
            AdminError::bad(format!(
                "invalid JSON body: {e}; expected e.g. {{\"fault\":\"slow\",\"ms\":500}}"
            ))
        })?
    };
    let fault = match b.fault.as_deref() {
        Some(name) => Some(name.parse::<Fault>().map_err(AdminError::bad)?),
        None if need_fault => {
            return Err(AdminError::bad(
                "missing \"fault\"; expected e.g. {\"fault\":\"stopBlocks\"}",
            ));
        }
        None => None,
    };
    if need_fault {
        if b.ms.is_some() && fault != Some(Fault::Slow) {
            return Err(AdminError::bad("\"ms\" applies only to the slow fault"));
        }
        if b.blocks.is_some() && fault != Some(Fault::Syncing) {
            return Err(AdminError::bad(
                "\"blocks\" applies only to the syncing fault",
            ));
        }
        if let Some(ms) = b.ms.filter(|ms| *ms > MAX_SLOW_MS) {
            return Err(AdminError::bad(format!(
                "\"ms\" is {ms}; at most {MAX_SLOW_MS} (use the hang fault for longer)"
            )));
        }
    } else if b.ms.is_some() || b.blocks.is_some() {
        return Err(AdminError::bad(
            "\"ms\" and \"blocks\" belong to /fault, not /recover",
        ));
    }
    if !fleet && (b.nodes.is_some() || b.chain.is_some()) {
        return Err(AdminError::bad(
            "\"nodes\" and \"chain\" belong to the fleet routes POST /fault and POST /recover",
        ));
    }
    let chain = b
        .chain
        .as_deref()
        .map(str::parse::<SimChain>)
        .transpose()
        .map_err(AdminError::bad)?;
    Ok(Request {
        fault,
        opts: FaultOptions {
            ms: b.ms,
            blocks: b.blocks,
        },
        nodes: b.nodes,
        chain,
    })
}

/// The nodes a fleet request selects (and whether the list was explicit), or 404 for
/// indices that do not exist.
fn select(shared: &Shared, req: &Request) -> Result<(Vec<usize>, bool), AdminError> {
    let n = shared.nodes.len();
    let candidates: Vec<usize> = match &req.nodes {
        Some(list) => {
            let unknown: Vec<usize> = list
                .iter()
                .copied()
                .filter(|i| *i >= n)
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            if !unknown.is_empty() {
                return Err(AdminError {
                    status: StatusCode::NOT_FOUND,
                    message: format!(
                        "unknown node(s) {unknown:?}: the fleet has {n} nodes, indices 0 to {}",
                        n.saturating_sub(1)
                    ),
                });
            }
            let set: BTreeSet<usize> = list.iter().copied().collect();
            set.into_iter().collect()
        }
        None => (0..n).collect(),
    };
    let chosen = candidates
        .into_iter()
        .filter(|i| req.chain.is_none_or(|c| shared.nodes[*i].id.chain == c))
        .collect();
    Ok((chosen, req.nodes.is_some()))
}

fn node_index(shared: &Shared, raw: &str) -> Result<usize, AdminError> {
    let index: usize = raw.parse().map_err(|_| {
        AdminError::bad(format!(
            "node index {raw:?} is not a number; see GET /nodes"
        ))
    })?;
    if index >= shared.nodes.len() {
        return Err(AdminError {
            status: StatusCode::NOT_FOUND,
            message: format!(
                "no node {index}: the fleet has {} nodes, indices 0 to {}",
                shared.nodes.len(),
                shared.nodes.len().saturating_sub(1)
            ),
        });
    }
    Ok(index)
}

/// Switches `fault` on for node `index`.
pub async fn apply(shared: &Shared, index: usize, fault: Fault, opts: FaultOptions) {
    let Some(node) = shared.nodes.get(index) else {
        return;
    };
    node.state().apply(fault, opts, &node.params, shared.e());
    shared.sync_duty(index);
    if fault == Fault::Die {
        serve::kill(node).await;
    }
}

/// Switches `only` (or every fault) off for node `index`: a dead node rebinds its
/// ports first, and stays dead if it cannot.
pub async fn recover(
    shared: &Arc<Shared>,
    index: usize,
    only: Option<Fault>,
) -> Result<(), AdminError> {
    let Some(node) = shared.nodes.get(index) else {
        return Ok(());
    };
    let faults = node.state().faults();
    let clears = |f: Fault| faults.contains(f) && only.is_none_or(|o| o == f);
    // Bind before the state changes: connections that arrive meanwhile wait in the
    // backlog and are served by the recovered node.
    let listeners = if clears(Fault::Die) {
        let listeners = serve::bind(node, shared.metrics).map_err(|e| AdminError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: format!("node {index} stays dead: {e}"),
        })?;
        Some(listeners)
    } else {
        None
    };
    {
        let mut st = node.state();
        let e = shared.e();
        match only {
            Some(f) => st.clear(f, &node.params, e),
            None => st.clear_all(&node.params, e),
        }
    }
    shared.sync_duty(index);
    if clears(Fault::Hang) {
        node.release.send_modify(|v| *v = v.wrapping_add(1));
    }
    if let Some(listeners) = listeners {
        serve::spawn(shared, index, listeners);
    }
    Ok(())
}

async fn list(State(a): State<Admin>) -> Response {
    let nodes: Vec<NodeInfo> = a.shared.nodes.iter().map(|n| info(&a.shared, n)).collect();
    reply(StatusCode::OK, &nodes)
}

async fn one(State(a): State<Admin>, Path(raw): Path<String>) -> Result<Response, AdminError> {
    let index = node_index(&a.shared, &raw)?;
    Ok(reply(
        StatusCode::OK,
        &info(&a.shared, &a.shared.nodes[index]),
    ))
}

async fn node_fault(
    State(a): State<Admin>,
    Path(raw): Path<String>,
    body: Bytes,
) -> Result<Response, AdminError> {
    let index = node_index(&a.shared, &raw)?;
    let req = parse_body(&body, false, true)?;
    let fault = req.fault.unwrap_or(Fault::StopBlocks);
    let node = &a.shared.nodes[index];
    if !fault.applies_to(node.id.chain) {
        return Err(AdminError::bad(format!(
            "{fault} applies only to {} nodes; node {index} is {}{}",
            fault.chains_text(),
            node.id.chain,
            if fault == Fault::StopFinality {
                " (use stopBlocks)"
            } else {
                ""
            }
        )));
    }
    let _guard = a.lock.lock().await;
    apply(&a.shared, index, fault, req.opts).await;
    tracing::info!(node = index, %fault, "fault on");
    Ok(reply(StatusCode::OK, &info(&a.shared, node)))
}

async fn node_recover(
    State(a): State<Admin>,
    Path(raw): Path<String>,
    body: Bytes,
) -> Result<Response, AdminError> {
    let index = node_index(&a.shared, &raw)?;
    let req = parse_body(&body, false, false)?;
    let _guard = a.lock.lock().await;
    recover(&a.shared, index, req.fault).await?;
    tracing::info!(node = index, fault = ?req.fault.map(Fault::as_str), "recovered");
    Ok(reply(
        StatusCode::OK,
        &info(&a.shared, &a.shared.nodes[index]),
    ))
}

async fn fleet_fault(State(a): State<Admin>, body: Bytes) -> Result<Response, AdminError> {
    let req = parse_body(&body, true, true)?;
    let fault = req.fault.unwrap_or(Fault::StopBlocks);
    let (chosen, explicit) = select(&a.shared, &req)?;
    let (applicable, skipped): (Vec<usize>, Vec<usize>) = chosen
        .into_iter()
        .partition(|i| fault.applies_to(a.shared.nodes[*i].id.chain));
    if explicit && !skipped.is_empty() {
        return Err(AdminError::bad(format!(
            "{fault} applies only to {} nodes; not to {skipped:?}",
            fault.chains_text()
        )));
    }
    let _guard = a.lock.lock().await;
    for &i in &applicable {
        apply(&a.shared, i, fault, req.opts).await;
    }
    tracing::info!(%fault, nodes = applicable.len(), "fleet fault on");
    Ok(reply(
        StatusCode::OK,
        &json!({
            "fault": fault.as_str(),
            "affected": applicable.len(),
            "nodes": applicable,
            "skipped": skipped.len(),
        }),
    ))
}

async fn fleet_recover(State(a): State<Admin>, body: Bytes) -> Result<Response, AdminError> {
    let req = parse_body(&body, true, false)?;
    let (chosen, _) = select(&a.shared, &req)?;
    let _guard = a.lock.lock().await;
    let mut failed = Vec::new();
    for &i in &chosen {
        if let Err(e) = recover(&a.shared, i, req.fault).await {
            failed.push(e.message);
        }
    }
    tracing::info!(
        nodes = chosen.len(),
        failed = failed.len(),
        "fleet recovered"
    );
    if !failed.is_empty() {
        return Err(AdminError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: format!(
                "{} of {} nodes could not recover: {}",
                failed.len(),
                chosen.len(),
                failed
                    .iter()
                    .take(5)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        });
    }
    Ok(reply(
        StatusCode::OK,
        &json!({
            "fault": req.fault.map(Fault::as_str),
            "affected": chosen.len(),
            "nodes": chosen,
        }),
    ))
}

async fn unknown_route() -> AdminError {
    AdminError {
        status: StatusCode::NOT_FOUND,
        message: "no such route; use GET /nodes, GET /nodes/{index}, POST /nodes/{index}/fault, \
                  POST /nodes/{index}/recover, POST /fault, POST /recover"
            .into(),
    }
}

async fn wrong_method() -> AdminError {
    AdminError {
        status: StatusCode::METHOD_NOT_ALLOWED,
        message: "wrong method: GET for /nodes, POST for the fault and recover routes".into(),
    }
}

/// The admin routes.
pub fn router(admin: Admin) -> Router {
    Router::new()
        .route("/nodes", get(list))
        .route("/nodes/{index}", get(one))
        .route("/nodes/{index}/fault", post(node_fault))
        .route("/nodes/{index}/recover", post(node_recover))
        .route("/fault", post(fleet_fault))
        .route("/recover", post(fleet_recover))
        .fallback(unknown_route)
        .method_not_allowed_fallback(wrong_method)
        .with_state(admin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_validated() {
        let ok = parse_body(br#"{"fault":"slow","ms":300}"#, false, true).unwrap();
        assert_eq!(ok.fault, Some(Fault::Slow));
        assert_eq!(ok.opts.ms, Some(300));
        let ok = parse_body(
            br#"{"fault":"stopBlocks","chain":"substrate","nodes":[1,2]}"#,
            true,
            true,
        )
        .unwrap();
        assert_eq!(ok.chain, Some(SimChain::Substrate));
        assert_eq!(ok.nodes, Some(vec![1, 2]));
        // An empty recover body means every fault.
        assert_eq!(parse_body(b"", false, false).unwrap().fault, None);
        assert_eq!(parse_body(b" \n", true, false).unwrap().nodes, None);

        for (body, fleet, need, says) in [
            (&b"{"[..], false, true, "invalid JSON"),
            (b"[]", false, true, "invalid JSON"),
            (br#"{"fault":"explode"}"#, false, true, "known faults"),
            (
                br#"{"fault":"die","extra":1}"#,
                false,
                true,
                "unknown field",
            ),
            (b"{}", false, true, "missing \"fault\""),
            (
                br#"{"fault":"die","ms":5}"#,
                false,
                true,
                "only to the slow",
            ),
            (
                br#"{"fault":"die","blocks":5}"#,
                false,
                true,
                "only to the syncing",
            ),
            (
                br#"{"fault":"slow","ms":999999999}"#,
                false,
                true,
                "at most",
            ),
            (br#"{"fault":"slow","ms":-1}"#, false, true, "invalid JSON"),
            (
                br#"{"fault":"die","nodes":[1]}"#,
                false,
                true,
                "fleet routes",
            ),
            (
                br#"{"fault":"die","chain":"btc"}"#,
                true,
                true,
                "unknown chain",
            ),
            (br#"{"ms":1}"#, true, false, "belong to /fault"),
        ] {
            let e = parse_body(body, fleet, need).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
            assert!(
                e.message.contains(says),
                "{}: {}",
                String::from_utf8_lossy(body),
                e.message
            );
        }
    }
}
