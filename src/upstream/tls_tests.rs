//! Tests of DNS over TLS against an in-process TLS server on loopback, with a certificate for
//! `upstream.test` from a CA made by the openssl command line (skipped, with a message, where
//! openssl is missing): queries in flight share one connection, each answer is matched to its
//! query by id and question whatever the order, a stray answer is ignored, and a certificate for
//! another name fails the attempt.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use hickory_proto::op::Message;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::*;
use crate::cache::TtlLimits;
use crate::wire::HEADER_LEN;

/// A directory of its own under the system's temp dir, removed on drop.
struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A CA (`ca.pem`) and a certificate for `upstream.test` it signed (`server.pem`, `server.key`),
/// or None where openssl cannot be run.
fn certificates(tag: &str) -> Option<Dir> {
    let dir = Dir(std::env::temp_dir().join(format!("sinkhole-dot-{}-{tag}", std::process::id())));
    std::fs::create_dir_all(&dir.0).ok()?;
    let run = |args: &[&str]| -> Option<()> {
        let out = Command::new("openssl").args(args).current_dir(&dir.0).output().ok()?;
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(())
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &[
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=ca",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign",
        ],
    ]
    .concat())?;
    run(&[
        &["req", "-new"][..],
        &ec,
        &[
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=upstream.test",
        ],
    ]
    .concat())?;
    std::fs::write(
        dir.0.join("ext"),
        "subjectAltName=DNS:upstream.test\nextendedKeyUsage=serverAuth\n",
    )
    .ok()?;
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext",
    ])?;
    Some(dir)
}

/// A TLS server on loopback that reads `hold` queries on a connection before answering any,
/// then answers with a stray message first (an id nobody asked with) and the queries last
/// first; returns its address and the count of connections it accepted.
async fn holding_server(dir: &Path, hold: usize) -> (SocketAddr, Arc<AtomicUsize>) {
    serve(dir, hold, false).await
}

/// [`holding_server`], which with `close_first` closes its first connection after reading one
/// query, unanswered.
async fn serve(dir: &Path, hold: usize, close_first: bool) -> (SocketAddr, Arc<AtomicUsize>) {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(dir.join("server.pem"))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let first = count.fetch_add(1, Ordering::Relaxed) == 0;
            let hold = if first && close_first { 1 } else { hold };
            let close = first && close_first;
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut queries = Vec::new();
                while queries.len() < hold {
                    let mut len = [0u8; 2];
                    if tls.read_exact(&mut len).await.is_err() {
                        return;
                    }
                    let mut query = vec![0u8; usize::from(u16::from_be_bytes(len))];
                    if tls.read_exact(&mut query).await.is_err() {
                        return;
                    }
                    queries.push(query);
                }
                if close {
                    let _ = tls.shutdown().await;
                    return;
                }
                let ids: Vec<u16> = queries.iter().map(|q| u16::from_be_bytes([q[0], q[1]])).collect();
                let stray_id = (0..=u16::MAX).find(|id| !ids.contains(id)).unwrap();
                let mut stray = queries[0].clone();
                stray[..2].copy_from_slice(&stray_id.to_be_bytes());
                let mut out = Vec::new();
                for mut answer in std::iter::once(stray).chain(queries.into_iter().rev()) {
                    answer[2] |= 0x80; // QR: a response, NOERROR with no records
                    out.extend_from_slice(&u16::try_from(answer.len()).unwrap().to_be_bytes());
                    out.extend_from_slice(&answer);
                }
                let _ = tls.write_all(&out).await;
                let _ = tls.flush().await;
                // Held open: a closed connection would end queries still on their way.
                tokio::time::sleep(Duration::from_secs(5)).await;
            });
        }
    });
    (addr, accepted)
}

/// A pool of one DoT server at `addr`, checked against `name` and the CA in `dir`.
fn dot_pool(addr: SocketAddr, name: &str, dir: &Path) -> UpstreamPool {
    let roots = Roots::from_pem(&std::fs::read(dir.join("ca.pem")).unwrap()).unwrap();
    let spec = ServerSpec {
        addr,
        encryption: Encryption::Tls { name: name.into() },
        label: format!("tls://{name}:{}#{}", addr.port(), addr.ip()),
    };
    let settings = PoolSettings {
        timeout: Duration::from_secs(2),
        max_inflight: 4096,
        case_randomization: true,
    };
    UpstreamPool::with_specs(&[spec], settings, roots).unwrap()
}

/// A query for `qname` type A with id `id`.
fn a_query(id: u16, qname: &str) -> Vec<u8> {
    let mut m = Message::new(
        id,
        hickory_proto::op::MessageType::Query,
        hickory_proto::op::OpCode::Query,
    );
    m.add_query(hickory_proto::op::Query::query(
        hickory_proto::rr::Name::from_ascii(qname).unwrap(),
        hickory_proto::rr::RecordType::A,
    ));
    m.to_vec().unwrap()
}

#[tokio::test]
async fn queries_in_flight_share_one_tls_connection_and_each_gets_its_own_answer() {
    let Some(dir) = certificates("pipeline") else {
        eprintln!("skipped: openssl cannot be run");
        return;
    };
    // 20 at once, over UDP and TCP transports alike: the server answers only when all 20 are in.
    let (addr, accepted) = holding_server(&dir.0, 20).await;
    let pool = Arc::new(dot_pool(addr, "upstream.test", &dir.0));
    let sockets = Arc::new(Sockets::new(1));
    let mut asks = tokio::task::JoinSet::new();
    for i in 0..20u16 {
        let (pool, sockets) = (Arc::clone(&pool), Arc::clone(&sockets));
        asks.spawn(async move {
            let q = a_query(i, &format!("q{i}.example."));
            let transport = if i % 2 == 0 {
                Transport::Udp(&sockets)
            } else {
                Transport::Tcp(&sockets)
            };
            (i, pool.forward(&q, transport, &TtlLimits::default()).await)
        });
    }
    let mut answered = 0;
    while let Some(result) = asks.join_next().await {
        let (i, result) = result.unwrap();
        let response = result.unwrap_or_else(|e| panic!("q{i}: {e}"));
        let mut out = Vec::new();
        let question = a_query(i, &format!("q{i}.example."));
        let question_end = crate::wire::skip_question(&question, HEADER_LEN).unwrap();
        response.write_to(
            i,
            false,
            &question[HEADER_LEN..question_end],
            std::time::Instant::now(),
            65535,
            &mut out,
        );
        let answer = Message::from_vec(&out).unwrap();
        assert_eq!(answer.queries[0].name().to_ascii(), format!("q{i}.example."));
        answered += 1;
    }
    assert_eq!(answered, 20);
    assert_eq!(accepted.load(Ordering::Relaxed), 1, "one connection carries them all");
}

#[tokio::test]
async fn a_certificate_for_another_name_fails_the_attempt() {
    let Some(dir) = certificates("name") else {
        eprintln!("skipped: openssl cannot be run");
        return;
    };
    let (addr, _) = holding_server(&dir.0, 1).await;
    let pool = dot_pool(addr, "other.test", &dir.0);
    let q = a_query(7, "q.example.");
    let result = pool
        .forward(&q, Transport::Udp(&Sockets::new(1)), &TtlLimits::default())
        .await;
    assert!(matches!(result, Err(ForwardError::AllFailed { .. })), "{result:?}");
}

#[tokio::test]
async fn a_connection_the_server_closes_is_replaced_and_the_query_sent_again() {
    let Some(dir) = certificates("reconnect") else {
        eprintln!("skipped: openssl cannot be run");
        return;
    };
    let (addr, accepted) = serve(&dir.0, 1, true).await;
    let pool = dot_pool(addr, "upstream.test", &dir.0);
    let q = a_query(9, "again.example.");
    let result = pool
        .forward(&q, Transport::Udp(&Sockets::new(1)), &TtlLimits::default())
        .await;
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(accepted.load(Ordering::Relaxed), 2);
    // Not a failure of the server: it is not marked down.
    assert!(!pool.servers[0].health.is_down(millis_since(pool.epoch, Instant::now())));
}
