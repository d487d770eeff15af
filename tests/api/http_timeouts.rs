//! HTTP connections that idle or dribble are closed after the configured
//! timeouts, so a slow client cannot hold the worker's sockets forever.

use std::time::{Duration, Instant};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::helpers::spawn_app_with;

/// Reads until the server closes; what it sent, and when it closed.
async fn until_closed(s: &mut TcpStream) -> (String, Instant) {
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    (String::from_utf8_lossy(&buf).into_owned(), Instant::now())
}

#[tokio::test]
async fn idle_and_dribbling_connections_are_closed() {
    let app = spawn_app_with(|s| {
        s.http.header_read_timeout_secs = 1;
        s.http.request_timeout_secs = 1;
        s.mapping.password = axn_worker::config::Secret::new("s3cret");
    })
    .await;

    // Connected, sends nothing.
    let start = Instant::now();
    let mut idle = TcpStream::connect(app.addr).await.unwrap();
    let (_, closed) = until_closed(&mut idle).await;
    let took = closed - start;
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "idle: {took:?}"
    );

    // Headers one byte every 200 ms: never completes a request.
    let start = Instant::now();
    let mut slow = TcpStream::connect(app.addr).await.unwrap();
    let dribble = async {
        for b in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n" {
            if slow.write_all(&[*b]).await.is_err() {
                return Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Instant::now()
    };
    let stopped = dribble.await;
    let took = stopped - start;
    assert!(
        took < Duration::from_secs(5),
        "slow headers held the socket {took:?}"
    );

    // A body one byte every 200 ms: 408, then closed.
    let mut body = TcpStream::connect(app.addr).await.unwrap();
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode("tccc:s3cret");
    body.write_all(
        format!("POST /number-mapping HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {auth}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{").as_bytes(),
    )
    .await
    .unwrap();
    let start = Instant::now();
    let writer = async {
        for _ in 0..40 {
            if body.write_all(b" ").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_millis(1600), writer).await;
    let (answer, closed) = until_closed(&mut body).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(closed - start < Duration::from_secs(5));

    // A prompt client is served as before.
    assert_eq!(app.get("/healthz").await.unwrap().0, 200);
}
