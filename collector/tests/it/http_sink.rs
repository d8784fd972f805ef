//! HTTP servers for webhook tests, on 127.0.0.1 port 0: one that records
//! POSTs and answers with scripted statuses, one that never answers, and a
//! TLS front for `https://` with a CA generated per test.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// One request the sink received.
#[derive(Debug, Clone)]
pub struct Request {
    pub path: String,
    pub content_type: String,
    /// `Null` when the body was not JSON.
    pub json: serde_json::Value,
}

struct Shared {
    received: Mutex<Vec<Request>>,
    /// Statuses for the next requests; 200 once spent.
    script: Mutex<VecDeque<u16>>,
    count: watch::Sender<usize>,
}

/// Records every POST and answers the scripted statuses in turn.
pub struct HttpSink {
    pub url: String,
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl HttpSink {
    pub async fn start(script: &[u16]) -> HttpSink {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let shared = Arc::new(Shared {
            received: Mutex::default(),
            script: Mutex::new(script.iter().copied().collect()),
            count: watch::Sender::new(0),
        });
        let app = Router::new()
            .route("/{*path}", post(record))
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        HttpSink {
            url: format!("http://{addr}/hooks/picket"),
            addr,
            shared,
            task,
        }
    }

    pub fn received(&self) -> Vec<Request> {
        self.shared.received.lock().expect("lock").clone()
    }

    /// Wait until `n` requests arrived; panics after `deadline`.
    pub async fn wait_for(&self, n: usize, deadline: Duration) -> Vec<Request> {
        let mut rx = self.shared.count.subscribe();
        tokio::time::timeout(deadline, rx.wait_for(|c| *c >= n))
            .await
            .unwrap_or_else(|_| panic!("{n} webhook requests not received within {deadline:?}"))
            .expect("sink alive");
        self.received()
    }
}

impl Drop for HttpSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn record(
    State(shared): State<Arc<Shared>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let request = Request {
        path: uri.path().to_string(),
        content_type: headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string(),
        json: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    };
    shared.received.lock().expect("lock").push(request);
    let status = shared
        .script
        .lock()
        .expect("lock")
        .pop_front()
        .unwrap_or(200);
    shared.count.send_modify(|c| *c += 1);
    StatusCode::from_u16(status).expect("scripted status")
}

/// Accepts connections, reads what comes and never answers.
pub struct SilentServer {
    pub url: String,
    accepted: watch::Sender<usize>,
    task: JoinHandle<()>,
}

impl SilentServer {
    pub async fn start() -> SilentServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let accepted = watch::Sender::new(0);
        let counter = accepted.clone();
        let task = tokio::spawn(async move {
            let mut readers = tokio::task::JoinSet::new();
            while let Ok((mut socket, _)) = listener.accept().await {
                counter.send_modify(|c| *c += 1);
                readers.spawn(async move {
                    let mut buf = [0u8; 4096];
                    while matches!(socket.read(&mut buf).await, Ok(n) if n > 0) {}
                });
            }
        });
        SilentServer {
            url: format!("http://{addr}/hook"),
            accepted,
            task,
        }
    }

    pub fn accepted(&self) -> usize {
        *self.accepted.borrow()
    }

    /// Wait until `n` connections were accepted; panics after `deadline`.
    pub async fn wait_for(&self, n: usize, deadline: Duration) {
        let mut rx = self.accepted.subscribe();
        tokio::time::timeout(deadline, rx.wait_for(|c| *c >= n))
            .await
            .unwrap_or_else(|_| panic!("{n} connections not accepted within {deadline:?}"))
            .expect("server alive");
    }
}

impl Drop for SilentServer {
    fn drop(&mut self) {
        // Closes the held connections, so a client still waiting sees EOF.
        self.task.abort();
    }
}

/// A TLS endpoint (certificate for 127.0.0.1 from a fresh CA) forwarding to
/// `target`. Returns its port and the CA certificate, PEM.
pub async fn tls_front(target: SocketAddr) -> (u16, String) {
    picket_config::tls::install_provider();
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "picket test CA");
    let ca =
        CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key")).expect("CA");
    let key = KeyPair::generate().expect("server key");
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .expect("server params")
        .signed_by(&key, &ca)
        .expect("server certificate");
    let chain = vec![CertificateDer::from_pem_slice(cert.pem().as_bytes()).expect("cert")];
    let key = PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).expect("key");
    let config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("server config");
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("local addr").port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                if let Ok(mut plain) = TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                }
            });
        }
    });
    (port, ca.pem())
}
