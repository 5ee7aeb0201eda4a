//! PEM files: certificate chains, CA bundles and private keys, read whole, with the
//! file's name in every error.

use std::path::Path;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Every certificate in `path`, in order (a chain, or a CA bundle): at least one.
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let named = |e: rustls::pki_types::pem::Error| format!("{}: {e}", path.display());
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(named)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(named)?;
    if certs.is_empty() {
        return Err(format!(
            "{}: no certificate (-----BEGIN CERTIFICATE-----) in it",
            path.display()
        ));
    }
    Ok(certs)
}

/// The private key in `path` (PKCS#8, PKCS#1 RSA or SEC1 EC).
pub fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_without_certificates_or_keys_is_refused_with_its_name() {
        let dir = std::env::temp_dir().join(format!("cognito-gate-pem-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not PEM at all\n").unwrap();
        let certs = certificates(&empty).unwrap_err();
        assert!(
            certs.contains("empty.pem") && certs.contains("no certificate"),
            "{certs}"
        );
        let key = private_key(&empty).unwrap_err();
        assert!(key.contains("empty.pem"), "{key}");
        let missing = certificates(&dir.join("missing.pem")).unwrap_err();
        assert!(missing.contains("missing.pem"), "{missing}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
