//! A webhook receiver on loopback: a plain HTTP/1.1 server on a thread that keeps
//! every request it gets and answers `200 OK` (or the status it is told to).
//!
//! Started on a port of its own (`Receiver::start`) or on a chosen one
//! (`Receiver::on`), so a test can let a daemon try a port where nothing listens
//! yet and bring the receiver up there later. It stops when dropped.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request as received.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == &name.to_lowercase()).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

pub struct Receiver {
    port: u16,
    requests: Arc<Mutex<Vec<Request>>>,
    status: Arc<AtomicU16>,
    stopping: Arc<AtomicBool>,
}

impl Receiver {
    /// A receiver on a free loopback port.
    pub fn start() -> Receiver {
        Receiver::on(super::free_port())
    }

    /// A receiver on `port` of 127.0.0.1.
    pub fn on(port: u16) -> Receiver {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("the receiver's port is free");
        let receiver = Receiver {
            port,
            requests: Arc::default(),
            status: Arc::new(AtomicU16::new(200)),
            stopping: Arc::default(),
        };
        let (requests, status, stopping) =
            (Arc::clone(&receiver.requests), Arc::clone(&receiver.status), Arc::clone(&receiver.stopping));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = stream
                    && let Some(request) = serve(stream, status.load(Ordering::SeqCst))
                {
                    requests.lock().unwrap().push(request);
                }
            }
        });
        receiver
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The status later requests are answered with.
    pub fn answer(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    /// Waits (up to `limit`) until at least `count` requests came; returns them all.
    pub fn wait_for(&self, count: usize, limit: Duration) -> Vec<Request> {
        let arrived = super::wait_for(limit, || self.requests.lock().unwrap().len() >= count);
        let requests = self.requests();
        assert!(arrived, "the receiver got {} request(s), not {count}: {requests:#?}", requests.len());
        requests
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees it is stopping.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Reads one request and answers it with `status`, closing the connection.
fn serve(stream: TcpStream, status: u16) -> Option<Request> {
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_string(), parts.next()?.to_string());
    let mut headers = Vec::new();
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        headers.push((name.trim().to_lowercase(), value.trim().to_string()));
    }
    let length: usize =
        headers.iter().find(|(n, _)| n == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    let answer = format!("HTTP/1.1 {status} X\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
    let mut stream = stream;
    stream.write_all(answer.as_bytes()).ok()?;
    Some(Request { method, path, headers, body })
}
