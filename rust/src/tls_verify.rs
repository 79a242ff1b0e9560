//! Client certificate verification as etcd's listeners do it: Go's
//! crypto/tls chain rules, then etcd's certificate revocation list check.
//!
//! webpki refuses two kinds of client certificate Go accepts: a CA
//! certificate used as the client's own (`CaUsedAsEndEntity`), and an X.509
//! v1 certificate (what `openssl x509 -req` makes without extensions). For
//! those, and only those, Go's rules are applied here: the certificate must
//! be one of the trusted CAs itself, or be signed by one; every certificate
//! of that chain must be within its validity period and, where it names
//! extended key usages, allow client authentication; a trusted CA with name
//! constraints is not used (we do not check them, so we refuse). Anything
//! else webpki refuses stays refused.
//!
//! The CRL check is etcd's (`checkCRL`): the file is read at every
//! handshake, so a new list applies without a restart, and a certificate the
//! client presented (its own or an intermediate) whose serial number is
//! listed fails the handshake. As in etcd, the list's signature is not
//! checked: the operator's file is trusted as it is.

use std::path::PathBuf;
use std::sync::Arc;

use tokio_rustls::rustls::{
    self,
    client::danger::HandshakeSignatureValid,
    crypto::{CryptoProvider, WebPkiSupportedAlgorithms},
    pki_types::{CertificateDer, SubjectPublicKeyInfoDer, UnixTime},
    server::danger::{ClientCertVerified, ClientCertVerifier},
    CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme,
};
use x509_parser::prelude::{FromDer, X509Certificate};

#[derive(Debug)]
pub struct GoClientVerifier {
    webpki: Arc<dyn ClientCertVerifier>,
    /// The trusted CA certificates, for the cases webpki refuses.
    roots: Vec<CertificateDer<'static>>,
    crl_file: Option<PathBuf>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl GoClientVerifier {
    pub fn new(
        roots: Vec<CertificateDer<'static>>,
        crl_file: Option<PathBuf>,
        provider: Arc<CryptoProvider>,
    ) -> Result<GoClientVerifier, String> {
        let mut store = rustls::RootCertStore::empty();
        for c in &roots {
            store.add(c.clone()).map_err(|e| e.to_string())?;
        }
        let webpki = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(store),
            provider.clone(),
        )
        .build()
        .map_err(|e| e.to_string())?;
        Ok(GoClientVerifier {
            webpki,
            roots,
            crl_file,
            algorithms: provider.signature_verification_algorithms,
        })
    }

    /// Go's verification of a client certificate webpki would not take.
    fn verify_as_go(&self, leaf_der: &CertificateDer<'_>, now: UnixTime) -> bool {
        let Ok((_, leaf)) = X509Certificate::from_der(leaf_der) else {
            return false;
        };
        let time = x509_parser::time::ASN1Time::from_timestamp(now.as_secs() as i64);
        let Ok(time) = time else {
            return false;
        };
        if !usable(&leaf, time) {
            return false;
        }
        // Go: a leaf that is itself a trusted root is a chain of one.
        if self.roots.iter().any(|r| r.as_ref() == leaf_der.as_ref()) {
            return true;
        }
        for root_der in &self.roots {
            let Ok((_, root)) = X509Certificate::from_der(root_der) else {
                continue;
            };
            if root.subject().as_raw() != leaf.issuer().as_raw() {
                continue;
            }
            if !usable(&root, time) || !matches!(root.name_constraints(), Ok(None)) {
                continue;
            }
            if self.signed_by(leaf_der, &leaf, root_der) {
                return true;
            }
        }
        false
    }

    /// Whether `issuer`'s key made the signature on `cert`.
    fn signed_by(
        &self,
        cert_der: &[u8],
        cert: &X509Certificate<'_>,
        issuer_der: &CertificateDer<'_>,
    ) -> bool {
        let Some(sig_alg) = signature_algorithm_der(cert_der, cert.tbs_certificate.as_ref()) else {
            return false;
        };
        let Ok(issuer) = webpki::EndEntityCert::try_from(issuer_der) else {
            return false;
        };
        let tbs = cert.tbs_certificate.as_ref();
        let signature = &cert.signature_value.data;
        self.algorithms
            .all
            .iter()
            .filter(|alg| alg.signature_alg_id().as_ref() == sig_alg)
            .any(|alg| issuer.verify_signature(*alg, tbs, signature).is_ok())
    }

    /// etcd's checkCRL over every certificate the client presented.
    fn check_crl(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
    ) -> Result<(), rustls::Error> {
        let Some(path) = &self.crl_file else {
            return Ok(());
        };
        let revoked = revoked_serials(path).map_err(|e| {
            rustls::Error::General(format!(
                "certificate revocation list {}: {e}",
                path.display()
            ))
        })?;
        for der in std::iter::once(end_entity).chain(intermediates) {
            let Ok((_, cert)) = X509Certificate::from_der(der) else {
                continue;
            };
            if revoked.iter().any(|s| s == strip_zeros(cert.raw_serial())) {
                return Err(rustls::Error::InvalidCertificate(CertificateError::Revoked));
            }
        }
        Ok(())
    }

    /// The signature check of the handshake, from the certificate's key
    /// alone, for certificates webpki cannot read (v1).
    fn verify_with_spki(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let bad = || rustls::Error::InvalidCertificate(CertificateError::BadEncoding);
        let (_, parsed) = X509Certificate::from_der(cert).map_err(|_| bad())?;
        let spki = SubjectPublicKeyInfoDer::from(parsed.public_key().raw);
        let key = webpki::RawPublicKeyEntity::try_from(&spki).map_err(|_| bad())?;
        let algs = self
            .algorithms
            .mapping
            .iter()
            .find(|(scheme, _)| *scheme == dss.scheme)
            .map(|(_, algs)| *algs)
            .ok_or(rustls::Error::PeerMisbehaved(
                rustls::PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme,
            ))?;
        if algs
            .iter()
            .any(|alg| key.verify_signature(*alg, message, dss.signature()).is_ok())
        {
            Ok(HandshakeSignatureValid::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::BadSignature,
            ))
        }
    }
}

/// Whether webpki refused `error` for a reason Go does not have.
fn go_accepts_otherwise(error: &rustls::Error) -> bool {
    let rustls::Error::InvalidCertificate(CertificateError::Other(other)) = error else {
        return false;
    };
    matches!(
        other.0.downcast_ref::<webpki::Error>(),
        Some(webpki::Error::CaUsedAsEndEntity | webpki::Error::UnsupportedCertVersion)
    )
}

/// Go's checks of one certificate of a chain: validity period, extended key
/// usage (when it names any) allowing client authentication, no critical
/// extension Go would not understand.
fn usable(cert: &X509Certificate<'_>, time: x509_parser::time::ASN1Time) -> bool {
    if !cert.validity().is_valid_at(time) {
        return false;
    }
    if cert
        .extensions()
        .iter()
        .any(|e| e.critical && !GO_KNOWN_CRITICAL.contains(&e.oid.to_id_string().as_str()))
    {
        return false;
    }
    match cert.extended_key_usage() {
        Ok(None) => true,
        Ok(Some(eku)) => eku.value.any || eku.value.client_auth,
        Err(_) => false,
    }
}

/// The critical extensions Go's x509 package handles (others make it refuse).
const GO_KNOWN_CRITICAL: &[&str] = &[
    "2.5.29.15", // key usage
    "2.5.29.19", // basic constraints
    "2.5.29.17", // subject alternative name
    "2.5.29.30", // name constraints
    "2.5.29.37", // extended key usage
    "2.5.29.32", // certificate policies
    "2.5.29.35", // authority key identifier
    "2.5.29.14", // subject key identifier
];

/// The contents of the outer signatureAlgorithm of a certificate (what
/// webpki's algorithm identifiers hold): the element after the TBS part.
fn signature_algorithm_der<'a>(cert: &'a [u8], tbs: &[u8]) -> Option<&'a [u8]> {
    let start = (tbs.as_ptr() as usize).checked_sub(cert.as_ptr() as usize)? + tbs.len();
    let rest = cert.get(start..)?;
    let (tag, contents) = der_element(rest)?;
    (tag == 0x30).then_some(contents)
}

/// (tag, contents) of the DER element at the start of `data`.
fn der_element(data: &[u8]) -> Option<(u8, &[u8])> {
    let tag = *data.first()?;
    let first = *data.get(1)? as usize;
    let (len, header) = if first < 0x80 {
        (first, 2)
    } else {
        let n = first & 0x7f;
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for b in data.get(2..2 + n)? {
            len = (len << 8) | *b as usize;
        }
        (len, 2 + n)
    };
    Some((tag, data.get(header..header + len)?))
}

/// A serial number's magnitude, as Go's big.Int.Bytes compares them.
fn strip_zeros(serial: &[u8]) -> &[u8] {
    let n = serial.iter().take_while(|b| **b == 0).count();
    &serial[n..]
}

/// The serial numbers a CRL file (PEM or DER, as Go's x509.ParseCRL reads)
/// lists as revoked.
fn revoked_serials(path: &std::path::Path) -> Result<Vec<Vec<u8>>, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let pem = rustls_pemfile::crls(&mut std::io::BufReader::new(&bytes[..]))
        .next()
        .transpose()
        .map_err(|e| e.to_string())?;
    let der: &[u8] = match &pem {
        Some(crl) => crl.as_ref(),
        None => &bytes,
    };
    let (_, crl) = x509_parser::parse_x509_crl(der).map_err(|e| e.to_string())?;
    Ok(crl
        .iter_revoked_certificates()
        .map(|r| strip_zeros(r.raw_serial()).to_vec())
        .collect())
}

impl ClientCertVerifier for GoClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.webpki.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if let Err(e) = self
            .webpki
            .verify_client_cert(end_entity, intermediates, now)
        {
            if !(go_accepts_otherwise(&e) && self.verify_as_go(end_entity, now)) {
                return Err(e);
            }
        }
        self.check_crl(end_entity, intermediates)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        match self.webpki.verify_tls12_signature(message, cert, dss) {
            Err(e) if go_accepts_otherwise(&e) => self.verify_with_spki(message, cert, dss),
            r => r,
        }
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        match self.webpki.verify_tls13_signature(message, cert, dss) {
            // rustls checked the scheme is a TLS 1.3 one before reading the
            // certificate, so only the reading failed.
            Err(e) if go_accepts_otherwise(&e) => self.verify_with_spki(message, cert, dss),
            r => r,
        }
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_lengths_in_long_form_are_read() {
        let mut data = vec![0x30, 0x82, 0x01, 0x00];
        data.extend(vec![7u8; 256]);
        let (tag, contents) = der_element(&data).expect("element");
        assert_eq!(tag, 0x30);
        assert_eq!(contents.len(), 256);
    }

    #[test]
    fn truncated_der_is_refused() {
        assert!(der_element(&[0x30, 0x05, 1, 2]).is_none());
        assert!(der_element(&[0x30, 0x85, 1, 2, 3, 4, 5]).is_none());
    }

    #[test]
    fn serials_compare_by_magnitude() {
        assert_eq!(strip_zeros(&[0, 0x80, 1]), &[0x80, 1]);
        assert_eq!(strip_zeros(&[5]), &[5]);
    }
}
