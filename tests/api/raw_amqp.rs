//! A minimal AMQP 0-9-1 publisher that writes the frames itself, for the
//! hostile-producer tests: it sends header tables of any shape the broker
//! accepts (nested 20,000 levels deep, as large as a frame allows), which a
//! client library would refuse or overflow its own stack serializing. It
//! does only what those tests need: log in as guest, open channel 1, select
//! confirms, publish one message through the default exchange, and report
//! the broker's answer.

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// The broker's answer to one publish.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    Ack,
    Nack,
    /// The broker closed the channel or the connection: (code, text).
    Closed(u16, String),
}

/// An AMQP field table's entries (without the leading length), built by hand.
#[derive(Default, Clone)]
pub struct Table(Vec<u8>);

impl Table {
    pub fn long_string(mut self, key: &str, value: &[u8]) -> Self {
        short_str(&mut self.0, key);
        self.0.push(b'S');
        self.0.extend((value.len() as u32).to_be_bytes());
        self.0.extend(value);
        self
    }

    /// `key` = arrays nested `depth` levels deep around one string, written
    /// without recursion.
    pub fn nested(mut self, key: &str, depth: usize) -> Self {
        short_str(&mut self.0, key);
        let inner = {
            let mut v = vec![b'S'];
            v.extend(6u32.to_be_bytes());
            v.extend(b"bottom");
            v
        };
        // Level k (innermost = 1) is 'A' + len + (level k-1); its payload is
        // 5 * (k-1) + inner.len() bytes.
        for level in (1..=depth).rev() {
            self.0.push(b'A');
            let payload = 5 * (level - 1) + inner.len();
            self.0.extend((payload as u32).to_be_bytes());
        }
        self.0.extend(inner);
        self
    }
}

fn short_str(out: &mut Vec<u8>, s: &str) {
    out.push(s.len() as u8);
    out.extend(s.as_bytes());
}

fn long_str(out: &mut Vec<u8>, s: &[u8]) {
    out.extend((s.len() as u32).to_be_bytes());
    out.extend(s);
}

fn frame(kind: u8, channel: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![kind];
    f.extend(channel.to_be_bytes());
    f.extend((payload.len() as u32).to_be_bytes());
    f.extend(payload);
    f.push(0xCE);
    f
}

fn method(class: u16, id: u16, args: &[u8]) -> Vec<u8> {
    let mut p = class.to_be_bytes().to_vec();
    p.extend(id.to_be_bytes());
    p.extend(args);
    p
}

async fn read_frame(s: &mut TcpStream) -> std::io::Result<(u8, Vec<u8>)> {
    let mut head = [0u8; 7];
    s.read_exact(&mut head).await?;
    let size = u32::from_be_bytes([head[3], head[4], head[5], head[6]]) as usize;
    let mut payload = vec![0u8; size + 1];
    s.read_exact(&mut payload).await?;
    payload.pop();
    Ok((head[0], payload))
}

/// Reads frames until a method frame; returns (class, id, args).
async fn read_method(s: &mut TcpStream) -> std::io::Result<(u16, u16, Vec<u8>)> {
    loop {
        let (kind, p) = read_frame(s).await?;
        if kind == 1 && p.len() >= 4 {
            return Ok((
                u16::from_be_bytes([p[0], p[1]]),
                u16::from_be_bytes([p[2], p[3]]),
                p[4..].to_vec(),
            ));
        }
    }
}

fn close_reason(args: &[u8]) -> Answer {
    let code = u16::from_be_bytes([args[0], args[1]]);
    let len = args[2] as usize;
    Answer::Closed(
        code,
        String::from_utf8_lossy(&args[3..3 + len]).into_owned(),
    )
}

/// Publishes `body` to `queue` (default exchange, persistent) with `headers`
/// as its header table, in confirm mode; returns the broker's answer.
pub async fn publish(addr: &str, queue: &str, body: &[u8], headers: &Table) -> Answer {
    let mut s = TcpStream::connect(addr).await.expect("broker reachable");
    s.write_all(b"AMQP\x00\x00\x09\x01").await.unwrap();
    let _start = read_method(&mut s).await.unwrap();
    let mut args = 0u32.to_be_bytes().to_vec(); // empty client properties
    short_str(&mut args, "PLAIN");
    long_str(&mut args, b"\0guest\0guest");
    short_str(&mut args, "en_US");
    s.write_all(&frame(1, 0, &method(10, 11, &args)))
        .await
        .unwrap();
    let (_, _, tune) = read_method(&mut s).await.unwrap();
    let frame_max = u32::from_be_bytes([tune[2], tune[3], tune[4], tune[5]]);
    let mut args = tune[0..2].to_vec(); // the server's channel_max
    args.extend(frame_max.to_be_bytes());
    args.extend(0u16.to_be_bytes());
    s.write_all(&frame(1, 0, &method(10, 31, &args)))
        .await
        .unwrap();
    let mut args = Vec::new();
    short_str(&mut args, "/");
    short_str(&mut args, "");
    args.push(0);
    s.write_all(&frame(1, 0, &method(10, 40, &args)))
        .await
        .unwrap();
    let _open_ok = read_method(&mut s).await.unwrap();
    s.write_all(&frame(1, 1, &method(20, 10, &[0])))
        .await
        .unwrap();
    let _channel_open_ok = read_method(&mut s).await.unwrap();
    s.write_all(&frame(1, 1, &method(85, 10, &[0])))
        .await
        .unwrap();
    let _select_ok = read_method(&mut s).await.unwrap();

    let mut args = 0u16.to_be_bytes().to_vec();
    short_str(&mut args, "");
    short_str(&mut args, queue);
    args.push(0);
    let mut out = frame(1, 1, &method(60, 40, &args));
    let mut header = 60u16.to_be_bytes().to_vec();
    header.extend(0u16.to_be_bytes());
    header.extend((body.len() as u64).to_be_bytes());
    header.extend((0x2000u16 | 0x1000).to_be_bytes()); // headers, delivery-mode
    header.extend((headers.0.len() as u32).to_be_bytes());
    header.extend(&headers.0);
    header.push(2);
    out.extend(frame(2, 1, &header));
    out.extend(frame(3, 1, body));
    s.write_all(&out).await.unwrap();
    let answer = match read_method(&mut s).await {
        Ok((60, 80, _)) => Answer::Ack,
        Ok((60, 120, _)) => Answer::Nack,
        Ok((20, 40, args)) | Ok((10, 50, args)) => close_reason(&args),
        Ok(other) => panic!("unexpected method {}.{}", other.0, other.1),
        Err(e) => Answer::Closed(0, e.to_string()),
    };
    let mut args = 200u16.to_be_bytes().to_vec();
    short_str(&mut args, "");
    args.extend([0, 0, 0, 0]);
    let _ = s.write_all(&frame(1, 0, &method(10, 50, &args))).await;
    answer
}
