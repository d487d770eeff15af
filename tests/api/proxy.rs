//! A TCP proxy in front of the broker that a test can stall: bytes stop
//! passing (one way or both) while the sockets stay open, as with a broker
//! that blocks publishers (a resource alarm) or a network that stops
//! answering. Listens on a spare port; stops with the test.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};

pub struct Proxy {
    pub port: u16,
    /// Bytes from the client to the broker pass while true.
    up: Arc<AtomicBool>,
    /// Bytes from the broker to the client pass while true.
    down: Arc<AtomicBool>,
    accept: JoinHandle<()>,
}

impl Proxy {
    /// Proxies a spare local port to `upstream` (host:port).
    pub async fn start(upstream: &str) -> Proxy {
        let port = crate::lifecycle::spare_port();
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let down = Arc::new(AtomicBool::new(true));
        let upstream = upstream.to_owned();
        let (u, d) = (Arc::clone(&up), Arc::clone(&down));
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(&upstream).await else {
                    continue;
                };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::spawn(pipe(cr, sw, Arc::clone(&u)));
                tokio::spawn(pipe(sr, cw, Arc::clone(&d)));
            }
        });
        Proxy {
            port,
            up,
            down,
            accept,
        }
    }

    /// An AMQP URL through the proxy (guest, vhost /).
    pub fn amqp_url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// Stops the client -> broker direction (what a blocked publisher sees).
    pub fn stall_upstream(&self, stalled: bool) {
        self.up.store(!stalled, Ordering::SeqCst);
    }

    /// Stops both directions: a broker that answers nothing.
    pub fn stall(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.down.store(false, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    open: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        while !open.load(Ordering::SeqCst) {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
