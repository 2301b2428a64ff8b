//! The server side of JSON-RPC 2.0 over HTTP: single calls, batches, notifications and
//! the standard errors, independent of which methods a chain offers.

use serde_json::{Map, Value, json};

/// A JSON-RPC error object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcError {
    /// The JSON-RPC error code.
    pub code: i64,
    /// Human-readable message, as the real client words it.
    pub message: String,
    /// Details (CometBFT puts the reason here, under a generic message).
    pub data: Option<String>,
}

impl RpcError {
    /// `-32700`: the body is not JSON.
    pub fn parse_error() -> RpcError {
        RpcError::new(-32700, "Parse error")
    }

    /// `-32600`: JSON, but not a request object.
    pub fn invalid_request() -> RpcError {
        RpcError::new(-32600, "Invalid request")
    }

    /// `-32601` with the Substrate (jsonrpsee) wording.
    pub fn method_not_found() -> RpcError {
        RpcError::new(-32601, "Method not found")
    }

    /// `-32602`: the parameters do not fit the method.
    pub fn invalid_params(detail: impl std::fmt::Display) -> RpcError {
        RpcError::new(-32602, format!("Invalid params: {detail}"))
    }

    /// An error with any code and message.
    pub fn new(code: i64, message: impl Into<String>) -> RpcError {
        RpcError {
            code,
            message: message.into(),
            data: None,
        }
    }

    /// The error with `data`.
    pub fn with_data(mut self, data: impl Into<String>) -> RpcError {
        self.data = Some(data.into());
        self
    }

    fn to_value(&self) -> Value {
        match &self.data {
            Some(d) => json!({"code": self.code, "message": self.message, "data": d}),
            None => json!({"code": self.code, "message": self.message}),
        }
    }
}

/// Most calls in one batch; larger batches are refused whole, as jsonrpsee does, so a
/// single request cannot make a node do unbounded work.
pub const MAX_BATCH: usize = 1000;

/// Answers a request body. `call` runs one method with its parameters (`[]` when the
/// request has none). Returns `None` when nothing is to be sent back (only
/// notifications), else the reply document: an object, or an array for a batch.
pub fn respond(
    body: &[u8],
    call: &mut dyn FnMut(&str, &Value) -> Result<Value, RpcError>,
) -> Option<Value> {
    let doc: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) => return Some(error_reply(&Value::Null, &RpcError::parse_error())),
    };
    match doc {
        Value::Array(items) if items.is_empty() => {
            Some(error_reply(&Value::Null, &RpcError::invalid_request()))
        }
        Value::Array(items) if items.len() > MAX_BATCH => Some(error_reply(
            &Value::Null,
            &RpcError::new(
                -32600,
                format!("Batch too large: at most {MAX_BATCH} calls per request"),
            ),
        )),
        Value::Array(items) => {
            let replies: Vec<Value> = items.iter().filter_map(|i| one(i, call)).collect();
            (!replies.is_empty()).then_some(Value::Array(replies))
        }
        other => one(&other, call),
    }
}

/// Answers one request object; `None` for a notification.
fn one(
    req: &Value,
    call: &mut dyn FnMut(&str, &Value) -> Result<Value, RpcError>,
) -> Option<Value> {
    let Some(obj) = req.as_object() else {
        return Some(error_reply(&Value::Null, &RpcError::invalid_request()));
    };
    let id = match obj.get("id") {
        None => None,
        Some(id @ (Value::Null | Value::Number(_) | Value::String(_))) => Some(id.clone()),
        Some(_) => return Some(error_reply(&Value::Null, &RpcError::invalid_request())),
    };
    let reply_id = id.clone().unwrap_or(Value::Null);
    let method = obj.get("method").and_then(Value::as_str);
    let (Some(method), Some("2.0")) = (method, obj.get("jsonrpc").and_then(Value::as_str)) else {
        return Some(error_reply(&reply_id, &RpcError::invalid_request()));
    };
    let empty = Value::Array(Vec::new());
    let params = match obj.get("params") {
        None | Some(Value::Null) => &empty,
        Some(p @ (Value::Array(_) | Value::Object(_))) => p,
        Some(_) => {
            return Some(error_reply(
                &reply_id,
                &RpcError::invalid_params("params must be an array or an object"),
            ));
        }
    };
    let result = call(method, params);
    // A notification (no id) gets no reply, not even an error.
    id.as_ref()?;
    Some(match result {
        Ok(v) => {
            let mut m = Map::new();
            m.insert("jsonrpc".into(), json!("2.0"));
            m.insert("id".into(), reply_id);
            m.insert("result".into(), v);
            Value::Object(m)
        }
        Err(e) => error_reply(&reply_id, &e),
    })
}

/// A reply carrying `err`.
pub fn error_reply(id: &Value, err: &RpcError) -> Value {
    let mut m = Map::new();
    m.insert("jsonrpc".into(), json!("2.0"));
    m.insert("id".into(), id.clone());
    m.insert("error".into(), err.to_value());
    Value::Object(m)
}

/// The `index`-th positional parameter (or `None` when absent or `null`).
pub fn param(params: &Value, index: usize) -> Option<&Value> {
    params.as_array()?.get(index).filter(|v| !v.is_null())
}

/// A block number parameter: a JSON number or a hex / decimal string.
pub fn block_number(v: &Value) -> Result<u64, RpcError> {
    let parsed = match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => match s.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16).ok(),
            None => s.parse().ok(),
        },
        _ => None,
    };
    parsed.ok_or_else(|| RpcError::invalid_params(format!("{v} is not a block number")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn echo(method: &str, params: &Value) -> Result<Value, RpcError> {
        match method {
            "echo" => Ok(params.clone()),
            "fail" => Err(RpcError::new(-32000, "failed")),
            _ => Err(RpcError::method_not_found()),
        }
    }

    fn ask(body: &str) -> Option<Value> {
        respond(body.as_bytes(), &mut echo)
    }

    #[test]
    fn single_calls() {
        assert_eq!(
            ask(r#"{"jsonrpc":"2.0","id":7,"method":"echo","params":[1]}"#),
            Some(json!({"jsonrpc":"2.0","id":7,"result":[1]}))
        );
        assert_eq!(
            ask(r#"{"jsonrpc":"2.0","id":"a","method":"echo"}"#),
            Some(json!({"jsonrpc":"2.0","id":"a","result":[]}))
        );
        assert_eq!(
            ask(r#"{"jsonrpc":"2.0","id":1,"method":"nope"}"#),
            Some(
                json!({"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"Method not found"}})
            )
        );
        assert_eq!(
            ask(r#"{"jsonrpc":"2.0","id":1,"method":"fail"}"#).unwrap()["error"]["code"],
            -32000
        );
    }

    #[test]
    fn errors() {
        let parse = ask("{not json").unwrap();
        assert_eq!(parse["error"]["code"], -32700);
        assert_eq!(parse["id"], Value::Null);
        for bad in [
            "[]",
            "42",
            r#"{"id":1,"method":"echo"}"#,
            r#"{"jsonrpc":"1.0","id":1,"method":"echo"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":5}"#,
            r#"{"jsonrpc":"2.0","id":[1],"method":"echo"}"#,
        ] {
            assert_eq!(ask(bad).unwrap()["error"]["code"], -32600, "{bad}");
        }
        assert_eq!(
            ask(r#"{"jsonrpc":"2.0","id":3,"method":"echo","params":5}"#).unwrap()["error"]["code"],
            -32602
        );
        let huge = format!(
            "[{}]",
            vec![r#"{"jsonrpc":"2.0","id":1,"method":"echo"}"#; MAX_BATCH + 1].join(",")
        );
        assert_eq!(ask(&huge).unwrap()["error"]["code"], -32600);
    }

    #[test]
    fn batches_and_notifications() {
        let reply = ask(r#"[{"jsonrpc":"2.0","id":1,"method":"echo","params":["a"]},
                {"jsonrpc":"2.0","method":"echo"},
                {"jsonrpc":"2.0","id":2,"method":"nope"},
                7]"#)
        .unwrap();
        let items = reply.as_array().unwrap();
        assert_eq!(items.len(), 3, "{reply}");
        assert_eq!(items[0], json!({"jsonrpc":"2.0","id":1,"result":["a"]}));
        assert_eq!(items[1]["id"], 2);
        assert_eq!(items[1]["error"]["code"], -32601);
        assert_eq!(items[2]["error"]["code"], -32600);
        // Only notifications: nothing to send.
        assert_eq!(ask(r#"{"jsonrpc":"2.0","method":"echo"}"#), None);
        assert_eq!(ask(r#"[{"jsonrpc":"2.0","method":"echo"}]"#), None);
    }

    #[test]
    fn parameters() {
        let p = json!([null, "0x10", 5, "12", "x", -1]);
        assert_eq!(param(&p, 0), None);
        assert_eq!(param(&p, 9), None);
        assert_eq!(block_number(param(&p, 1).unwrap()), Ok(16));
        assert_eq!(block_number(param(&p, 2).unwrap()), Ok(5));
        assert_eq!(block_number(param(&p, 3).unwrap()), Ok(12));
        assert_eq!(
            block_number(param(&p, 4).unwrap()).unwrap_err().code,
            -32602
        );
        assert!(block_number(param(&p, 5).unwrap()).is_err());
        assert_eq!(param(&json!({"a": 1}), 0), None);
    }
}
