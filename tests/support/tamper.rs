//! A pass-through HTTP proxy in front of a real server that, when told to, corrupts the
//! bodies of GET answers: what a flaky disk or network does to an object between its upload
//! and its read-back. Requests go through byte for byte (signed S3 requests stay valid: the
//! Host header is the proxy's, as the client signed it).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// A running proxy; its thread ends with the test process.
pub struct Tamper {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    corrupt: Arc<AtomicBool>,
    corrupted: Arc<AtomicU64>,
}

#[allow(dead_code)]
impl Tamper {
    /// A proxy to `backend` (`host:port`).
    pub fn start(backend: &str) -> Tamper {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let corrupt = Arc::new(AtomicBool::new(false));
        let corrupted = Arc::new(AtomicU64::new(0));
        let (flag, count, backend) = (corrupt.clone(), corrupted.clone(), backend.to_string());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (flag, count, backend) = (flag.clone(), count.clone(), backend.clone());
                std::thread::spawn(move || relay(conn, &backend, &flag, &count));
            }
        });
        Tamper {
            url,
            corrupt,
            corrupted,
        }
    }

    /// Corrupt GET answers from now on (or stop).
    pub fn corrupt(&self, on: bool) {
        self.corrupt.store(on, Ordering::SeqCst);
    }

    /// GET answers corrupted so far.
    pub fn corrupted(&self) -> u64 {
        self.corrupted.load(Ordering::SeqCst)
    }
}

fn relay(mut conn: TcpStream, backend: &str, corrupt: &AtomicBool, count: &AtomicU64) {
    let Some(req) = super::receiver::read_request(&mut conn) else {
        return;
    };
    let Ok(mut up) = TcpStream::connect(backend) else {
        return;
    };
    let mut head = format!("{} {} HTTP/1.1\r\n", req.method, req.path);
    for (k, v) in &req.headers {
        if k != "connection" {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    head.push_str("connection: close\r\n\r\n");
    if up.write_all(head.as_bytes()).is_err() || up.write_all(&req.body).is_err() {
        return;
    }
    let mut answer = Vec::new();
    if up.read_to_end(&mut answer).is_err() {
        return;
    }
    let body_at = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4);
    let ok = answer.starts_with(b"HTTP/1.1 200") || answer.starts_with(b"HTTP/1.1 206");
    if let Some(at) = body_at
        && req.method == "GET"
        && ok
        && corrupt.load(Ordering::SeqCst)
        && answer.len() > at + 64
    {
        let mid = at + (answer.len() - at) / 2;
        answer[mid] ^= 0x5a;
        count.fetch_add(1, Ordering::SeqCst);
    }
    let _ = conn.write_all(&answer);
}
