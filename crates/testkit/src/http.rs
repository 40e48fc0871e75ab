//! A small HTTP/1.1 server on loopback for the tests of lists fetched by URL: it serves a body per path that the
//! test changes at run time, with an ETag that changes with it; honours `If-None-Match` with 304; answers an error
//! status, late, or never, on demand; and counts the requests and 304s of each path. One thread accepts, one
//! thread serves each connection (`Connection: close`); std only. And the client side tests use for
//! any HTTP endpoint on loopback (the daemon's metrics listener, Prometheus' API): [`http_request`].

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What the server does for one path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// 200 with the body (or 304 when the client's `If-None-Match` is the current ETag).
    Serve,
    /// This status with a short text body (404, 500, ...).
    Status(u16),
    /// Serve, but only after this delay (longer than the daemon's timeout: a server that hangs).
    Slow(Duration),
}

/// One path's state.
struct Resource {
    body: String,
    /// Bumped by every [`HttpServer::set`], so that the ETag changes with the body.
    version: u64,
    behaviour: Behaviour,
    requests: usize,
    not_modified: usize,
}

/// Longest request head read; a test's client sends far less.
const MAX_HEAD: usize = 16 * 1024;
/// How often the accept loop looks at the stop flag.
const POLL: Duration = Duration::from_millis(10);

/// The server; stopped (its port closed) by [`HttpServer::stop`] or on Drop.
pub struct HttpServer {
    addr: SocketAddr,
    resources: Arc<Mutex<HashMap<String, Resource>>>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl HttpServer {
    /// Starts on `127.0.0.1:<free port>`.
    pub fn start() -> HttpServer {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind the test HTTP server");
        Self::serve(listener)
    }

    /// Starts on a given loopback address (to come back on the port of a stopped server).
    pub fn start_on(addr: SocketAddr) -> HttpServer {
        let listener = TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind the test HTTP server on {addr}: {e}"));
        Self::serve(listener)
    }

    fn serve(listener: TcpListener) -> HttpServer {
        let addr = listener.local_addr().expect("the server's address");
        listener.set_nonblocking(true).expect("a non-blocking listener");
        let resources: Arc<Mutex<HashMap<String, Resource>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let accept = {
            let resources = Arc::clone(&resources);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let resources = Arc::clone(&resources);
                            let stop = Arc::clone(&stop);
                            std::thread::spawn(move || handle(stream, &resources, &stop));
                        }
                        Err(_) => std::thread::sleep(POLL),
                    }
                }
            })
        };
        HttpServer {
            addr,
            resources,
            stop,
            accept: Some(accept),
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port><path>` (`path` starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Resource>> {
        self.resources.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Serves `body` at `path` from now on (a new ETag), and puts the path back to [`Behaviour::Serve`].
    pub fn set(&self, path: &str, body: &str) {
        let mut resources = self.lock();
        let resource = resources.entry(path.to_string()).or_insert(Resource {
            body: String::new(),
            version: 0,
            behaviour: Behaviour::Serve,
            requests: 0,
            not_modified: 0,
        });
        resource.body = body.to_string();
        resource.version += 1;
        resource.behaviour = Behaviour::Serve;
    }

    /// Changes what `path` does (its body stays for when it serves again).
    pub fn behave(&self, path: &str, behaviour: Behaviour) {
        if let Some(resource) = self.lock().get_mut(path) {
            resource.behaviour = behaviour;
        } else {
            self.set(path, "");
            self.behave(path, behaviour);
        }
    }

    /// Requests `path` got so far.
    pub fn requests(&self, path: &str) -> usize {
        self.lock().get(path).map_or(0, |r| r.requests)
    }

    /// 304 answers `path` sent so far.
    pub fn not_modified(&self, path: &str) -> usize {
        self.lock().get(path).map_or(0, |r| r.not_modified)
    }

    /// Waits until `path` got at least `count` requests, up to `timeout`; panics otherwise.
    pub fn wait_for_requests(&self, path: &str, count: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.requests(path) < count {
            assert!(
                Instant::now() < deadline,
                "{path} got {} requests within {timeout:?}, not {count}",
                self.requests(path)
            );
            std::thread::sleep(POLL * 5);
        }
    }

    /// Stops accepting and closes the port: the daemon's next download fails to connect.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Reads one request and answers it.
fn handle(mut stream: TcpStream, resources: &Mutex<HashMap<String, Resource>>, stop: &AtomicBool) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head);
    let path = head
        .lines()
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .unwrap_or("/")
        .to_string();
    let if_none_match = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("if-none-match")
            .then(|| value.trim().to_string())
    });
    let (behaviour, etag, body, matched) = {
        let mut resources = resources.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(resource) = resources.get_mut(&path) else {
            let _ = stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            return;
        };
        resource.requests += 1;
        let etag = format!("\"v{}\"", resource.version);
        let matched = resource.behaviour == Behaviour::Serve && if_none_match.as_deref() == Some(etag.as_str());
        resource.not_modified += usize::from(matched);
        (resource.behaviour, etag, resource.body.clone(), matched)
    };
    let response = match behaviour {
        Behaviour::Status(code) => {
            format!("HTTP/1.1 {code} Test\r\nContent-Length: 6\r\nConnection: close\r\n\r\nerror\n")
        }
        _ if matched => format!("HTTP/1.1 304 Not Modified\r\nETag: {etag}\r\nConnection: close\r\n\r\n"),
        Behaviour::Slow(delay) => {
            let deadline = Instant::now() + delay;
            while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
                std::thread::sleep(POLL);
            }
            ok(&etag, &body)
        }
        Behaviour::Serve => ok(&etag, &body),
    };
    let _ = stream.write_all(response.as_bytes());
}

fn ok(etag: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nETag: {etag}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// An HTTP answer as a test reads it.
#[derive(Clone, Debug)]
pub struct HttpAnswer {
    /// The status code.
    pub status: u16,
    /// The status line and headers, lowercased (header names are case-insensitive).
    pub head: String,
    /// The body, as text.
    pub body: String,
}

/// One request over HTTP/1.0 on a fresh connection (the server closes after the body, so no
/// chunked or keep-alive reading is needed: Prometheus and the daemon's metrics listener both
/// answer so), read to its end within `timeout`. Err says what failed: nothing listening, no
/// answer in time, not HTTP.
pub fn http_request(addr: SocketAddr, method: &str, path: &str, timeout: Duration) -> Result<HttpAnswer, String> {
    let mut stream =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| format!("connect {addr}: {e}"))?;
    stream.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    write!(stream, "{method} {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")
        .map_err(|e| format!("{method} http://{addr}{path}: send: {e}"))?;
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .map_err(|e| format!("{method} http://{addr}{path}: read: {e}"))?;
    let answer = String::from_utf8_lossy(&answer);
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{method} http://{addr}{path}: not an HTTP answer: {answer:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{method} http://{addr}{path}: no status in {head:?}"))?;
    Ok(HttpAnswer {
        status,
        head: head.to_ascii_lowercase(),
        body: body.to_string(),
    })
}
