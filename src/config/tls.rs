//! The API's TLS identity: certificate chain and private key, read and matched.
//!
//! `loom check` and `loom serve` both call `server_config`, so a certificate that
//! check accepts is one that serve can use, and a bad one is reported by check at
//! the `tls:` settings. It does not listen or serve.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::read::read_text;

/// Protocols offered to clients, best first.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// A TLS server configuration from PEM files; the error says which file is wrong and why.
pub fn server_config(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, String> {
    let chain = read_chain(cert)?;
    let private = read_key(key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| err.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|err| {
            format!("the TLS certificate {} and key {} do not go together: {err}", cert.display(), key.display())
        })?;
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// The certificate chain in `cert`, or why there is none.
pub fn read_chain(cert: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let cert_text =
        read_text(cert).map_err(|err| format!("failed to read the TLS certificate {}: {err}", cert.display()))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_text.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|err| format!("the TLS certificate {} is not valid PEM: {err}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "the TLS certificate {} holds no certificate (a PEM block `-----BEGIN CERTIFICATE-----`)",
            cert.display()
        ));
    }
    Ok(chain)
}

/// The private key in `key`, or why there is none.
pub fn read_key(key: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let key_text = read_text(key).map_err(|err| format!("failed to read the TLS key {}: {err}", key.display()))?;
    PrivateKeyDer::from_pem_slice(key_text.as_bytes()).map_err(|err| {
        format!("the TLS key {} holds no PEM private key (PKCS#8, PKCS#1 or SEC1): {err}", key.display())
    })
}
