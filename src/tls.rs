//! TLS on the gate's own listeners: a certificate chain and its key (PEM), the ALPN
//! protocols, optionally a CA whose client certificates are required, and the swap of
//! a renewed pair without a restart (a bad pair keeps the old one serving).
//! Bottom floor: imports only `pem` of the gate's own.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::pki_types::CertificateDer;
use rustls::server::WebPkiClientVerifier;

/// How often the files are looked at for a change (a Kubernetes Secret's update, a
/// certificate manager's renewal); SIGHUP looks at once.
pub const POLL: Duration = Duration::from_secs(1);

/// The files of one listener's TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerTlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// Client certificates are required, and must chain to a certificate in this file.
    pub client_ca: Option<PathBuf>,
}

/// What a listener's connections may speak after the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alpn {
    /// `h2` and `http/1.1`, the server's preference in that order.
    Http,
    /// `h2` only (the gRPC listener).
    H2,
}

/// A pair read and checked, ready to serve.
pub struct Loaded {
    pub config: Arc<rustls::ServerConfig>,
    /// The leaf certificate's `notAfter`, in seconds since the Unix epoch.
    pub not_after: i64,
}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded")
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// Reads `files` and builds the server configuration: the chain must parse, the key
/// must be the certificate's, the client CA (if any) must hold a usable certificate.
/// Every error names the file it is about.
pub fn load(files: &ListenerTlsFiles, alpn: Alpn) -> Result<Loaded, String> {
    let chain = crate::pem::certificates(&files.cert_file)?;
    let key = crate::pem::private_key(&files.key_file)?;
    let not_after = chain
        .first()
        .and_then(|leaf| not_after(leaf))
        .ok_or_else(|| {
            format!(
                "{}: the first certificate's validity cannot be read",
                files.cert_file.display()
            )
        })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in crate::pem::certificates(ca)? {
                roots
                    .add(cert)
                    .map_err(|e| format!("{}: {e}", ca.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| format!("{}: {e}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|e| {
        format!(
            "{} and {}: {e}",
            files.cert_file.display(),
            files.key_file.display()
        )
    })?;
    config.alpn_protocols = match alpn {
        Alpn::Http => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        Alpn::H2 => vec![b"h2".to_vec()],
    };
    Ok(Loaded {
        config: Arc::new(config),
        not_after,
    })
}

/// What `check` says of a listener's TLS: the protocols, the expiry (an expired
/// certificate is an error) and the client CA.
pub fn describe(files: &ListenerTlsFiles, alpn: Alpn, now: i64) -> Result<String, String> {
    let loaded = load(files, alpn)?;
    let expires = format_date(loaded.not_after);
    if loaded.not_after <= now {
        return Err(format!(
            "{}: the certificate expired at {expires}",
            files.cert_file.display()
        ));
    }
    let days = (loaded.not_after - now) / 86_400;
    let protocols = match alpn {
        Alpn::Http => "h2, http/1.1",
        Alpn::H2 => "h2",
    };
    let clients = match &files.client_ca {
        Some(ca) => format!(
            "client certificates required, from the CA in {}",
            ca.display()
        ),
        None => "no client certificate asked".to_owned(),
    };
    Ok(format!(
        "TLS ({protocols}) with {}, expires {expires} (in {days} days); {clients}",
        files.cert_file.display()
    ))
}

/// One listener's TLS as it serves now: swapped whole when a renewed pair loads.
pub struct ServerTls {
    files: ListenerTlsFiles,
    alpn: Alpn,
    current: ArcSwap<rustls::ServerConfig>,
}

impl ServerTls {
    pub fn new(files: ListenerTlsFiles, alpn: Alpn, loaded: Loaded) -> Self {
        ServerTls {
            files,
            alpn,
            current: ArcSwap::new(loaded.config),
        }
    }

    /// The configuration a new connection's handshake uses.
    pub fn config(&self) -> Arc<rustls::ServerConfig> {
        self.current.load_full()
    }

    pub fn files(&self) -> &ListenerTlsFiles {
        &self.files
    }

    /// Reads the files again; on success the next handshakes use them. On failure the
    /// pair in use keeps serving and the error is returned.
    pub fn reload(&self) -> Result<i64, String> {
        let loaded = load(&self.files, self.alpn)?;
        self.current.store(loaded.config);
        Ok(loaded.not_after)
    }
}

/// What a file looks like from outside: a change of any part is a change of the file
/// (a Secret's symlink swapped gives a new inode; a rewrite, a new size or time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp(Vec<Option<FileStamp>>);

/// A file's device, inode, size and modification time.
type FileStamp = (u64, u64, u64, Option<SystemTime>);

impl Stamp {
    pub fn of(files: &ListenerTlsFiles) -> Stamp {
        let paths = [
            Some(&files.cert_file),
            Some(&files.key_file),
            files.client_ca.as_ref(),
        ];
        Stamp(paths.into_iter().flatten().map(|path| stat(path)).collect())
    }
}

#[cfg(unix)]
fn stat(path: &Path) -> Option<FileStamp> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.dev(), meta.ino(), meta.len(), meta.modified().ok()))
}

#[cfg(not(unix))]
fn stat(path: &Path) -> Option<FileStamp> {
    let meta = std::fs::metadata(path).ok()?;
    Some((0, 0, meta.len(), meta.modified().ok()))
}

/// The `notAfter` of a DER certificate, in Unix seconds.
///
/// Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version OPTIONAL,
/// serialNumber, signature, issuer, validity SEQUENCE { notBefore, notAfter }, ... } }
/// (RFC 5280 4.1), each Time a UTCTime or a GeneralizedTime.
pub fn not_after(cert: &CertificateDer<'_>) -> Option<i64> {
    let (certificate, _) = element(cert.as_ref(), 0x30)?;
    let (mut tbs, _) = element(certificate, 0x30)?;
    if tbs.first() == Some(&0xa0) {
        tbs = element(tbs, 0xa0)?.1;
    }
    let (_, rest) = element(tbs, 0x02)?; // serialNumber
    let (_, rest) = element(rest, 0x30)?; // signature
    let (_, rest) = element(rest, 0x30)?; // issuer
    let (validity, _) = element(rest, 0x30)?;
    let (_, rest) = any_element(validity)?; // notBefore
    let (tag, value) = (*rest.first()?, element(rest, *rest.first()?)?.0);
    time(tag, value)
}

/// The contents of the DER element at the start of `der`, which must have `tag`, and
/// what follows it.
fn element(der: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    if *der.first()? != tag {
        return None;
    }
    let (length, header) = match *der.get(1)? {
        short if short < 0x80 => (usize::from(short), 2),
        long => {
            let count = usize::from(long & 0x7f);
            if count == 0 || count > 4 {
                return None;
            }
            let mut length = 0usize;
            for byte in der.get(2..2 + count)? {
                length = (length << 8) | usize::from(*byte);
            }
            (length, 2 + count)
        }
    };
    let end = header.checked_add(length)?;
    Some((der.get(header..end)?, der.get(end..)?))
}

fn any_element(der: &[u8]) -> Option<(&[u8], &[u8])> {
    element(der, *der.first()?)
}

/// A UTCTime (`YYMMDDHHMMSSZ`, years 1950-2049) or a GeneralizedTime
/// (`YYYYMMDDHHMMSSZ`), as Unix seconds.
fn time(tag: u8, value: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(value).ok()?;
    let digits = text.strip_suffix('Z')?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (year, rest) = match (tag, digits.len()) {
        (0x17, 12) => {
            let yy: i64 = digits[..2].parse().ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &digits[2..])
        }
        (0x18, 14) => (digits[..4].parse().ok()?, &digits[4..]),
        _ => return None,
    };
    let field = |i: usize| -> Option<i64> { rest.get(i..i + 2)?.parse().ok() };
    let (month, day, hour, minute, second) =
        (field(0)?, field(2)?, field(4)?, field(6)?, field(8)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

/// Days from 1970-01-01 to the given proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `not_after` as a date a person reads: `2027-03-01T12:00:00Z`.
pub fn format_date(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    // civil_from_days, the inverse of the above.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_convert_both_ways() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(format_date(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_date(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(time(0x17, b"491231235959Z"), Some(2_524_607_999));
        assert_eq!(time(0x17, b"500101000000Z"), Some(-631_152_000));
        assert_eq!(time(0x18, b"20270301120000Z"), Some(1_803_902_400));
        assert_eq!(format_date(1_803_902_400), "2027-03-01T12:00:00Z");
        for bad in [
            &b"2701011200Z"[..],
            b"271301120000Z",
            b"270101120000",
            b"27010112000aZ",
        ] {
            assert_eq!(time(0x17, bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_expiry_of_a_real_certificate_is_read_in_both_time_forms() {
        // rcgen writes a UTCTime up to 2049 and a GeneralizedTime from 2050 on.
        for (year, expected) in [(2031, 1_952_467_200), (2051, 2_583_619_200)] {
            let mut params = rcgen::CertificateParams::new(vec!["gate.test".to_owned()]).unwrap();
            params.not_after = rcgen::date_time_ymd(year, 11, 15);
            let key = rcgen::KeyPair::generate().unwrap();
            let cert = params.self_signed(&key).unwrap();
            assert_eq!(not_after(cert.der()), Some(expected), "{year}");
            assert_eq!(format_date(expected), format!("{year}-11-15T00:00:00Z"));
        }
    }

    #[test]
    fn a_cut_or_wrong_certificate_has_no_date() {
        assert_eq!(
            not_after(&CertificateDer::from(vec![0x30, 0x82, 0xff])),
            None
        );
        assert_eq!(
            not_after(&CertificateDer::from(vec![0x02, 0x01, 0x00])),
            None
        );
        assert_eq!(not_after(&CertificateDer::from(Vec::new())), None);
    }
}
