//! etcd's "jwt" tokens (`--auth-token jwt,pub-key=..,priv-key=..,sign-method=..,ttl=..`):
//! a signed JSON Web Token carrying the user name, the auth store revision
//! it was issued at and its expiry. Any member holding the key verifies it
//! locally, so unlike simple tokens nothing goes through Raft.
//!
//! Signing uses ring directly (it reads PKCS#1, PKCS#8 and SEC1 keys and
//! yields the public half of a private key); verification uses
//! `jsonwebtoken`. Tokens are laid out byte for byte as etcd's Go library
//! writes them: header `{"alg":..,"typ":"JWT"}`, claims
//! `{"exp":..,"revision":..,"username":..}`.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair};
use serde::{Deserialize, Serialize};

// etcd's auth package errors, as its startup logs them.
pub const ERR_INVALID_AUTH_OPTS: &str = "auth: invalid auth options";
pub const ERR_MISSING_KEY: &str = "auth: missing key data";
pub const ERR_VERIFY_ONLY: &str = "auth: token signing attempted with verify-only key";
// jwt-go's key parsing errors.
const ERR_NOT_PEM: &str = "Invalid Key: Key must be a PEM encoded PKCS1 or PKCS8 key";
// Go's x509 on a SEC1 EC key where it expects RSA, and a PKCS#1 RSA key
// where it expects EC.
const ERR_EC_AS_RSA: &str =
    "x509: failed to parse private key (use ParseECPrivateKey instead for this key format)";
const ERR_RSA_AS_EC: &str =
    "x509: failed to parse private key (use ParsePKCS1PrivateKey instead for this key format)";
const ERR_NOT_RSA_PRIVATE: &str = "Key is not a valid RSA private key";
const ERR_NOT_RSA_PUBLIC: &str = "Key is not a valid RSA public key";
const ERR_NOT_EC_PRIVATE: &str = "Key is not a valid ECDSA private key";
const ERR_NOT_EC_PUBLIC: &str = "Key is not a valid ECDSA public key";

/// etcd's default token lifetime.
const DEFAULT_TTL: Duration = Duration::from_secs(5 * 60);
const KNOWN_OPTIONS: [&str; 4] = ["sign-method", "pub-key", "priv-key", "ttl"];

/// What `--auth-token` selects.
pub enum TokenProvider {
    /// "simple" (or empty): random tokens replicated through Raft.
    Simple,
    Jwt(Box<JwtTokens>),
}

/// A parsed `--auth-token` flag and the option names etcd warns about.
pub struct ParsedFlag {
    pub provider: TokenProvider,
    pub unknown_options: Vec<String>,
}

/// etcd's NewTokenProvider: `type[,key=value...]`. The error is the text
/// etcd logs when it refuses to start.
pub fn parse_flag(flag: &str) -> Result<ParsedFlag, String> {
    let mut parts = flag.split(',');
    let kind = parts.next().unwrap_or("");
    let mut options = HashMap::new();
    for part in parts {
        let pair: Vec<&str> = part.split('=').collect();
        if pair.len() != 2 || options.contains_key(pair[0]) {
            return Err(ERR_INVALID_AUTH_OPTS.into());
        }
        options.insert(pair[0].to_string(), pair[1].to_string());
    }
    match kind {
        "simple" | "" => Ok(ParsedFlag {
            provider: TokenProvider::Simple,
            unknown_options: vec![],
        }),
        "jwt" => {
            let mut unknown_options: Vec<String> = options
                .keys()
                .filter(|k| !KNOWN_OPTIONS.contains(&k.as_str()))
                .cloned()
                .collect();
            unknown_options.sort();
            Ok(ParsedFlag {
                provider: TokenProvider::Jwt(Box::new(JwtTokens::from_options(&options)?)),
                unknown_options,
            })
        }
        _ => Err(ERR_INVALID_AUTH_OPTS.into()),
    }
}

enum Signer {
    Rsa(RsaKeyPair, &'static dyn signature::RsaEncoding),
    Ecdsa(EcdsaKeyPair),
    Hmac(ring::hmac::Key),
}

/// Issues and verifies etcd's JWT tokens with one key pair (or secret).
pub struct JwtTokens {
    algorithm: Algorithm,
    /// None on a verify-only member (given only a public key).
    signer: Option<Signer>,
    verifier: DecodingKey,
    ttl: Duration,
}

/// The claims etcd writes; field order is the JSON order (Go sorts map keys).
#[derive(Serialize)]
struct IssuedClaims<'a> {
    exp: i64,
    revision: u64,
    username: &'a str,
}

/// The claims etcd reads: Go decodes JSON numbers as floats.
#[derive(Deserialize)]
struct Claims {
    revision: f64,
    username: String,
}

// Keys stay out of logs: only the method and TTL are shown.
impl std::fmt::Debug for JwtTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtTokens")
            .field("algorithm", &self.algorithm)
            .field("verify_only", &self.signer.is_none())
            .field("ttl", &self.ttl)
            .finish()
    }
}

impl JwtTokens {
    /// etcd's newTokenProviderJWT over already split options.
    pub fn from_options(options: &HashMap<String, String>) -> Result<JwtTokens, String> {
        let get = |k: &str| options.get(k).map(String::as_str).unwrap_or("");
        // Every problem jwtOptions.Parse finds is reported as invalid options.
        let ttl = match get("ttl") {
            "" => DEFAULT_TTL,
            t => parse_go_duration(t).ok_or(ERR_INVALID_AUTH_OPTS)?,
        };
        let read = |k: &str| -> Result<Vec<u8>, String> {
            match get(k) {
                "" => Ok(vec![]),
                path => std::fs::read(path).map_err(|_| ERR_INVALID_AUTH_OPTS.to_string()),
            }
        };
        let public = read("pub-key")?;
        let private = read("priv-key")?;
        let method = get("sign-method");
        let algorithm = match method {
            "RS256" => Algorithm::RS256,
            "RS384" => Algorithm::RS384,
            "RS512" => Algorithm::RS512,
            "PS256" => Algorithm::PS256,
            "PS384" => Algorithm::PS384,
            "PS512" => Algorithm::PS512,
            "ES256" => Algorithm::ES256,
            "ES384" => Algorithm::ES384,
            "HS256" => Algorithm::HS256,
            "HS384" => Algorithm::HS384,
            "HS512" => Algorithm::HS512,
            "none" => return Err("unsupported signing method: *jwt.signingMethodNone".into()),
            // jwt-go knows it; ring has no P-521.
            "ES512" => return Err("etcdcore: sign-method ES512 is not supported".into()),
            _ => return Err(ERR_INVALID_AUTH_OPTS.into()),
        };
        let (signer, verifier) = match algorithm {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
                if private.is_empty() {
                    return Err(ERR_MISSING_KEY.into());
                }
                let hmac = match algorithm {
                    Algorithm::HS256 => ring::hmac::HMAC_SHA256,
                    Algorithm::HS384 => ring::hmac::HMAC_SHA384,
                    _ => ring::hmac::HMAC_SHA512,
                };
                (
                    Some(Signer::Hmac(ring::hmac::Key::new(hmac, &private))),
                    DecodingKey::from_secret(&private),
                )
            }
            Algorithm::ES256 | Algorithm::ES384 => ec_keys(algorithm, &public, &private)?,
            _ => rsa_keys(algorithm, &public, &private)?,
        };
        Ok(JwtTokens {
            algorithm,
            signer,
            verifier,
            ttl,
        })
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A token for `username` at auth revision `revision`, expiring after the TTL.
    pub fn sign(&self, username: &str, revision: u64) -> Result<String, String> {
        let signer = self.signer.as_ref().ok_or(ERR_VERIFY_ONLY)?;
        let exp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .saturating_add(self.ttl)
            .as_secs() as i64;
        let header = format!(r#"{{"alg":"{:?}","typ":"JWT"}}"#, self.algorithm);
        let claims = serde_json::to_vec(&IssuedClaims {
            exp,
            revision,
            username,
        })
        .map_err(|e| e.to_string())?;
        let message = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims)
        );
        let sig = match signer {
            Signer::Rsa(key, encoding) => {
                let mut sig = vec![0; key.public().modulus_len()];
                key.sign(
                    *encoding,
                    &SystemRandom::new(),
                    message.as_bytes(),
                    &mut sig,
                )
                .map_err(|_| "crypto/rsa: signing failed".to_string())?;
                sig
            }
            Signer::Ecdsa(key) => key
                .sign(&SystemRandom::new(), message.as_bytes())
                .map_err(|_| "crypto/ecdsa: signing failed".to_string())?
                .as_ref()
                .to_vec(),
            Signer::Hmac(key) => ring::hmac::sign(key, message.as_bytes()).as_ref().to_vec(),
        };
        Ok(format!("{message}.{}", URL_SAFE_NO_PAD.encode(sig)))
    }

    /// (user name, auth revision) of a token signed with this key, using
    /// this member's algorithm and not expired; None otherwise (etcd then
    /// answers "invalid auth token").
    pub fn verify(&self, token: &str) -> Option<(String, u64)> {
        let mut validation = Validation::new(self.algorithm);
        // As jwt-go: no leeway, and a token without "exp" never expires.
        validation.leeway = 0;
        validation.required_spec_claims.clear();
        validation.validate_aud = false;
        let data = jsonwebtoken::decode::<Claims>(token, &self.verifier, &validation).ok()?;
        Some((data.claims.username, data.claims.revision as u64))
    }
}

/// The signer (if a private key is given) and the verifier: the private
/// key's public half, else the public key (etcd ignores pub-key when
/// priv-key is given).
fn rsa_keys(
    algorithm: Algorithm,
    public: &[u8],
    private: &[u8],
) -> Result<(Option<Signer>, DecodingKey), String> {
    let encoding: &'static dyn signature::RsaEncoding = match algorithm {
        Algorithm::RS256 => &signature::RSA_PKCS1_SHA256,
        Algorithm::RS384 => &signature::RSA_PKCS1_SHA384,
        Algorithm::RS512 => &signature::RSA_PKCS1_SHA512,
        Algorithm::PS256 => &signature::RSA_PSS_SHA256,
        Algorithm::PS384 => &signature::RSA_PSS_SHA384,
        _ => &signature::RSA_PSS_SHA512,
    };
    if !private.is_empty() {
        let key = match pem_item(private)? {
            rustls_pemfile::Item::Pkcs1Key(k) => RsaKeyPair::from_der(k.secret_pkcs1_der()),
            rustls_pemfile::Item::Pkcs8Key(k) => RsaKeyPair::from_pkcs8(k.secret_pkcs8_der()),
            rustls_pemfile::Item::Sec1Key(_) => return Err(ERR_EC_AS_RSA.into()),
            _ => return Err(ERR_NOT_RSA_PRIVATE.into()),
        }
        .map_err(|e| rejected(ERR_NOT_RSA_PRIVATE, e))?;
        let verifier = DecodingKey::from_rsa_der(key.public_key().as_ref());
        return Ok((Some(Signer::Rsa(key, encoding)), verifier));
    }
    if public.is_empty() {
        return Err(ERR_MISSING_KEY.into());
    }
    pem_item(public)?;
    let verifier = DecodingKey::from_rsa_pem(public).map_err(|_| ERR_NOT_RSA_PUBLIC)?;
    Ok((None, verifier))
}

fn ec_keys(
    algorithm: Algorithm,
    public: &[u8],
    private: &[u8],
) -> Result<(Option<Signer>, DecodingKey), String> {
    let (ring_alg, curve_oid): (&'static signature::EcdsaSigningAlgorithm, &[u8]) =
        if algorithm == Algorithm::ES256 {
            (&signature::ECDSA_P256_SHA256_FIXED_SIGNING, P256_OID)
        } else {
            (&signature::ECDSA_P384_SHA384_FIXED_SIGNING, P384_OID)
        };
    if !private.is_empty() {
        let pkcs8 = match pem_item(private)? {
            rustls_pemfile::Item::Sec1Key(k) => sec1_to_pkcs8(k.secret_sec1_der(), curve_oid),
            rustls_pemfile::Item::Pkcs8Key(k) => k.secret_pkcs8_der().to_vec(),
            rustls_pemfile::Item::Pkcs1Key(_) => return Err(ERR_RSA_AS_EC.into()),
            _ => return Err(ERR_NOT_EC_PRIVATE.into()),
        };
        let key = EcdsaKeyPair::from_pkcs8(ring_alg, &pkcs8, &SystemRandom::new())
            .map_err(|e| rejected(ERR_NOT_EC_PRIVATE, e))?;
        // jsonwebtoken takes an EC public key as its uncompressed point.
        let verifier = DecodingKey::from_ec_der(key.public_key().as_ref());
        return Ok((Some(Signer::Ecdsa(key)), verifier));
    }
    if public.is_empty() {
        return Err(ERR_MISSING_KEY.into());
    }
    pem_item(public)?;
    let verifier = DecodingKey::from_ec_pem(public).map_err(|_| ERR_NOT_EC_PUBLIC)?;
    Ok((None, verifier))
}

/// jwt-go's message for a key of the wrong kind; for a key Go would take
/// but ring refuses (say RSA under 2048 bits) ring's reason is added.
fn rejected(wrong_kind: &str, e: ring::error::KeyRejected) -> String {
    if e.to_string() == "WrongAlgorithm" {
        wrong_kind.to_string()
    } else {
        format!("{wrong_kind}: {e}")
    }
}

/// The first key in a PEM file (jwt-go reads the first block).
fn pem_item(pem: &[u8]) -> Result<rustls_pemfile::Item, String> {
    let mut reader = pem;
    loop {
        match rustls_pemfile::read_one(&mut reader) {
            Ok(Some(item @ rustls_pemfile::Item::Pkcs1Key(_)))
            | Ok(Some(item @ rustls_pemfile::Item::Pkcs8Key(_)))
            | Ok(Some(item @ rustls_pemfile::Item::Sec1Key(_)))
            | Ok(Some(item @ rustls_pemfile::Item::SubjectPublicKeyInfo(_)))
            | Ok(Some(item @ rustls_pemfile::Item::X509Certificate(_))) => return Ok(item),
            Ok(Some(_)) => continue,
            Ok(None) | Err(_) => return Err(ERR_NOT_PEM.into()),
        }
    }
}

// DER OIDs (tag, length, value) of the curves.
const P256_OID: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const P384_OID: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
const EC_PUBLIC_KEY_OID: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];

/// Wraps a SEC1 "EC PRIVATE KEY" in a PKCS#8 envelope, the only form ring
/// reads (Go reads both; `openssl ecparam -genkey` writes SEC1).
fn sec1_to_pkcs8(sec1: &[u8], curve_oid: &[u8]) -> Vec<u8> {
    let mut algorithm = EC_PUBLIC_KEY_OID.to_vec();
    algorithm.extend_from_slice(curve_oid);
    let mut body = vec![0x02, 0x01, 0x00]; // version 0
    body.extend(der(0x30, &algorithm));
    body.extend(der(0x04, sec1));
    der(0x30, &body)
}

fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

/// Go's time.ParseDuration ("300ms", "1.5h", "2h45m"); None where Go errs.
pub fn parse_go_duration(text: &str) -> Option<Duration> {
    let (negative, mut rest) = match text.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    if rest == "0" {
        return Some(Duration::ZERO);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..number_len].parse().ok()?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let nanos = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += number * nanos;
    }
    // A negative TTL makes every token expire at once, as in etcd.
    Some(if negative {
        Duration::ZERO
    } else {
        Duration::from_nanos(total as u64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_go_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_go_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_go_duration("5"), None);
        assert_eq!(parse_go_duration("5x"), None);
    }

    #[test]
    fn flag_errors_are_etcds() {
        let err = |f: &str| parse_flag(f).err().unwrap_or_default();
        assert_eq!(err("jwt"), ERR_INVALID_AUTH_OPTS);
        assert_eq!(err("jwt,sign-method=RS256"), ERR_MISSING_KEY);
        assert_eq!(err("jwt,sign-method=HS256"), ERR_MISSING_KEY);
        assert_eq!(err("jwt,foo"), ERR_INVALID_AUTH_OPTS);
        assert_eq!(err("bogus"), ERR_INVALID_AUTH_OPTS);
        assert_eq!(
            err("jwt,sign-method=RS256,sign-method=RS384"),
            ERR_INVALID_AUTH_OPTS
        );
        assert!(matches!(
            parse_flag("simple").map(|p| p.provider),
            Ok(TokenProvider::Simple)
        ));
    }

    #[test]
    fn hmac_tokens_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, b"s3cret").unwrap();
        let flag = format!("jwt,sign-method=HS256,priv-key={},ttl=1h", secret.display());
        let Ok(TokenProvider::Jwt(t)) = parse_flag(&flag).map(|p| p.provider) else {
            panic!("not a jwt provider");
        };
        let token = t.sign("alice", 7).unwrap();
        assert!(token.starts_with("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."));
        assert_eq!(t.verify(&token), Some(("alice".to_string(), 7)));
        assert_eq!(t.verify(&format!("{token}x")), None);
    }
}
