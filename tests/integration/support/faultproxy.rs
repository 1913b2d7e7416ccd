//! A seeded, fault-injecting HTTP/1.1 reverse proxy between keepsake's S3 client and a real S3
//! server (Garage) on loopback, so S3 tests can prove that retries and verification survive the
//! failures a real object store produces. It never alters a byte that SigV4 signs.
//!
//! Design: std threads and blocking I/O (an accept thread, one thread per client connection):
//! the tests are synchronous and Cargo.toml does not declare tokio's `net` feature. Client
//! connections are kept alive and served one request at a time; each forwarded request gets a
//! fresh upstream connection with `Connection: close` (replacing any `Connection` header; all
//! other bytes unchanged), and the whole response is read before anything is written back, so a
//! fault can cut it at an exact byte. `Expect: 100-continue` is answered by the proxy and still
//! forwarded (it may be signed); upstream 1xx responses are skipped. Bodies are held in memory.
//!
//! Determinism: one `StdRng` seeded with `seed`; every request takes five draws in a fixed order
//! whatever the settings, so the n-th request to arrive gets the same decision. Under concurrency
//! arrival order varies: the same seed repeats the fault sequence, not always on the same request.
//! Precedence: fail_all > slowdown > cut_upload > reset > truncate; a stall can precede any
//! response. A fault that does not apply (cut_upload needs a `Content-Length` body > 1 byte,
//! truncate a GET response body > 1 byte) becomes plain forwarding and is not counted.
//!
//! Limits: the RST uses SO_LINGER 0 through `tokio::net::TcpSocket` (std's `set_linger` is
//! unstable), which needs tokio's `net` feature: tokio-postgres' default `runtime` feature turns it
//! on in this build; no tokio runtime is involved. Drop stops the accept thread; connection threads
//! end when their client disconnects (upstream reads time out after 60 s).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

const MAX_HEAD: usize = 64 * 1024;
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(60);
const BAD_GATEWAY: &[u8] =
    b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
const SLOWDOWN_BODY: &str =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SlowDown</Code>\
<Message>Please reduce your request rate.</Message><RequestId>fault</RequestId></Error>";

pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Probability (0.0..=1.0) that a request is answered 503 SlowDown (S3 XML error body)
    /// without being forwarded.
    pub slowdown: f64,
    /// Probability that the response is cut after part of its body and the connection reset
    /// (TCP RST).
    pub reset_mid_body: f64,
    /// Probability that the response is delayed by `stall_for` before the first byte is sent.
    pub stall: f64,
    /// How long a stall lasts; zero means 2 s.
    pub stall_for: Duration,
    /// Probability that a GET response is truncated: full `Content-Length`, half the body, FIN.
    pub truncate_download: f64,
    /// Probability that an upload body is read only in part and the connection closed unanswered.
    pub cut_upload: f64,
    /// Fail every request with 503 (retry budget exhaustion test). Overrides the rest.
    pub fail_all: bool,
    /// Response headers removed (lower case), e.g. to play a store that ignores checksums.
    pub drop_response_headers: Vec<String>,
    /// Only requests whose target contains one of these are faulted (e.g. `/packs/`); others
    /// pass. Empty: every request may be faulted.
    pub only_paths_containing: Vec<String>,
    /// Only GET requests are faulted (reads of objects; HEAD, PUT, LIST… pass).
    pub only_gets: bool,
}

/// What the proxy did. `forwarded` counts requests that got a response from upstream,
/// including the ones that were then reset or truncated.
#[derive(Debug, Clone, Default)]
pub struct ProxyStats {
    pub requests: u64,
    pub slowdown: u64,
    pub reset: u64,
    pub stalled: u64,
    pub truncated: u64,
    pub cut_upload: u64,
    pub forwarded: u64,
}

struct Shared {
    upstream: SocketAddr,
    faults: Mutex<Faults>,
    rng: Mutex<StdRng>,
    stats: Mutex<ProxyStats>,
    stop: AtomicBool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Forward,
    SlowDown,
    CutUpload,
    Reset,
    Truncate,
}

enum Framing {
    Empty,
    Length(usize),
    Chunked,
    UntilEof,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl FaultProxy {
    /// Listen on 127.0.0.1:0, forward to `upstream` (e.g. "127.0.0.1:3900").
    pub fn start(upstream: SocketAddr, seed: u64, faults: Faults) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("fault proxy: bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("fault proxy: local address");
        let shared = Arc::new(Shared {
            upstream,
            faults: Mutex::new(faults),
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            stats: Mutex::default(),
            stop: AtomicBool::new(false),
        });
        let s = Arc::clone(&shared);
        let accept = thread::Builder::new()
            .name("faultproxy-accept".into())
            .spawn(move || accept_loop(&s, &listener))
            .expect("fault proxy: spawn accept thread");
        FaultProxy {
            addr,
            shared,
            accept: Some(accept),
        }
    }

    /// "http://127.0.0.1:PORT"
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Replace the fault settings (takes effect for the next request).
    pub fn set_faults(&self, faults: Faults) {
        *lock(&self.shared.faults) = faults;
    }

    /// Counters: total requests seen, and how many got each fault.
    pub fn stats(&self) -> ProxyStats {
        lock(&self.shared.stats).clone()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr); // wakes the blocking accept()
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

impl Shared {
    fn bump(&self, count: impl FnOnce(&mut ProxyStats)) {
        count(&mut lock(&self.stats));
    }

    /// The fault for the next request (to `target`) and, if it stalls, for how long.
    fn decide(&self, method: &[u8], target: &[u8]) -> (Fault, Option<Duration>) {
        let f = lock(&self.faults).clone();
        if f.only_gets && method != b"GET" {
            return (Fault::Forward, None);
        }
        let hit = |only: &String| target.windows(only.len()).any(|w| w == only.as_bytes());
        if !f.only_paths_containing.is_empty() && !f.only_paths_containing.iter().any(hit) {
            return (Fault::Forward, None);
        }
        let draws: [f64; 5] = {
            let mut rng = lock(&self.rng);
            std::array::from_fn(|_| rng.random())
        };
        let fault = if f.fail_all || draws[0] < f.slowdown {
            Fault::SlowDown
        } else if draws[1] < f.cut_upload {
            Fault::CutUpload
        } else if draws[2] < f.reset_mid_body {
            Fault::Reset
        } else if draws[3] < f.truncate_download {
            Fault::Truncate
        } else {
            Fault::Forward
        };
        let stall_for = Some(f.stall_for)
            .filter(|d| !d.is_zero())
            .unwrap_or(Duration::from_secs(2));
        let stall = (!f.fail_all && draws[4] < f.stall).then_some(stall_for);
        (fault, stall)
    }
}

fn accept_loop(shared: &Arc<Shared>, listener: &TcpListener) {
    for stream in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = stream else {
            thread::sleep(Duration::from_millis(10)); // e.g. out of file descriptors
            continue;
        };
        let s = Arc::clone(shared);
        let _ = thread::Builder::new()
            .name("faultproxy-conn".into())
            .spawn(move || {
                let _ = stream.set_nodelay(true);
                let mut client = BufReader::new(stream);
                while let Ok(true) = serve_one(&s, &mut client) {}
            });
    }
}

/// Serves one request on a client connection; `Ok(true)` means the connection stays open.
fn serve_one(shared: &Shared, client: &mut BufReader<TcpStream>) -> io::Result<bool> {
    let Some(head) = read_head(client)? else {
        return Ok(false);
    };
    let method = word(&head[0], 0).to_vec();
    let keep_alive = !header_is(&head, "connection", "close");
    shared.bump(|s| s.requests += 1);
    let (fault, stall) = shared.decide(&method, word(&head[0], 1));
    if header_is(&head, "expect", "100-continue") {
        client
            .get_mut()
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    let framing = framing(&head, false);
    if let (Fault::CutUpload, Framing::Length(n @ 2..)) = (fault, &framing) {
        shared.bump(|s| s.cut_upload += 1);
        let mut part = vec![0; *n / 2];
        client.read_exact(&mut part)?;
        return Ok(false);
    }
    let body = read_body(client, &framing)?;

    let (mut head_out, body_out) = if fault == Fault::SlowDown {
        shared.bump(|s| s.slowdown += 1);
        let head = format!(
            "HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n",
            SLOWDOWN_BODY.len()
        );
        (head.into_bytes(), SLOWDOWN_BODY.as_bytes().to_vec())
    } else {
        match forward(shared, &head, &body, &method) {
            Ok(response) => {
                shared.bump(|s| s.forwarded += 1);
                response
            }
            Err(_) => {
                client.get_mut().write_all(BAD_GATEWAY)?;
                return Ok(false);
            }
        }
    };
    if !keep_alive {
        head_out.extend_from_slice(b"Connection: close\r\n");
    }
    head_out.extend_from_slice(b"\r\n");

    if let Some(delay) = stall {
        shared.bump(|s| s.stalled += 1);
        thread::sleep(delay);
    }
    let out = client.get_mut();
    match fault {
        Fault::Reset => {
            shared.bump(|s| s.reset += 1);
            // Half the body; with no body to speak of, half the head, so no complete response.
            let cut = if body_out.len() > 1 {
                head_out.len() + body_out.len() / 2
            } else {
                head_out.len() / 2
            };
            head_out.extend_from_slice(&body_out);
            out.write_all(&head_out[..cut])?;
            out.flush()?;
            thread::sleep(Duration::from_millis(20)); // let the partial bytes reach the client
            arm_reset(out);
            Ok(false)
        }
        Fault::Truncate if method == b"GET" && body_out.len() > 1 => {
            shared.bump(|s| s.truncated += 1);
            head_out.extend_from_slice(&body_out[..body_out.len() / 2]);
            out.write_all(&head_out)?;
            Ok(false) // closing sends FIN
        }
        _ => {
            head_out.extend_from_slice(&body_out);
            out.write_all(&head_out)?;
            Ok(keep_alive)
        }
    }
}

/// Sends the request upstream on a fresh connection and reads the whole response. Returns the
/// response head without its blank line (and without `Connection`/`Keep-Alive`), and the body.
fn forward(
    shared: &Shared,
    head: &[Vec<u8>],
    body: &[u8],
    method: &[u8],
) -> io::Result<(Vec<u8>, Vec<u8>)> {
    let mut request = without(head, &["connection"]);
    request.extend_from_slice(b"Connection: close\r\n\r\n");
    request.extend_from_slice(body);
    let upstream = TcpStream::connect_timeout(&shared.upstream, Duration::from_secs(10))?;
    upstream.set_read_timeout(Some(UPSTREAM_TIMEOUT))?;
    upstream.set_write_timeout(Some(UPSTREAM_TIMEOUT))?;
    let mut upstream = BufReader::new(upstream);
    upstream.get_mut().write_all(&request)?;

    let (response, code) = loop {
        let h = read_head(&mut upstream)?.ok_or_else(|| invalid("upstream sent no response"))?;
        let code: u16 = String::from_utf8_lossy(word(&h[0], 1)).parse().unwrap_or(0);
        if !(100..200).contains(&code) {
            break (h, code);
        }
    };
    let framing = match (method, code) {
        (b"HEAD", _) | (_, 204 | 304) => Framing::Empty,
        _ => framing(&response, true),
    };
    let body = read_body(&mut upstream, &framing)?;
    let dropped = lock(&shared.faults).drop_response_headers.clone();
    let mut drop: Vec<&str> = vec!["connection", "keep-alive"];
    drop.extend(dropped.iter().map(String::as_str));
    let mut out = without(&response, &drop);
    if let Framing::UntilEof = framing {
        out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    Ok((out, body))
}

/// Arms an abortive close: with SO_LINGER 0 the socket's last close (when the connection's
/// `BufReader` drops) sends RST, not FIN. The duplicate handle only sets the option.
fn arm_reset(stream: &TcpStream) {
    if let Ok(dup) = stream.try_clone() {
        #[allow(deprecated)] // deprecated for non-zero lingers, which block; zero does not
        let _ = tokio::net::TcpSocket::from_std_stream(dup).set_linger(Some(Duration::ZERO));
    }
}

/// The `i`-th space-separated word of a start line (method, status code).
fn word(line: &[u8], i: usize) -> &[u8] {
    line.split(|&b| b == b' ').nth(i).unwrap_or_default()
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// Reads a message head: the start line and header lines, each with its line ending, without
/// the blank line. `None` when the peer closed before sending anything.
fn read_head(r: &mut impl BufRead) -> io::Result<Option<Vec<Vec<u8>>>> {
    let (mut lines, mut total) = (Vec::<Vec<u8>>::new(), 0);
    loop {
        let mut line = Vec::new();
        let limit = (MAX_HEAD + 1).saturating_sub(total) as u64;
        let n = r.by_ref().take(limit).read_until(b'\n', &mut line)?;
        total += n;
        if n == 0 && lines.is_empty() {
            return Ok(None);
        }
        if !line.ends_with(b"\n") {
            return Err(invalid("truncated or oversized message head"));
        }
        if line.trim_ascii().is_empty() {
            if lines.is_empty() {
                continue; // a stray line ending between messages
            }
            return Ok(Some(lines));
        }
        lines.push(line);
    }
}

fn is_header(line: &[u8], name: &str) -> bool {
    line.len() > name.len()
        && line[name.len()] == b':'
        && line[..name.len()].eq_ignore_ascii_case(name.as_bytes())
}

/// The head's lines joined, without the headers named in `drop`.
fn without(head: &[Vec<u8>], drop: &[&str]) -> Vec<u8> {
    let keep = |l: &&Vec<u8>| !drop.iter().any(|name| is_header(l, name));
    head.iter().filter(keep).flatten().copied().collect()
}

fn header_value(head: &[Vec<u8>], name: &str) -> Option<String> {
    let line = head.iter().skip(1).find(|l| is_header(l, name))?;
    Some(String::from_utf8_lossy(line[name.len() + 1..].trim_ascii()).into_owned())
}

/// Whether header `name` lists `token` (comma-separated, case-insensitive).
fn header_is(head: &[Vec<u8>], name: &str, token: &str) -> bool {
    header_value(head, name)
        .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}

/// How the body after `head` is delimited; a request without framing headers has no body.
fn framing(head: &[Vec<u8>], response: bool) -> Framing {
    if header_is(head, "transfer-encoding", "chunked") {
        Framing::Chunked
    } else if let Some(n) = header_value(head, "content-length").and_then(|v| v.parse().ok()) {
        Framing::Length(n)
    } else if response {
        Framing::UntilEof
    } else {
        Framing::Empty
    }
}

fn read_line(r: &mut impl BufRead, buf: &mut Vec<u8>) -> io::Result<()> {
    let n = r.by_ref().take(MAX_HEAD as u64).read_until(b'\n', buf)?;
    if n == 0 || !buf.ends_with(b"\n") {
        return Err(invalid("truncated chunked body"));
    }
    Ok(())
}

/// Reads a body as it is on the wire (chunk framing included, so it can be forwarded verbatim).
fn read_body(r: &mut impl BufRead, framing: &Framing) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    match *framing {
        Framing::Empty => {}
        Framing::Length(n) => {
            body.resize(n, 0);
            r.read_exact(&mut body)?;
        }
        Framing::UntilEof => {
            r.read_to_end(&mut body)?;
        }
        Framing::Chunked => loop {
            let start = body.len();
            read_line(r, &mut body)?;
            let size_line = String::from_utf8_lossy(&body[start..]).into_owned();
            let size_hex = size_line.split(';').next().unwrap_or_default().trim();
            let size =
                usize::from_str_radix(size_hex, 16).map_err(|_| invalid("bad chunk size"))?;
            if size == 0 {
                loop {
                    let trailer = body.len();
                    read_line(r, &mut body)?;
                    if body[trailer..].trim_ascii().is_empty() {
                        break;
                    }
                }
                break;
            }
            let data = body.len();
            body.resize(data + size, 0);
            r.read_exact(&mut body[data..])?;
            read_line(r, &mut body)?; // the line ending after the chunk data
        },
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    type Seen = Arc<Mutex<Vec<Vec<u8>>>>;

    /// An upstream that answers every request with `hello world` and records the raw request.
    fn upstream() -> (SocketAddr, Seen) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind upstream");
        let addr = listener.local_addr().expect("upstream address");
        let seen = Seen::default();
        let record = Arc::clone(&seen);
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut r = BufReader::new(stream);
                let Ok(Some(head)) = read_head(&mut r) else {
                    continue;
                };
                let Ok(body) = read_body(&mut r, &framing(&head, false)) else {
                    continue;
                };
                lock(&record).push([head.concat(), b"\r\n".to_vec(), body].concat());
                let reply = b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\nConnection: close\r\n\r\n\
                              hello world";
                let _ = r.get_mut().write_all(reply);
            }
        });
        (addr, seen)
    }

    fn connect(proxy: &FaultProxy) -> BufReader<TcpStream> {
        let s = TcpStream::connect(proxy.addr).expect("connect to proxy");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("read timeout");
        BufReader::new(s)
    }

    /// Sends `request` and reads one response: its status lines (1xx first, `|`-joined), body.
    fn exchange(c: &mut BufReader<TcpStream>, request: &str) -> (String, String) {
        c.get_mut()
            .write_all(request.as_bytes())
            .expect("send request");
        let mut statuses = Vec::new();
        loop {
            let head = read_head(c)
                .expect("read response head")
                .expect("a response");
            statuses.push(String::from_utf8_lossy(&head[0]).trim_end().to_string());
            if !head[0].starts_with(b"HTTP/1.1 1") {
                let body = read_body(c, &framing(&head, true)).expect("read response body");
                return (
                    statuses.join("|"),
                    String::from_utf8_lossy(&body).into_owned(),
                );
            }
        }
    }

    #[test]
    fn forwards_signed_headers_byte_exact_and_keeps_the_client_connection() {
        let (up, seen) = upstream();
        let proxy = FaultProxy::start(up, 1, Faults::default());
        let mut c = connect(&proxy);
        let put = "PUT /b/k HTTP/1.1\r\nHost: 127.0.0.1:9\r\nx-amz-date: 20240101T000000Z\r\n\
                   Connection: keep-alive\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n\
                   abcde";
        let (status, body) = exchange(&mut c, put);
        assert_eq!(status, "HTTP/1.1 100 Continue|HTTP/1.1 200 OK");
        assert_eq!(body, "hello world");
        let (status, _) = exchange(&mut c, "GET /b/k HTTP/1.1\r\nHost: 127.0.0.1:9\r\n\r\n");
        assert_eq!(
            status, "HTTP/1.1 200 OK",
            "same client connection, second request"
        );

        let sent = String::from_utf8_lossy(&lock(&seen)[0]).into_owned();
        for part in [
            "\r\nHost: 127.0.0.1:9\r\n",
            "\r\nx-amz-date: 20240101T000000Z\r\n",
            "\r\nExpect: 100-continue\r\n",
        ] {
            assert!(sent.contains(part), "{part:?} missing from {sent:?}");
        }
        assert!(
            sent.contains("\r\nConnection: close\r\n") && !sent.contains("keep-alive"),
            "{sent:?}"
        );
        assert!(sent.ends_with("\r\n\r\nabcde"), "{sent:?}");
        let stats = proxy.stats();
        assert_eq!((stats.requests, stats.forwarded), (2, 2), "{stats:?}");
    }

    #[test]
    fn fail_all_answers_slowdown_without_forwarding_and_drains_the_body() {
        let (up, seen) = upstream();
        let proxy = FaultProxy::start(
            up,
            1,
            Faults {
                fail_all: true,
                ..Faults::default()
            },
        );
        let mut c = connect(&proxy);
        for _ in 0..2 {
            let (status, body) = exchange(
                &mut c,
                "PUT /b/k HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
            );
            assert_eq!(status, "HTTP/1.1 503 Slow Down");
            assert!(body.contains("<Code>SlowDown</Code>"), "{body}");
        }
        assert!(lock(&seen).is_empty());
        let stats = proxy.stats();
        assert_eq!(
            (stats.requests, stats.slowdown, stats.forwarded),
            (2, 2, 0),
            "{stats:?}"
        );
    }

    /// Runs `n` one-shot GETs in sequence through a proxy seeded with `seed`: what each saw.
    fn outcomes(seed: u64, n: usize) -> (Vec<String>, ProxyStats) {
        let (up, _) = upstream();
        let faults = Faults {
            slowdown: 0.25,
            reset_mid_body: 0.25,
            truncate_download: 0.25,
            stall: 0.25,
            stall_for: Duration::from_millis(1),
            ..Faults::default()
        };
        let proxy = FaultProxy::start(up, seed, faults);
        let seen = (0..n)
            .map(|_| {
                let mut c = connect(&proxy);
                c.get_mut()
                    .write_all(b"GET /b/k HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    .expect("send");
                let mut raw = Vec::new();
                match c.read_to_end(&mut raw) {
                    Ok(_) => String::from_utf8_lossy(&raw).into_owned(),
                    Err(e) => format!("{:?}", e.kind()),
                }
            })
            .collect();
        (seen, proxy.stats())
    }

    #[test]
    fn same_seed_gives_the_same_fault_sequence() {
        let (a, stats_a) = outcomes(42, 40);
        let (b, stats_b) = outcomes(42, 40);
        assert_eq!(a, b);
        assert_eq!(format!("{stats_a:?}"), format!("{stats_b:?}"));
        assert!(a.iter().any(|o| o == "ConnectionReset"), "{a:?}");
        assert!(
            a.iter().any(|o| o.ends_with("\r\n\r\nhello")),
            "a truncated body: {a:?}"
        );
        assert!(
            stats_a.slowdown > 0 && stats_a.stalled > 0 && stats_a.forwarded > 0,
            "{stats_a:?}"
        );
        assert_ne!(a, outcomes(43, 40).0, "another seed, another sequence");
    }
}
