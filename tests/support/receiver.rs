//! A webhook receiver for the tests: the user's restart endpoint, on a loopback port. It
//! records every request and answers with a chosen status, optionally after a delay.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request as received.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A running receiver; its thread ends with the test process.
pub struct Receiver {
    pub url: String,
    requests: Arc<Mutex<Vec<Request>>>,
    status: Arc<AtomicU16>,
    /// Milliseconds to wait before answering (0: answer at once).
    delay_ms: Arc<AtomicU64>,
    /// The body and extra header lines of the answer.
    reply: Arc<Mutex<(String, Vec<String>)>>,
}

#[allow(dead_code)]
impl Receiver {
    pub fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/restart", listener.local_addr().unwrap());
        let requests: Arc<Mutex<Vec<Request>>> = Arc::default();
        let status = Arc::new(AtomicU16::new(200));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let reply: Arc<Mutex<(String, Vec<String>)>> = Arc::new(Mutex::new(("ok".into(), vec![])));
        let (reqs, st, delay, rep) = (
            requests.clone(),
            status.clone(),
            delay_ms.clone(),
            reply.clone(),
        );
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let Some(req) = read_request(&mut conn) else {
                    continue;
                };
                // Recorded before any delay, so that a request counts as soon as it arrived.
                reqs.lock().unwrap().push(req);
                let code = st.load(Ordering::SeqCst);
                let (body, headers) = rep.lock().unwrap().clone();
                let answer = move |mut conn: std::net::TcpStream| {
                    let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
                    let _ = write!(
                        conn,
                        "HTTP/1.1 {code} X\r\nContent-Type: text/plain; charset=utf-8\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                };
                match delay.load(Ordering::SeqCst) {
                    0 => answer(conn),
                    // A slow answer on its own thread: later requests are still read and
                    // recorded at once.
                    ms => {
                        std::thread::spawn(move || {
                            std::thread::sleep(Duration::from_millis(ms));
                            answer(conn);
                        });
                    }
                }
            }
        });
        Receiver {
            url,
            requests,
            status,
            delay_ms,
            reply,
        }
    }

    /// Requests received so far.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    /// Answers later requests with `code`.
    pub fn answer(&self, code: u16) {
        self.status.store(code, Ordering::SeqCst);
    }

    /// Answers later requests with `code`, this body and these extra header lines (e.g.
    /// Slack's `channel_not_found`, or `Retry-After: 2` with a 429).
    pub fn reply(&self, code: u16, body: &str, headers: &[&str]) {
        *self.reply.lock().unwrap() = (
            body.to_string(),
            headers.iter().map(|h| h.to_string()).collect(),
        );
        self.status.store(code, Ordering::SeqCst);
    }

    /// Answers later requests only after `d` (a slow endpoint; zero answers at once). The
    /// request is recorded as soon as it is read, before the delay.
    pub fn delay(&self, d: Duration) {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        self.delay_ms.store(ms, Ordering::SeqCst);
    }
}

/// Reads one HTTP/1.1 request (headers lowercased, body by Content-Length).
pub fn read_request(conn: &mut std::net::TcpStream) -> Option<Request> {
    conn.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut reader = BufReader::new(conn.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    Some(Request {
        method,
        path,
        headers,
        body,
    })
}
