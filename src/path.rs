//! Canonical request paths: the single form that both the policy and the upstream see.
//!
//! Path-normalization mismatches between an authorizer and the app behind it are the
//! classic bypass (Envoy CVE-2019-9901, CVE-2021-29492; Traefik CVE-2025-32431). So we
//! never "fix" a doubtful path: anything a server might read differently from us is
//! rejected with 400, and what we accept is forwarded exactly as the policy judged it.
//! The query is forwarded untouched; the one thing read from it is a `_method`
//! parameter, which some frameworks take as the method ([`query_overrides_method`]).

use std::borrow::Cow;

/// Why a request path was refused before any rule was evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path must start with '/'")]
    NotAbsolute,
    #[error("the path has an invalid percent-encoding")]
    InvalidPercentEncoding,
    #[error("the path percent-encodes '/', '\\', '.' or NUL")]
    EncodedDelimiter,
    #[error("the path contains a backslash")]
    Backslash,
    #[error("the path contains a '.' or '..' segment")]
    DotSegment,
    #[error("the path contains an empty segment ('//')")]
    EmptySegment,
    #[error("the path contains ';' (path parameters are not allowed)")]
    Semicolon,
    #[error("the path contains '#' (a fragment is never sent to a server)")]
    Fragment,
}

/// Returns the canonical form of `raw` (a path without its query), or why it is refused.
///
/// Canonical means one spelling per decoded path, so that a rule cannot be skipped by
/// escaping what an app decodes before it routes (Werkzeug and Go's `net/http` do):
/// every character a path segment may hold raw (RFC 3986 `pchar`: letters, digits,
/// `-`, `_`, `~`, the sub-delimiters `!$&'()*+,=`, `:` and `@`) is written raw, even
/// when it arrived escaped (`%40me` is `@me`), and every other byte is escaped with
/// upper-case hex (RFC 3986 §6.2.2.1), even when it arrived raw (`{` is `%7B`). So
/// only `%`, `?`, `#`, `;`, and bytes that are not visible ASCII, remain escapes. A
/// single trailing `/` is kept. `.` may be raw too, but an encoded dot is refused
/// instead of decoded, because `%2e%2e` is only ever sent to smuggle a `..` past a
/// matcher.
///
/// `;` is refused because Tomcat and Jetty strip `;params` from each segment, so
/// `/admin;x/` would be `/admin/` to them but not to the policy. A raw `#` is refused
/// because a server that receives it (nginx passes it in `$request_uri`) cuts the
/// path there: `/admin#x` is `/admin` to Express and Flask, but the segment `admin#x`
/// to a matcher. An escaped `%23` stays escaped, so it never becomes a delimiter.
pub fn canonicalize(raw: &str) -> Result<Cow<'_, str>, PathError> {
    let bytes = raw.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    // `out` stays None while the canonical form equals the input, so the common
    // already-canonical path is returned without allocating.
    let mut out: Option<String> = None;
    let mut segment_start = 1;
    let mut i = 1;
    while i <= bytes.len() {
        let b = bytes.get(i).copied();
        match b {
            None | Some(b'/') => {
                check_segment(raw, segment_start, i, b.is_none())?;
                if let (Some(o), Some(_)) = (out.as_mut(), b) {
                    o.push('/');
                }
                segment_start = i + 1;
                i += 1;
            }
            Some(b'\\') => return Err(PathError::Backslash),
            Some(b';') => return Err(PathError::Semicolon),
            Some(b'#') => return Err(PathError::Fragment),
            Some(b'%') => {
                let hi = bytes.get(i + 1).copied().and_then(hex_value);
                let lo = bytes.get(i + 2).copied().and_then(hex_value);
                let (Some(hi), Some(lo)) = (hi, lo) else {
                    return Err(PathError::InvalidPercentEncoding);
                };
                let decoded = hi << 4 | lo;
                if matches!(decoded, b'/' | b'\\' | b'.' | 0) {
                    return Err(PathError::EncodedDelimiter);
                }
                let o = out.get_or_insert_with(|| raw[..i].to_owned());
                if is_segment_char(decoded) {
                    o.push(char::from(decoded));
                } else {
                    push_escape(o, decoded);
                }
                i += 3;
            }
            Some(other) => {
                if is_segment_char(other) || other == b'.' {
                    if let Some(o) = out.as_mut() {
                        o.push(char::from(other));
                    }
                } else {
                    push_escape(out.get_or_insert_with(|| raw[..i].to_owned()), other);
                }
                i += 1;
            }
        }
    }
    Ok(match out {
        Some(s) => Cow::Owned(s),
        None => Cow::Borrowed(raw),
    })
}

/// Checks one segment, `raw[start..end]`, in its raw (still encoded) form. Encoded
/// dots are refused elsewhere, so a literal `.` or `..` is the only dot segment left.
fn check_segment(raw: &str, start: usize, end: usize, is_last: bool) -> Result<(), PathError> {
    let segment = raw.get(start..end).unwrap_or_default();
    match segment {
        // A trailing slash ("/admin/", or the root "/") is an empty last segment.
        "" if is_last => Ok(()),
        "" => Err(PathError::EmptySegment),
        "." | ".." => Err(PathError::DotSegment),
        _ => Ok(()),
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// A byte a path segment holds raw in the canonical form: RFC 3986 `pchar` without
/// `.` (a raw dot is kept, an escaped one refused) and without `;` (refused raw, and
/// kept escaped, since Tomcat and Jetty would read it as a parameter).
fn is_segment_char(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'_'
                | b'~'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b'='
                | b':'
                | b'@'
        )
}

fn push_escape(out: &mut String, b: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(char::from(HEX[usize::from(b >> 4)]));
    out.push(char::from(HEX[usize::from(b & 0xf)]));
}

/// Whether a query string overrides the method: it has a parameter that Laravel and
/// Symfony (on `POST`) or Express's `method-override('_method')` read as the method the
/// app runs, whatever the request's own method. The name is read as those apps read
/// it: form-decoded (`%5F`, `+`), and as PHP mangles names (leading spaces dropped;
/// ` `, `.` and `[` turned into `_`), in any case. So `?_method=DELETE`,
/// `?%5Fmethod=DELETE` and `?.METHOD=DELETE` all count. No allocation.
pub fn query_overrides_method(query: &str) -> bool {
    const NAME: &[u8] = b"_method";
    query.split('&').any(|pair| {
        let name = pair
            .split_once('=')
            .map_or(pair, |(name, _)| name)
            .as_bytes();
        let mut decoded = FormDecoded { raw: name, at: 0 }
            .skip_while(|&b| b == b' ')
            .map(|b| match b {
                b' ' | b'.' | b'[' => b'_',
                other => other.to_ascii_lowercase(),
            });
        NAME.iter().all(|&want| decoded.next() == Some(want)) && decoded.next().is_none()
    })
}

/// The bytes of a form-encoded name: `%XX` decoded (a malformed escape stays as
/// sent), `+` a space.
struct FormDecoded<'a> {
    raw: &'a [u8],
    at: usize,
}

impl Iterator for FormDecoded<'_> {
    type Item = u8;

    fn next(&mut self) -> Option<u8> {
        let b = *self.raw.get(self.at)?;
        self.at += 1;
        if b == b'+' {
            return Some(b' ');
        }
        if b == b'%' {
            let hi = self.raw.get(self.at).copied().and_then(hex_value);
            let lo = self.raw.get(self.at + 1).copied().and_then(hex_value);
            if let (Some(hi), Some(lo)) = (hi, lo) {
                self.at += 2;
                return Some(hi << 4 | lo);
            }
        }
        Some(b)
    }
}

/// The segments of a canonical path, without the leading `/`. The root `/` has one
/// empty segment, and so does the end of a path with a trailing slash.
pub fn segments(canonical: &str) -> std::str::Split<'_, char> {
    canonical.get(1..).unwrap_or_default().split('/')
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_method_parameter_is_found_in_every_spelling_an_app_reads() {
        use super::query_overrides_method as overrides;
        for query in [
            "_method=DELETE",
            "a=1&_method=PUT",
            "_method",
            "_METHOD=delete",
            "%5Fmethod=DELETE",
            "%5fmethod=DELETE",
            "_%6Dethod=DELETE",
            ".method=DELETE",
            "+.method=DELETE",
            "%20%20_method=DELETE",
            "[method=DELETE",
            "x&_method=&y",
        ] {
            assert!(overrides(query), "{query}");
        }
        for query in [
            "",
            "method=DELETE",
            "_methods=DELETE",
            "x_method=DELETE",
            "q=_method",
            "q=1&m=_method%3DDELETE",
            "_method%3DDELETE=1",
            "_metho",
            "%5",
            "%",
        ] {
            assert!(!overrides(query), "{query}");
        }
    }

    use super::*;

    #[test]
    fn accepted_paths_and_their_canonical_form() {
        let cases = [
            ("/", "/"),
            ("/admin", "/admin"),
            ("/admin/", "/admin/"),
            ("/a/b/c", "/a/b/c"),
            ("/%61dmin/x", "/admin/x"),
            ("/%41%7e%2D%5f", "/A~-_"),
            ("/files/a%20b", "/files/a%20b"),
            ("/files/a%3fb", "/files/a%3Fb"),
            ("/admin%23x", "/admin%23x"),
            ("/caf%C3%A9", "/caf%C3%A9"),
            ("/x.y/..z/...", "/x.y/..z/..."),
            ("/a:b@c!$&'()*+,=", "/a:b@c!$&'()*+,="),
            // Every pchar is written raw, whichever way it arrived.
            ("/users/%40me", "/users/@me"),
            ("/%3a%21%24%26%27%28%29%2a%2b%2c%3d", "/:!$&'()*+,="),
            // Everything else is escaped, whichever way it arrived.
            ("/a{b}|c^\"<>`[]", "/a%7Bb%7D%7Cc%5E%22%3C%3E%60%5B%5D"),
            ("/a%7bb", "/a%7Bb"),
            ("/a%3bb%25", "/a%3Bb%25"),
        ];
        for (raw, want) in cases {
            assert_eq!(canonicalize(raw).as_deref(), Ok(want), "{raw}");
        }
    }

    #[test]
    fn unchanged_paths_are_not_copied() {
        assert!(matches!(canonicalize("/a/b"), Ok(Cow::Borrowed(_))));
        assert!(matches!(canonicalize("/%61"), Ok(Cow::Owned(_))));
    }

    #[test]
    fn refused_paths_and_why() {
        use PathError::*;
        let cases = [
            ("", NotAbsolute),
            ("admin", NotAbsolute),
            ("*", NotAbsolute),
            ("/admin%2Fx", EncodedDelimiter),
            ("/admin%2fx", EncodedDelimiter),
            ("/admin%5Cx", EncodedDelimiter),
            ("/admin%00", EncodedDelimiter),
            ("/%2e%2e/admin", EncodedDelimiter),
            ("/public/%2E./admin", EncodedDelimiter),
            ("/admin\\x", Backslash),
            ("/public/../admin", DotSegment),
            ("/public/./admin", DotSegment),
            ("/..", DotSegment),
            ("/a/.", DotSegment),
            ("//admin", EmptySegment),
            ("/admin//x", EmptySegment),
            ("/admin;jsessionid=1", Semicolon),
            ("/admin#x", Fragment),
            ("/admin#", Fragment),
            ("/invoices/7/export#", Fragment),
            ("/#/admin", Fragment),
            ("/admin%", InvalidPercentEncoding),
            ("/admin%4", InvalidPercentEncoding),
            ("/admin%zz", InvalidPercentEncoding),
            ("/admin%%41", InvalidPercentEncoding),
        ];
        for (raw, want) in cases {
            assert_eq!(canonicalize(raw), Err(want), "{raw}");
        }
    }

    #[test]
    fn segments_of_canonical_paths() {
        assert_eq!(segments("/").collect::<Vec<_>>(), [""]);
        assert_eq!(segments("/a/b").collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(segments("/a/").collect::<Vec<_>>(), ["a", ""]);
    }
}
