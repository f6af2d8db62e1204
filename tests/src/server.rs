//! A scriptable HTTP/1.1 server on 127.0.0.1 for tests: every request is recorded, and a
//! handler decides the reply, which can be delayed, truncated mid-body or oversized.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt as _;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// Path and query, e.g. `/v1/images/generations?x=1`.
    pub uri: String,
    /// Header names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn path(&self) -> &str {
        self.uri.split('?').next().unwrap_or(&self.uri)
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// The reply to one request.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    /// Wait this long before sending the headers.
    pub delay: Duration,
    /// Announce the full length but close the connection after this many body bytes.
    pub truncate_at: Option<usize>,
    /// Send the body at this many bytes per second, as a link of that speed would.
    pub rate: Option<u64>,
}

impl Reply {
    pub fn new(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Bytes::new(),
            delay: Duration::ZERO,
            truncate_at: None,
            rate: None,
        }
    }

    pub fn json(status: u16, value: &serde_json::Value) -> Self {
        Self::new(status)
            .header("content-type", "application/json")
            .body(value.to_string().into_bytes())
    }

    pub fn bytes(status: u16, content_type: &str, body: Vec<u8>) -> Self {
        Self::new(status)
            .header("content-type", content_type)
            .body(body)
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Pace the body at `bytes_per_second`.
    pub fn rate(mut self, bytes_per_second: u64) -> Self {
        self.rate = Some(bytes_per_second.max(1));
        self
    }

    pub fn truncate_at(mut self, bytes: usize) -> Self {
        self.truncate_at = Some(bytes);
        self
    }
}

type Handler = dyn Fn(&Recorded) -> Reply + Send + Sync;

/// A running server; stops when dropped.
pub struct TestServer {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestServer {
    /// Start a server on an ephemeral port of 127.0.0.1 answering every request with `handler`.
    pub fn start(handler: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> Self {
        let handler: Arc<Handler> = Arc::new(handler);
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (shutdown_tx, mut shutdown_rx) = oneshot::channel::<()>();
        let recorded = requests.clone();
        let thread = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let Ok(listener) = TcpListener::bind("127.0.0.1:0").await else { return };
                let Ok(addr) = listener.local_addr() else { return };
                let _ = addr_tx.send(addr);
                loop {
                    tokio::select! {
                        _ = &mut shutdown_rx => break,
                        accepted = listener.accept() => {
                            let Ok((stream, _)) = accepted else { continue };
                            let handler = handler.clone();
                            let recorded = recorded.clone();
                            tokio::spawn(async move {
                                let service = service_fn(move |req| serve(req, handler.clone(), recorded.clone()));
                                let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                            });
                        }
                    }
                }
            });
        });
        let addr = addr_rx
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("test server did not start"));
        Self {
            addr,
            requests,
            shutdown: Some(shutdown_tx),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

type ReplyBody = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

async fn serve(
    req: hyper::Request<Incoming>,
    handler: Arc<Handler>,
    recorded: Arc<Mutex<Vec<Recorded>>>,
) -> Result<hyper::Response<ReplyBody>, Infallible> {
    let method = req.method().to_string();
    let uri = req
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_else(|| "/".into());
    let headers = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    let request = Recorded {
        method,
        uri,
        headers,
        body,
    };
    let reply = handler(&request);
    if let Ok(mut all) = recorded.lock() {
        all.push(request);
    }
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let mut builder = hyper::Response::builder().status(reply.status);
    for (name, value) in &reply.headers {
        builder = builder.header(name, value);
    }
    let full_len = reply.body.len();
    let body: ReplyBody = match reply.truncate_at {
        Some(cut) => {
            builder = builder.header("content-length", full_len.to_string());
            let first = reply.body.slice(..cut.min(full_len));
            // The reset comes a moment after the first bytes, so hyper writes those out first
            // (with both ready at once it drops the connection before sending any).
            let reset = futures_util::stream::once(async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "truncated on purpose",
                ))
            });
            let chunks = futures_util::stream::iter([Ok(Frame::data(first))]).chain(reset);
            BodyExt::boxed(StreamBody::new(chunks))
        }
        None => match reply.rate {
            Some(rate) => {
                builder = builder.header("content-length", full_len.to_string());
                BodyExt::boxed(StreamBody::new(paced(reply.body, rate)))
            }
            None => BodyExt::boxed(
                http_body_util::Full::new(reply.body).map_err(|never| match never {}),
            ),
        },
    };
    Ok(builder.body(body).unwrap_or_else(|_| {
        hyper::Response::new(BodyExt::boxed(
            http_body_util::Empty::new().map_err(|never| match never {}),
        ))
    }))
}

/// `body` in 64 KiB frames, each sent when a link of `rate` bytes per second would have
/// delivered it.
fn paced(
    body: Bytes,
    rate: u64,
) -> impl futures_util::Stream<Item = Result<Frame<Bytes>, std::io::Error>> + Send {
    const FRAME: usize = 64 * 1024;
    let start = tokio::time::Instant::now();
    futures_util::stream::unfold(0, move |sent| {
        let body = body.clone();
        async move {
            if sent >= body.len() {
                return None;
            }
            let end = (sent + FRAME).min(body.len());
            let due = Duration::from_secs_f64(end as f64 / rate as f64);
            tokio::time::sleep_until(start + due).await;
            Some((Ok(Frame::data(body.slice(sent..end))), end))
        }
    })
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    #[test]
    fn a_truncated_reply_sends_its_first_bytes_then_resets() {
        let server = TestServer::start(|_| Reply::new(200).body(vec![7; 1000]).truncate_at(400));
        let mut stream = std::net::TcpStream::connect(server.addr()).unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nhost: test\r\n\r\n")
            .unwrap();
        let mut received = Vec::new();
        let mut buffer = [0; 4096];
        // Read until the server closes or resets the connection.
        while let Ok(n) = stream.read(&mut buffer) {
            if n == 0 {
                break;
            }
            received.extend_from_slice(&buffer[..n]);
        }
        let text = String::from_utf8_lossy(&received);
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains("content-length: 1000"), "{head}");
        assert_eq!(body.len(), 400, "the bytes before the cut arrive");
    }

    #[test]
    fn a_paced_reply_takes_as_long_as_its_rate_says() {
        let server = TestServer::start(|_| Reply::new(200).body(vec![1; 300_000]).rate(1_000_000));
        let mut stream = std::net::TcpStream::connect(server.addr()).unwrap();
        let started = std::time::Instant::now();
        stream
            .write_all(b"GET / HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n")
            .unwrap();
        let mut received = Vec::new();
        stream.read_to_end(&mut received).unwrap();
        let took = started.elapsed();
        let text = String::from_utf8_lossy(&received);
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains("content-length: 300000"), "{head}");
        assert_eq!(body.len(), 300_000);
        // 0.3 s at 1 MB/s; a loaded machine may add to it.
        assert!(
            took >= Duration::from_millis(290) && took < Duration::from_secs(3),
            "{took:?}"
        );
    }
}
