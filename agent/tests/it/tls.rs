//! `mqtts://` with mutual TLS: a TLS endpoint (rustls, requiring a client
//! certificate signed by our test CA) in front of the broker, certificates
//! generated per test run.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig};

use crate::broker::Broker;
use crate::util::{Agent, Subscriber, base_env, config};
use picket_agent::views::{Failure, Link};

pub struct Pki {
    pub ca_pem: String,
    server: (String, String),
    pub client: (String, String),
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

fn leaf(issuer: &CertifiedIssuer<'static, KeyPair>, names: &[&str]) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let cert = CertificateParams::new(names)
        .unwrap()
        .signed_by(&key, issuer)
        .unwrap();
    (cert.pem(), key.serialize_pem())
}

pub fn make_pki(ca_name: &str) -> Pki {
    let ca = ca(ca_name);
    Pki {
        ca_pem: ca.pem(),
        server: leaf(&ca, &["127.0.0.1", "localhost"]),
        client: leaf(&ca, &["pi-tls"]),
    }
}

/// Terminates TLS (client certificate required) and forwards to `target`.
pub async fn tls_endpoint(pki: &Pki, target: SocketAddr) -> u16 {
    picket_config::tls::install_provider();
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(pki.ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
        .build()
        .unwrap();
    let chain = vec![CertificateDer::from_pem_slice(pki.server.0.as_bytes()).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(pki.server.1.as_bytes()).unwrap();
    let config = ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
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
    port
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

pub fn tls_env(
    dir: &Path,
    port: u16,
    ca: &str,
    client: &(String, String),
) -> Vec<(&'static str, String)> {
    let mut env = base_env(
        "pi-tls",
        &format!("mqtts://127.0.0.1:{port}"),
        &dir.join("q"),
        "50ms",
    );
    env.push(("PICKET_BROKER_CA_FILE", write(dir, "ca.pem", ca)));
    env.push((
        "PICKET_BROKER_CLIENT_CERT",
        write(dir, "client.pem", &client.0),
    ));
    env.push((
        "PICKET_BROKER_CLIENT_KEY",
        write(dir, "client.key", &client.1),
    ));
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtts_with_a_client_certificate_delivers() {
    let broker = Broker::start().await;
    let sub = Subscriber::start(broker.sub_port, "tls").await;
    let pki = make_pki("picket test CA");
    let port = tls_endpoint(&pki, ([127, 0, 0, 1], broker.sub_port).into()).await;
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(config(&tls_env(dir.path(), port, &pki.ca_pem, &pki.client))).await;
    sub.wait_for(Duration::from_secs(30), "samples over TLS", |r| {
        r.samples.len() >= 3
    })
    .await;
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_broker_certificate_is_a_tls_failure() {
    let broker = Broker::start().await;
    let pki = make_pki("picket test CA");
    let port = tls_endpoint(&pki, ([127, 0, 0, 1], broker.sub_port).into()).await;
    // The agent trusts another CA: the broker's certificate must be refused.
    let other = make_pki("another CA");
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(config(&tls_env(
        dir.path(),
        port,
        &other.ca_pem,
        &pki.client,
    )))
    .await;
    let link = agent.link_down(Duration::from_secs(30)).await;
    assert!(
        matches!(
            link,
            Link::Down {
                failure: Failure::Tls,
                ..
            }
        ),
        "{link:?}"
    );
    let last_error = agent
        .observers
        .uplink
        .borrow()
        .last_error
        .clone()
        .unwrap_or_default();
    assert!(last_error.contains("TLS"), "{last_error}");
    agent.stop().await;
}
