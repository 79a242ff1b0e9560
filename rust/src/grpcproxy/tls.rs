//! TLS for the proxy: as a client of the cluster (--cert, --key, --cacert,
//! --insecure-skip-tls-verify) and on its own listener (--cert-file,
//! --key-file, --trusted-ca-file, or --auto-tls files made by Python).

use std::io::BufReader;
use std::sync::Arc;

use tokio_rustls::rustls::{self, pki_types, ClientConfig, RootCertStore, ServerConfig};

use crate::tls::TlsSettings;

/// The proxy's TLS settings towards the cluster.
#[derive(Clone, Debug, Default)]
pub struct ClusterTls {
    pub cert_file: String,
    pub key_file: String,
    pub ca_file: String,
    pub insecure_skip_verify: bool,
}

impl ClusterTls {
    /// Whether any flag asks for TLS (etcd: any of the three files, or
    /// --insecure-skip-tls-verify).
    pub fn enabled(&self) -> bool {
        !(self.cert_file.is_empty() && self.key_file.is_empty() && self.ca_file.is_empty())
            || self.insecure_skip_verify
    }
}

fn read_pem_certs(path: &str) -> Result<Vec<pki_types::CertificateDer<'static>>, String> {
    let f = std::fs::File::open(path).map_err(|e| open_error(path, &e))?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut BufReader::new(f))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{path}: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{path}: no certificate found"));
    }
    Ok(certs)
}

fn read_key(path: &str) -> Result<pki_types::PrivateKeyDer<'static>, String> {
    let f = std::fs::File::open(path).map_err(|e| open_error(path, &e))?;
    rustls_pemfile::private_key(&mut BufReader::new(f))
        .map_err(|e| format!("{path}: {e}"))?
        .ok_or_else(|| format!("{path}: no private key found"))
}

/// Go's words for a file that cannot be opened.
fn open_error(path: &str, e: &std::io::Error) -> String {
    let why = match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ => e.to_string(),
    };
    format!("open {path}: {why}")
}

/// The system's trusted roots, as Go loads them when no CA file is given.
fn system_roots() -> RootCertStore {
    let mut store = RootCertStore::empty();
    for path in [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
        "/etc/ssl/cert.pem",
    ] {
        if let Ok(certs) = read_pem_certs(path) {
            let _ = store.add_parsable_certificates(certs);
            break;
        }
    }
    store
}

/// The client configuration for an `https://` endpoint when no TLS flag
/// was given: system roots, no client certificate.
pub fn default_client_config() -> Arc<ClientConfig> {
    let mut cfg =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("default TLS versions")
            .with_root_certificates(system_roots())
            .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(cfg)
}

/// The client configuration towards the cluster. Like etcd's proxy, it
/// refuses a client certificate with a Common Name: the cluster would take
/// that name as the user of every request the proxy forwards.
pub fn cluster_client_config(s: &ClusterTls) -> Result<Arc<ClientConfig>, String> {
    if !s.cert_file.is_empty() {
        let certs = read_pem_certs(&s.cert_file)?;
        if let Some(cn) = common_name(&certs[0]) {
            if !cn.is_empty() {
                return Err(format!(
                    "cert has non empty Common Name ({cn}): {}",
                    s.cert_file
                ));
            }
        }
    }
    if !s.key_file.is_empty() {
        read_key(&s.key_file)?;
    }
    if s.insecure_skip_verify {
        // crate::tls trusts any server when no CA is given.
        let settings = TlsSettings {
            cert_file: s.cert_file.clone(),
            key_file: s.key_file.clone(),
            ..Default::default()
        };
        return crate::tls::client_config(&settings);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let roots = if s.ca_file.is_empty() {
        system_roots()
    } else {
        let mut store = RootCertStore::empty();
        for c in read_pem_certs(&s.ca_file)? {
            store.add(c).map_err(|e| format!("{}: {e}", s.ca_file))?;
        }
        store
    };
    let builder = builder.with_root_certificates(roots);
    let mut cfg = if s.cert_file.is_empty() {
        builder.with_no_client_auth()
    } else {
        builder
            .with_client_auth_cert(read_pem_certs(&s.cert_file)?, read_key(&s.key_file)?)
            .map_err(|e| format!("{}: {e}", s.cert_file))?
    };
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(cfg))
}

fn common_name(der: &pki_types::CertificateDer<'_>) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_string)
}

/// The listener's configuration: a trusted CA file makes client
/// certificates required, as etcd's TLSInfo does. HTTP/1.1 is offered after
/// h2 so /metrics and /health answer plain HTTPS clients.
pub fn listener_config(
    cert_file: &str,
    key_file: &str,
    trusted_ca_file: &str,
) -> Result<Arc<ServerConfig>, String> {
    // Go's error texts for missing files, before rustls words them.
    read_pem_certs(cert_file)?;
    read_key(key_file)?;
    if !trusted_ca_file.is_empty() {
        read_pem_certs(trusted_ca_file)?;
    }
    let settings = TlsSettings {
        cert_file: cert_file.to_string(),
        key_file: key_file.to_string(),
        trusted_ca_file: trusted_ca_file.to_string(),
        client_cert_auth: !trusted_ca_file.is_empty(),
        ..Default::default()
    };
    let cfg = crate::tls::server_config(&settings)?;
    let mut cfg = ServerConfig::clone(&cfg);
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}
