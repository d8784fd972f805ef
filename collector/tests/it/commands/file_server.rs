//! An HTTPS file server for `file.deploy`: hand-written HTTP/1.1 so a test
//! decides whether a length is announced (a server that streams without
//! `Content-Length` must still be cut off at the size limit), behind the
//! TLS front of a fresh test CA.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::http_sink::tls_front;

pub struct File {
    pub body: Vec<u8>,
    /// Announce `Content-Length` (else the body ends with the connection).
    pub length: bool,
}

pub struct FileServer {
    /// `https://127.0.0.1:PORT`
    pub base: String,
    pub ca_pem: String,
    /// Requests for a known file so far.
    pub requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl FileServer {
    pub async fn start(files: HashMap<&'static str, File>) -> FileServer {
        FileServer::start_held(files, None).await
    }

    /// With `release`, every response waits until it reads `true`: a test
    /// decides when a download proceeds.
    pub async fn start_held(
        files: HashMap<&'static str, File>,
        release: Option<tokio::sync::watch::Receiver<bool>>,
    ) -> FileServer {
        let files = Arc::new(files);
        let requests = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&requests);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let plain = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                let files = Arc::clone(&files);
                let counted = Arc::clone(&counted);
                let release = release.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tcp.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let text = String::from_utf8_lossy(&head);
                    let path = text.split_whitespace().nth(1).unwrap_or("/").to_string();
                    let Some(f) = files.get(path.as_str()) else {
                        let _ = tcp
                            .write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                            .await;
                        return;
                    };
                    counted.fetch_add(1, Ordering::SeqCst);
                    if let Some(mut r) = release {
                        let _ = r.wait_for(|go| *go).await;
                    }
                    let mut resp = b"HTTP/1.1 200 OK\r\nconnection: close\r\n".to_vec();
                    if f.length {
                        resp.extend_from_slice(
                            format!("content-length: {}\r\n", f.body.len()).as_bytes(),
                        );
                    }
                    resp.extend_from_slice(b"\r\n");
                    if tcp.write_all(&resp).await.is_err() {
                        return;
                    }
                    for chunk in f.body.chunks(16 * 1024) {
                        if tcp.write_all(chunk).await.is_err() {
                            return;
                        }
                    }
                    let _ = tcp.shutdown().await;
                });
            }
        });
        let (port, ca_pem) = tls_front(plain).await;
        FileServer {
            base: format!("https://127.0.0.1:{port}"),
            ca_pem,
            requests,
            task,
        }
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
