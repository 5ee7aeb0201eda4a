//! CORS (Fetch standard §3.2): what a preflight is, which preflights `[cors]` allows,
//! and the response headers the gate writes with `cors_preflight = "answer"`.
//! Pure functions of header maps, so that the decision core and every listener share
//! them.

use http::header::{
    HeaderMap, HeaderName, HeaderValue, ACCESS_CONTROL_ALLOW_CREDENTIALS,
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_HEADERS,
    ACCESS_CONTROL_REQUEST_METHOD, CONTENT_LENGTH, ORIGIN, VARY,
};
use http::Method;

use crate::config::CorsConfig;

/// Whether a request is a CORS preflight: `OPTIONS` with `Origin` and
/// `Access-Control-Request-Method`. Whatever else it carries.
pub fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
    *method == Method::OPTIONS
        && headers.contains_key(ORIGIN)
        && headers.contains_key(ACCESS_CONTROL_REQUEST_METHOD)
}

/// The request headers a browser's preflight carries, and the ones the proxies in
/// front add to describe a request (never a credential). `Cookie`, `Authorization`,
/// a body and any header of the app's own are not among them.
const PREFLIGHT_HEADERS: &[&str] = &[
    "host",
    "origin",
    "access-control-request-method",
    "access-control-request-headers",
    "access-control-request-private-network",
    "user-agent",
    "accept",
    "accept-language",
    "accept-encoding",
    "referer",
    "connection",
    "keep-alive",
    "cache-control",
    "pragma",
    "priority",
    "dnt",
    "content-length",
    // Written by nginx, Caddy, Traefik and Envoy in front of the gate or in their
    // check requests.
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-forwarded-server",
    "x-forwarded-method",
    "x-forwarded-uri",
    "x-original-method",
    "x-original-uri",
    "x-real-ip",
    "forwarded",
    "via",
    "x-request-id",
    "traceparent",
    "tracestate",
    "x-amzn-trace-id",
    "x-envoy-expected-rq-timeout-ms",
    "x-envoy-internal",
];

/// Whether a preflight carries nothing a handler could act on: no body, and no header
/// but [`PREFLIGHT_HEADERS`] and the `Sec-` ones only a browser can set (`Sec-Fetch-*`,
/// client hints). What `cors_preflight = "pass"` lets through without a token.
pub fn carries_only_preflight(headers: &HeaderMap) -> bool {
    headers.iter().all(|(name, value)| {
        let name = name.as_str();
        if name == CONTENT_LENGTH.as_str() {
            return value.as_bytes() == b"0";
        }
        name.starts_with("sec-") || PREFLIGHT_HEADERS.contains(&name)
    })
}

/// Why `[cors]` does not allow a preflight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Origin,
    Method,
    Headers,
}

impl Refusal {
    pub fn text(self) -> &'static str {
        match self {
            Refusal::Origin => "the origin is not in cors.allowed_origins",
            Refusal::Method => "the requested method is not in cors.allowed_methods",
            Refusal::Headers => "a requested header is not in cors.allowed_headers",
        }
    }
}

/// The CORS-safelisted request headers (Fetch §4.5) a browser may list in
/// `Access-Control-Request-Headers` yet always sends; `content-type` is not one of
/// them here, since browsers list it only for a type a form cannot send.
const SAFELISTED: &[&str] = &["accept", "accept-language", "content-language"];

/// Whether `cors` allows the preflight in `headers`: its origin, its requested method
/// and every requested header.
pub fn judge_preflight(cors: &CorsConfig, headers: &HeaderMap) -> Result<(), Refusal> {
    let origin = single_text(headers, &ORIGIN).ok_or(Refusal::Origin)?;
    if !cors.allows_origin(origin) {
        return Err(Refusal::Origin);
    }
    let method = single_text(headers, &ACCESS_CONTROL_REQUEST_METHOD).ok_or(Refusal::Method)?;
    if !cors.allowed_methods.iter().any(|m| m.as_str() == method) {
        return Err(Refusal::Method);
    }
    for value in headers.get_all(ACCESS_CONTROL_REQUEST_HEADERS) {
        let text = value.to_str().map_err(|_| Refusal::Headers)?;
        for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let name = name.to_ascii_lowercase();
            if !SAFELISTED.contains(&name.as_str()) && !cors.allowed_headers.contains(&name) {
                return Err(Refusal::Headers);
            }
        }
    }
    Ok(())
}

/// The request's single `name` header as text.
fn single_text<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Option<&'h str> {
    let mut values = headers.get_all(name).iter();
    let value = values.next()?;
    match values.next() {
        Some(_) => None,
        None => value.to_str().ok(),
    }
}

/// What the gate remembers of a request to write its CORS response headers: its
/// `Origin`, which `[cors]` allows.
#[derive(Debug, Clone)]
pub struct Allowed<'c> {
    cors: &'c CorsConfig,
    origin: HeaderValue,
}

/// The request's origin, if `cors` allows it.
pub fn allowed_origin<'c>(cors: &'c CorsConfig, headers: &HeaderMap) -> Option<Allowed<'c>> {
    let origin = single_text(headers, &ORIGIN).filter(|o| cors.allows_origin(o))?;
    Some(Allowed {
        cors,
        origin: HeaderValue::from_str(origin).ok()?,
    })
}

impl Allowed<'_> {
    /// The CORS headers of the gate's answer: a preflight's if it answered one, a
    /// response's otherwise.
    pub fn write(&self, preflight: bool, out: &mut HeaderMap) {
        match preflight {
            true => write_preflight(self, out),
            false => write_response(self, out),
        }
    }
}

/// The answer to an allowed preflight (204): who may ask, with which methods and
/// headers, for how long.
fn write_preflight(origin: &Allowed, out: &mut HeaderMap) {
    let cors = origin.cors;
    write_origin(origin, out);
    if let Ok(value) = HeaderValue::from_str(&join(cors.allowed_methods.iter().map(Method::as_str)))
    {
        out.insert(ACCESS_CONTROL_ALLOW_METHODS, value);
    }
    if !cors.allowed_headers.is_empty() {
        if let Ok(value) =
            HeaderValue::from_str(&join(cors.allowed_headers.iter().map(String::as_str)))
        {
            out.insert(ACCESS_CONTROL_ALLOW_HEADERS, value);
        }
    }
    out.insert(
        ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from(cors.max_age.as_secs()),
    );
    // A cache must not give one origin's or one request's answer to another.
    out.append(
        VARY,
        HeaderValue::from_static(
            "origin, access-control-request-method, access-control-request-headers",
        ),
    );
}

/// The CORS headers of an answer to an allowed origin's request, unless the app wrote
/// its own `Access-Control-Allow-Origin`: two would fail the browser's check.
fn write_response(origin: &Allowed, out: &mut HeaderMap) {
    let cors = origin.cors;
    if out.contains_key(ACCESS_CONTROL_ALLOW_ORIGIN) {
        return;
    }
    write_origin(origin, out);
    if !cors.expose_headers.is_empty() {
        if let Ok(value) =
            HeaderValue::from_str(&join(cors.expose_headers.iter().map(String::as_str)))
        {
            out.insert(ACCESS_CONTROL_EXPOSE_HEADERS, value);
        }
    }
    out.append(VARY, HeaderValue::from_static("origin"));
}

fn write_origin(origin: &Allowed, out: &mut HeaderMap) {
    let cors = origin.cors;
    // `*` answers `*` only without credentials (config refuses the pair); otherwise
    // the one origin that asked.
    let any = cors.allowed_origins.iter().any(|o| o == "*") && !cors.allow_credentials;
    let value = match any {
        true => HeaderValue::from_static("*"),
        false => origin.origin.clone(),
    };
    out.insert(ACCESS_CONTROL_ALLOW_ORIGIN, value);
    if cors.allow_credentials {
        out.insert(
            ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
}

fn join<'a>(items: impl Iterator<Item = &'a str>) -> String {
    items.collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn cors(origins: &[&str], credentials: bool) -> CorsConfig {
        CorsConfig {
            allowed_origins: origins.iter().map(|o| o.to_string()).collect(),
            allowed_methods: vec![Method::GET, Method::POST, Method::DELETE],
            allowed_headers: vec!["authorization".into(), "content-type".into()],
            expose_headers: vec!["x-total".into()],
            allow_credentials: credentials,
            max_age: Duration::from_secs(600),
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    const PREFLIGHT: [(&str, &str); 3] = [
        ("origin", "https://app.example.com"),
        ("access-control-request-method", "DELETE"),
        ("access-control-request-headers", "Authorization, Accept"),
    ];

    #[test]
    fn a_preflight_is_only_what_a_browser_sends() {
        let browser = headers(&[
            PREFLIGHT[0],
            PREFLIGHT[1],
            ("sec-fetch-mode", "cors"),
            ("user-agent", "Mozilla/5.0"),
            ("content-length", "0"),
            ("x-forwarded-for", "192.0.2.1"),
        ]);
        assert!(is_preflight(&Method::OPTIONS, &browser));
        assert!(carries_only_preflight(&browser));
        assert!(!is_preflight(&Method::DELETE, &browser));
        for extra in [
            ("cookie", "session=1"),
            ("authorization", "Bearer x"),
            ("content-length", "5"),
            ("transfer-encoding", "chunked"),
            ("x-api-key", "k"),
            ("x-user-sub", "admin"),
        ] {
            let mut with = browser.clone();
            with.append(
                HeaderName::from_bytes(extra.0.as_bytes()).unwrap(),
                HeaderValue::from_static(extra.1),
            );
            assert!(!carries_only_preflight(&with), "{extra:?}");
        }
    }

    #[test]
    fn cors_allows_its_origins_methods_and_headers_only() {
        let c = cors(&["https://app.example.com"], true);
        assert_eq!(judge_preflight(&c, &headers(&PREFLIGHT)), Ok(()));
        let other = headers(&[("origin", "https://evil.example"), PREFLIGHT[1]]);
        assert_eq!(judge_preflight(&c, &other), Err(Refusal::Origin));
        let case = headers(&[("origin", "HTTPS://APP.example.com"), PREFLIGHT[1]]);
        assert_eq!(judge_preflight(&c, &case), Ok(()));
        let put = headers(&[PREFLIGHT[0], ("access-control-request-method", "PUT")]);
        assert_eq!(judge_preflight(&c, &put), Err(Refusal::Method));
        let lower = headers(&[PREFLIGHT[0], ("access-control-request-method", "delete")]);
        assert_eq!(judge_preflight(&c, &lower), Err(Refusal::Method));
        let custom = headers(&[
            PREFLIGHT[0],
            PREFLIGHT[1],
            ("access-control-request-headers", "x-api-key"),
        ]);
        assert_eq!(judge_preflight(&c, &custom), Err(Refusal::Headers));
        let twice = headers(&[PREFLIGHT[0], PREFLIGHT[0], PREFLIGHT[1]]);
        assert_eq!(judge_preflight(&c, &twice), Err(Refusal::Origin));
    }

    #[test]
    fn the_answers_name_the_origin_or_any_never_both_with_credentials() {
        let c = cors(&["https://app.example.com"], true);
        let origin = allowed_origin(&c, &headers(&PREFLIGHT)).unwrap();
        let mut out = HeaderMap::new();
        origin.write(true, &mut out);
        assert_eq!(
            out["access-control-allow-origin"],
            "https://app.example.com"
        );
        assert_eq!(out["access-control-allow-credentials"], "true");
        assert_eq!(out["access-control-allow-methods"], "GET, POST, DELETE");
        assert_eq!(
            out["access-control-allow-headers"],
            "authorization, content-type"
        );
        assert_eq!(out["access-control-max-age"], "600");

        let any = cors(&["*"], false);
        let from_any = allowed_origin(&any, &headers(&PREFLIGHT)).unwrap();
        let mut out = HeaderMap::new();
        from_any.write(false, &mut out);
        assert_eq!(out["access-control-allow-origin"], "*");
        assert!(!out.contains_key("access-control-allow-credentials"));
        assert_eq!(out["access-control-expose-headers"], "x-total");
        assert_eq!(out["vary"], "origin");

        // The app's own answer stands.
        let mut app = headers(&[("access-control-allow-origin", "https://other")]);
        origin.write(false, &mut app);
        assert_eq!(app["access-control-allow-origin"], "https://other");
        assert!(!app.contains_key("vary"));

        let stranger = headers(&[("origin", "https://evil.example")]);
        assert!(allowed_origin(&c, &stranger).is_none());
    }
}
