//! The `/metrics` and `/healthz` HTTP/1.1 responder: one request per connection, then close.
//!
//! It runs on its own thread with its own small glommio `LocalExecutor` (unpinned, 64 KiB of
//! io_uring buffer memory instead of glommio's default 10 MiB, so it fits next to the shards
//! in a small `RLIMIT_MEMLOCK`; glommio falls back to unregistered buffers when registration
//! fails). It shares nothing with the shards but the [`Exporter`]'s atomics: a slow, garbage or
//! flooding client costs this thread only, within the bounds below.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use glommio::{LocalExecutorBuilder, Placement};

use super::Exporter;

/// Largest request head (request line and headers) read; a longer one gets 431.
pub const MAX_REQUEST: usize = 8 * 1024;
/// Most connections served at once; more are closed at once.
pub const MAX_CONNECTIONS: usize = 16;
/// A connection's whole exchange (request read, response written) must end within this.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(5);

/// Binds `addr` and serves it on a new thread. Returns once the listener is bound (or could
/// not be: the error names the address).
pub fn start(addr: SocketAddr, exporter: Arc<Exporter>) -> std::io::Result<()> {
    // glommio binds with SO_REUSEPORT, which would let a second server share the port
    // silently: a plain bind first refuses an address another process listens on.
    drop(std::net::TcpListener::bind(addr)?);
    let (tx, rx) = std::sync::mpsc::channel::<std::io::Result<()>>();
    let spawned = LocalExecutorBuilder::new(Placement::Unbound)
        .name("metrics")
        .io_memory(64 * 1024)
        .spawn(move || async move {
            let listener = match TcpListener::bind(addr) {
                Ok(l) => l,
                Err(e) => {
                    let _ = tx.send(Err(std::io::Error::other(e.to_string())));
                    return;
                }
            };
            let _ = tx.send(Ok(()));
            accept_loop(listener, exporter).await;
        });
    if let Err(e) = spawned {
        return Err(std::io::Error::other(format!(
            "cannot start the metrics executor: {e}"
        )));
    }
    rx.recv()
        .unwrap_or_else(|_| Err(std::io::Error::other("the metrics thread stopped")))
}

async fn accept_loop(listener: TcpListener, exporter: Arc<Exporter>) {
    let open = Rc::new(std::cell::Cell::new(0usize));
    loop {
        let stream = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!("metrics accept: {e}");
                // EMFILE and the like: do not spin.
                glommio::timer::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if open.get() >= MAX_CONNECTIONS {
            drop(stream);
            continue;
        }
        open.set(open.get() + 1);
        let (open, exporter) = (open.clone(), exporter.clone());
        glommio::spawn_local(async move {
            let _ = glommio::timer::timeout(CONNECTION_TIMEOUT, async {
                serve(stream, &exporter).await;
                Ok(())
            })
            .await;
            open.set(open.get().saturating_sub(1));
        })
        .detach();
    }
}

/// What a request head asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    Metrics { head: bool },
    Health { head: bool },
    NotFound,
    MethodNotAllowed,
    BadRequest,
}

/// Routes a request head (the octets before the blank line). Never panics.
pub fn route(head: &[u8]) -> Route {
    let Ok(text) = std::str::from_utf8(head) else {
        return Route::BadRequest;
    };
    let line = text.split("\r\n").next().unwrap_or("");
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Route::BadRequest;
    };
    if !version.starts_with("HTTP/1.") || !target.starts_with('/') || method.is_empty() {
        return Route::BadRequest;
    }
    let head = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Route::MethodNotAllowed,
    };
    let path = target.split('?').next().unwrap_or(target);
    match path {
        "/metrics" => Route::Metrics { head },
        "/healthz" => Route::Health { head },
        _ => Route::NotFound,
    }
}

async fn serve(mut stream: TcpStream, exporter: &Arc<Exporter>) {
    let mut buf = vec![0u8; MAX_REQUEST];
    let mut n = 0;
    let end = loop {
        if let Some(p) = buf
            .get(..n)
            .and_then(|b| b.windows(4).position(|w| w == b"\r\n\r\n"))
        {
            break p;
        }
        if n == buf.len() {
            let _ = respond(
                &mut stream,
                "431 Request Header Fields Too Large",
                "text/plain",
                b"request head over 8192 octets\n",
                false,
            )
            .await;
            return;
        }
        match stream.read(&mut buf[n..]).await {
            Ok(0) | Err(_) => return,
            Ok(k) => n += k,
        }
    };
    let (status, ctype, body, head): (&str, &str, Vec<u8>, bool) =
        match route(buf.get(..end).unwrap_or(&[])) {
            Route::Metrics { head } => (
                "200 OK",
                prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
                exporter.encode().into_bytes(),
                head,
            ),
            Route::Health { head } => {
                if exporter.healthy() {
                    ("200 OK", "text/plain", b"ok\n".to_vec(), head)
                } else {
                    (
                        "503 Service Unavailable",
                        "text/plain",
                        b"not serving (starting or shutting down)\n".to_vec(),
                        head,
                    )
                }
            }
            Route::NotFound => (
                "404 Not Found",
                "text/plain",
                b"not found: GET /metrics or /healthz\n".to_vec(),
                false,
            ),
            Route::MethodNotAllowed => (
                "405 Method Not Allowed",
                "text/plain",
                b"only GET and HEAD\n".to_vec(),
                false,
            ),
            Route::BadRequest => (
                "400 Bad Request",
                "text/plain",
                b"bad request\n".to_vec(),
                false,
            ),
        };
    let _ = respond(&mut stream, status, ctype, &body, head).await;
}

async fn respond(
    stream: &mut TcpStream,
    status: &str,
    ctype: &str,
    body: &[u8],
    head_only: bool,
) -> std::io::Result<()> {
    let allow = if status.starts_with("405") {
        "Allow: GET, HEAD\r\n"
    } else {
        ""
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n{allow}Connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    if !head_only {
        stream.write_all(body).await?;
    }
    stream.flush().await?;
    let _ = stream.shutdown(std::net::Shutdown::Write).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(
            route(b"GET /metrics HTTP/1.1\r\nHost: x"),
            Route::Metrics { head: false }
        );
        assert_eq!(
            route(b"HEAD /healthz?x=1 HTTP/1.0"),
            Route::Health { head: true }
        );
        assert_eq!(route(b"GET /other HTTP/1.1"), Route::NotFound);
        assert_eq!(route(b"POST /metrics HTTP/1.1"), Route::MethodNotAllowed);
        assert_eq!(route(b"GET /metrics"), Route::BadRequest);
        assert_eq!(route(b"GET metrics HTTP/1.1"), Route::BadRequest);
        assert_eq!(route(b"GET /metrics SPDY/3"), Route::BadRequest);
        assert_eq!(route(b"GET  /metrics HTTP/1.1"), Route::BadRequest);
        assert_eq!(route(b"\xff\xfe\x00"), Route::BadRequest);
        assert_eq!(route(b""), Route::BadRequest);
    }

    proptest::proptest! {
        #[test]
        fn route_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = route(&bytes);
        }
    }
}
