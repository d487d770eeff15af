//! lapin's I/O loop as the workspace patches it (patches/lapin): a task on
//! the connection's runtime, not a thread of its own.

use std::time::Duration;

use lapin::{Connection, ConnectionProperties};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// The names of this process's threads.
fn thread_names() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|n| n.trim().to_owned())
        .collect()
}

/// Connecting starts no `lapin-io-loop` thread: the patch is in effect (an
/// upstream lapin would start one per connection, and every delivery would
/// cross between it and the runtime's thread; docs/performance.md).
#[tokio::test]
async fn a_connection_starts_no_thread_of_its_own() {
    let before = thread_names();
    let conn = Connection::connect(crate::helpers::AMQP_URL, ConnectionProperties::default())
        .await
        .unwrap();
    let channel = conn.create_channel().await.unwrap();
    channel
        .queue_declare(
            "".into(),
            lapin::options::QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            },
            Default::default(),
        )
        .await
        .unwrap();
    let after = thread_names();
    assert!(
        !after.iter().any(|n| n.contains("lapin")),
        "threads now: {after:?} (before: {before:?})"
    );
    conn.close(200, "done".into()).await.unwrap();
}

/// A connection the worker closes ends its I/O loop (and so its socket) at
/// once, even when the peer never closes its side: a first version of the
/// patch waited for a socket event after Close-Ok and kept the socket open
/// until the peer closed it (found in review, fails without the fix).
#[tokio::test]
async fn closing_a_connection_ends_its_loop_even_if_the_peer_keeps_the_socket() {
    // A proxy to the broker that never closes the client's side.
    let listener = TcpListener::bind(("127.0.0.1", crate::lifecycle::spare_port()))
        .await
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let (closed_tx, closed_rx) = tokio::sync::oneshot::channel();
    let proxy = tokio::spawn(async move {
        let (client, _) = listener.accept().await.unwrap();
        let broker = TcpStream::connect("127.0.0.1:5672").await.unwrap();
        let (mut cr, mut cw) = client.into_split();
        let (mut br, mut bw) = broker.into_split();
        // Broker -> client; at the broker's EOF the client's side stays open.
        let down = tokio::spawn(async move {
            let mut buf = vec![0u8; 16 * 1024];
            while let Ok(n) = br.read(&mut buf).await {
                if n == 0 || cw.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
            cw // kept, so the client's socket is not closed by the proxy
        });
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match cr.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if bw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = closed_tx.send(());
        drop(down);
    });
    let conn = Connection::connect(
        &format!("amqp://guest:guest@127.0.0.1:{port}/%2f"),
        ConnectionProperties::default(),
    )
    .await
    .unwrap();
    conn.close(200, "done".into()).await.unwrap();
    tokio::time::timeout(Duration::from_secs(3), closed_rx)
        .await
        .expect("the I/O loop did not end (the client never closed its socket)")
        .unwrap();
    proxy.abort();
}
