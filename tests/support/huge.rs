//! A server answering 200 with a body far bigger than any reader should take (1 GB by
//! default), made as it is sent and never held, that counts how much it got out before
//! the reader hung up: a capped reader stops it early, an uncapped one would drain it all.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// One gigabyte.
pub const GIGABYTE: u64 = 1 << 30;

/// A running huge-body server.
pub struct HugeServer {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    sent: Arc<AtomicU64>,
    requests: Arc<AtomicU64>,
}

impl HugeServer {
    /// Answers every request with `prefix` followed by filler up to `total` bytes, chunked
    /// (no length announced) unless `announce_length`.
    pub async fn start(
        content_type: &'static str,
        prefix: &'static str,
        total: u64,
        announce_length: bool,
    ) -> HugeServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let sent = Arc::new(AtomicU64::new(0));
        let requests = Arc::new(AtomicU64::new(0));
        let (s, r) = (sent.clone(), requests.clone());
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let (sent, requests) = (s.clone(), r.clone());
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 65536];
                    let _ = sock.read(&mut buf).await;
                    requests.fetch_add(1, Ordering::SeqCst);
                    let _ = answer(
                        &mut sock,
                        content_type,
                        prefix,
                        total,
                        announce_length,
                        &sent,
                    )
                    .await;
                });
            }
        });
        HugeServer {
            url,
            sent,
            requests,
        }
    }

    /// A JSON answer that opens a Prometheus matrix and never closes it within the cap.
    pub async fn prometheus() -> HugeServer {
        HugeServer::start(
            "application/json",
            "{\"status\":\"success\",\"data\":{\"resultType\":\"matrix\",\"result\":[",
            GIGABYTE,
            false,
        )
        .await
    }

    /// Body bytes written to all readers so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::SeqCst)
    }

    /// Requests answered so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }
}

async fn answer(
    sock: &mut tokio::net::TcpStream,
    content_type: &str,
    prefix: &str,
    total: u64,
    announce_length: bool,
    sent: &AtomicU64,
) -> std::io::Result<()> {
    let framing = if announce_length {
        format!("Content-Length: {total}")
    } else {
        "Transfer-Encoding: chunked".to_string()
    };
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\n{framing}\r\nConnection: close\r\n\r\n"
    );
    sock.write_all(head.as_bytes()).await?;
    let filler = "{\"metric\":{\"pod\":\"p\"},\"values\":[[1,\"1\"]]},".repeat(1500);
    let mut left = total;
    let mut piece: &[u8] = prefix.as_bytes();
    while left > 0 {
        let n = (piece.len() as u64).min(left) as usize;
        if announce_length {
            sock.write_all(&piece[..n]).await?;
        } else {
            sock.write_all(format!("{n:x}\r\n").as_bytes()).await?;
            sock.write_all(&piece[..n]).await?;
            sock.write_all(b"\r\n").await?;
        }
        sent.fetch_add(n as u64, Ordering::SeqCst);
        left -= n as u64;
        piece = filler.as_bytes();
    }
    if !announce_length {
        sock.write_all(b"0\r\n\r\n").await?;
    }
    sock.shutdown().await
}
