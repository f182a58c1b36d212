//! The server's HTTP endpoint seen from a test (tests/metrics.rs, tests/cluster.rs): one HTTP
//! exchange, `GET /metrics` and its Prometheus text read back, and `promtool check metrics`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::Server;

/// One HTTP exchange: (status, head, body); `None` when the server closed without an answer.
pub fn http(addr: SocketAddr, request: &[u8]) -> Option<(u16, String, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s.write_all(request).ok()?;
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, head.to_string(), body.to_string()))
}

/// `GET path` (HTTP/1.1).
pub fn get(addr: SocketAddr, path: &str) -> Option<(u16, String, String)> {
    http(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes(),
    )
}

/// Where `/metrics` answers: an address, or a test server's.
pub trait Endpoint {
    fn metrics_addr(&self) -> SocketAddr;
}
impl Endpoint for SocketAddr {
    fn metrics_addr(&self) -> SocketAddr {
        *self
    }
}
impl Endpoint for Server {
    fn metrics_addr(&self) -> SocketAddr {
        self.metrics
    }
}
impl<T: Endpoint + ?Sized> Endpoint for &T {
    fn metrics_addr(&self) -> SocketAddr {
        (**self).metrics_addr()
    }
}

/// `GET /metrics` at `at`: the Prometheus text (the answer must be 200 with the text
/// format's 0.0.4 Content-Type).
pub fn scrape(at: impl Endpoint) -> String {
    let (status, head, body) =
        get(at.metrics_addr(), "/metrics").expect("an answer to GET /metrics");
    assert_eq!(status, 200, "{head}");
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    body
}

/// Scrapes `srv` until `f` holds (bounded: 60 s; shard-local figures are published every
/// second); the last scrape. The failure shows the last scrape and the server's log.
pub fn scrape_until(srv: &Server, what: &str, f: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = scrape(srv.metrics);
        if f(&text) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{what} never held; last scrape:\n{text}\nlog:\n{}",
            srv.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The sum of every sample of `name` whose labels include all of `labels`.
pub fn sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut total = 0.0;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (n, ls) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if n != name {
            continue;
        }
        if labels
            .iter()
            .all(|(k, v)| ls.split(',').any(|p| p == format!("{k}=\"{v}\"")))
        {
            total += value.parse::<f64>().unwrap_or(f64::NAN);
        }
    }
    total
}

/// The value of the unlabelled sample `name` (panics when absent).
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (n, v) = l.rsplit_once(' ')?;
            (n == name).then(|| v.parse::<f64>().unwrap())
        })
        .unwrap_or_else(|| panic!("no sample {name} in:\n{text}"))
}

/// The sum over the labelled samples of `name` (over shards, for one labelled `shard` only).
pub fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// Runs `promtool check metrics` (Debian package `prometheus`) on `text`; panics with its
/// complaints. A missing promtool follows the peer-tool rule ([`super::peers::tools`]): it
/// fails under `LQD_REQUIRE_PEERS`, else the check is reported skipped.
pub fn promtool_check(text: &str) {
    if !super::peers::tools("promtool check", &["promtool"]) {
        return;
    }
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
