//! TLS for the client and peer listeners and for outgoing peer connections,
//! configured from etcd's flags (which Python parses): certificate and key
//! files, a trusted CA for verifying the other side, whether client
//! certificates are required, the cipher suites and the lowest TLS version.
//!
//! Listeners do the handshake before tonic sees the connection, so a client
//! without an acceptable certificate, or one speaking plaintext, is refused
//! at the handshake and never reaches a service.

use std::io::BufReader;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::rustls::{self, pki_types, ClientConfig, RootCertStore, ServerConfig};
use tokio_rustls::{server::TlsStream, TlsAcceptor};
use tokio_stream::wrappers::ReceiverStream;

/// One side's TLS settings, as etcd's TLSInfo holds them.
#[derive(Clone, Debug, Default)]
pub struct TlsSettings {
    pub cert_file: String,
    pub key_file: String,
    /// Verifies the other side: clients (with `client_cert_auth`) on a
    /// listener, the server on an outgoing connection. Empty: a listener
    /// asks for no certificate, an outgoing connection trusts any server
    /// (etcd's behaviour with self-signed --peer-auto-tls certificates).
    pub trusted_ca_file: String,
    pub client_cert_auth: bool,
    /// Go names of the TLS 1.2 suites to allow (all when empty); TLS 1.3
    /// suites are always allowed, as in Go.
    pub cipher_suites: Vec<String>,
    /// "TLS1.2" or "TLS1.3" (empty: TLS 1.2).
    pub min_version: String,
    /// --client-crl-file / --peer-crl-file (empty: none): client
    /// certificates it lists are refused at the handshake.
    pub crl_file: String,
}

fn provider(s: &TlsSettings) -> Result<Arc<rustls::crypto::CryptoProvider>, String> {
    let mut p = rustls::crypto::ring::default_provider();
    if !s.cipher_suites.is_empty() {
        let mut wanted = Vec::new();
        for name in &s.cipher_suites {
            let suite = p
                .cipher_suites
                .iter()
                .find(|cs| go_name(cs) == Some(name.as_str()))
                .ok_or_else(|| format!("unexpected TLS cipher suite {name:?}"))?;
            wanted.push(*suite);
        }
        p.cipher_suites.retain(|cs| {
            cs.version() == &rustls::version::TLS13
                || wanted.iter().any(|w| w.suite() == cs.suite())
        });
    }
    Ok(Arc::new(p))
}

/// Go's crypto/tls name of a TLS 1.2 suite (etcd's --cipher-suites values).
fn go_name(cs: &rustls::SupportedCipherSuite) -> Option<&'static str> {
    use rustls::CipherSuite as C;
    Some(match cs.suite() {
        C::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 => "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        C::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 => "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        C::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 => {
            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305"
        }
        C::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        C::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        C::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 => "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
        _ => return None,
    })
}

fn versions(
    s: &TlsSettings,
) -> Result<&'static [&'static rustls::SupportedProtocolVersion], String> {
    static BOTH: &[&rustls::SupportedProtocolVersion] =
        &[&rustls::version::TLS13, &rustls::version::TLS12];
    static TLS13: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];
    match s.min_version.as_str() {
        "" | "TLS1.2" => Ok(BOTH),
        "TLS1.3" => Ok(TLS13),
        other => Err(format!("unknown TLS version {other:?}")),
    }
}

fn certs(path: &str) -> Result<Vec<pki_types::CertificateDer<'static>>, String> {
    let f = std::fs::File::open(path).map_err(|e| format!("open {path}: {e}"))?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut BufReader::new(f))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{path}: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{path}: no certificate found"));
    }
    Ok(certs)
}

fn key(path: &str) -> Result<pki_types::PrivateKeyDer<'static>, String> {
    let f = std::fs::File::open(path).map_err(|e| format!("open {path}: {e}"))?;
    rustls_pemfile::private_key(&mut BufReader::new(f))
        .map_err(|e| format!("{path}: {e}"))?
        .ok_or_else(|| format!("{path}: no private key found"))
}

fn roots(path: &str) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    for c in certs(path)? {
        store.add(c).map_err(|e| format!("{path}: {e}"))?;
    }
    Ok(store)
}

/// The rustls configuration of a listener.
pub fn server_config(s: &TlsSettings) -> Result<Arc<ServerConfig>, String> {
    let builder = ServerConfig::builder_with_provider(provider(s)?)
        .with_protocol_versions(versions(s)?)
        .map_err(|e| e.to_string())?;
    let builder = if s.client_cert_auth && !s.trusted_ca_file.is_empty() {
        // Read at every handshake: as in etcd, a missing or unreadable list
        // refuses every client rather than the start.
        let crl = (!s.crl_file.is_empty()).then(|| PathBuf::from(&s.crl_file));
        let verifier = crate::tls_verify::GoClientVerifier::new(
            certs(&s.trusted_ca_file)?,
            crl,
            provider(s)?,
        )?;
        builder.with_client_cert_verifier(Arc::new(verifier))
    } else {
        builder.with_no_client_auth()
    };
    let mut cfg = builder
        .with_single_cert(certs(&s.cert_file)?, key(&s.key_file)?)
        .map_err(|e| format!("{}: {e}", s.cert_file))?;
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(cfg))
}

/// The rustls configuration of outgoing peer connections: this member's
/// certificate for peers that check it, and the trusted CA for theirs.
pub fn client_config(s: &TlsSettings) -> Result<Arc<ClientConfig>, String> {
    let builder = ClientConfig::builder_with_provider(provider(s)?)
        .with_protocol_versions(versions(s)?)
        .map_err(|e| e.to_string())?;
    let builder = if s.trusted_ca_file.is_empty() {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServer(provider(s)?)))
    } else {
        builder.with_root_certificates(roots(&s.trusted_ca_file)?)
    };
    let mut cfg = if s.cert_file.is_empty() {
        builder.with_no_client_auth()
    } else {
        builder
            .with_client_auth_cert(certs(&s.cert_file)?, key(&s.key_file)?)
            .map_err(|e| format!("{}: {e}", s.cert_file))?
    };
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(cfg))
}

/// Accepts any server certificate: only for self-signed (auto-TLS) peers,
/// where there is no CA to check against (etcd skips verification too).
#[derive(Debug)]
struct AnyServer(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &pki_types::CertificateDer<'_>,
        _: &[pki_types::CertificateDer<'_>],
        _: &pki_types::ServerName<'_>,
        _: &[u8],
        _: pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Handshaken connections from `listener`, for tonic's serve_with_incoming.
/// Each handshake runs on its own task so a slow or silent client holds up
/// no one; failed handshakes are logged and dropped.
pub fn incoming(
    listener: TcpListener,
    config: Arc<ServerConfig>,
) -> ReceiverStream<std::io::Result<TlsStream<TcpStream>>> {
    let (tx, rx) = mpsc::channel(64);
    let acceptor = TlsAcceptor::from(config);
    tokio::spawn(async move {
        loop {
            let (tcp, from) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    log::warn!("accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let out = tx.clone();
            tokio::spawn(async move {
                let handshake =
                    tokio::time::timeout(std::time::Duration::from_secs(10), acceptor.accept(tcp));
                match handshake.await {
                    Ok(Ok(tls)) => {
                        let _ = out.send(Ok(tls)).await;
                    }
                    Ok(Err(e)) => log_rejected(from, &e.to_string()),
                    Err(_) => log_rejected(from, "handshake timed out"),
                }
            });
            if tx.is_closed() {
                return;
            }
        }
    });
    ReceiverStream::new(rx)
}

fn log_rejected(from: SocketAddr, why: &str) {
    log::warn!("rejected connection from {from}: TLS handshake failed: {why}");
}
