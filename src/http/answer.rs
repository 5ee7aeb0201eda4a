//! How a refusal is written on the wire: the JSON answer with its challenge, and the
//! gRPC trailers-only answer; the bodies every response shares. What each refusal
//! means (status, challenge, gRPC code, fault) is [`crate::rejection`].

use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue, ALLOW, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full};

use crate::rejection::Rejection;

/// An error from any body the gate relays: the app's (hyper) or a gRPC service's.
pub use crate::client::BoxError;

/// The body type of every response the gate writes or relays.
pub type GateBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

/// A complete in-memory body, boxed to the type every response shares.
pub fn full_body(bytes: impl Into<Bytes>) -> GateBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// The standard methods the gate forwards, for the `Allow` header of a 405. Extension
/// methods in upper case are forwarded too; `CONNECT` and `TRACE` never are.
pub const FORWARDED_METHODS: &str = "GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS";

/// A refusal as HTTP writes it, for a response or for Envoy's `DeniedHttpResponse`.
pub struct Written {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Rejection {
    /// The refusal as HTTP writes it: the status, the challenge if any, and a small
    /// JSON body that names the problem and the request id without echoing the token
    /// or internals. An answered preflight (204) has neither body nor headers: its
    /// CORS headers are written by the endpoint.
    pub fn written(&self, request_id: Option<&str>) -> Written {
        let answer = self.answer();
        let mut headers = HeaderMap::new();
        if answer.status == StatusCode::NO_CONTENT {
            return Written {
                status: answer.status,
                headers,
                body: String::new(),
            };
        }
        let body = match request_id {
            Some(id) => serde_json::json!({
                "error": answer.error, "message": self.to_string(), "request_id": id
            }),
            None => serde_json::json!({ "error": answer.error, "message": self.to_string() }),
        };
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(value) = answer
            .challenge
            .and_then(|c| HeaderValue::from_str(&c).ok())
        {
            headers.insert(WWW_AUTHENTICATE, value);
        }
        if answer.status == StatusCode::METHOD_NOT_ALLOWED {
            // RFC 9110 §15.5.6: a 405 lists the methods that are supported.
            headers.insert(ALLOW, HeaderValue::from_static(FORWARDED_METHODS));
        }
        Written {
            status: answer.status,
            headers,
            body: body.to_string(),
        }
    }

    /// The refusal as an HTTP response (see [`Rejection::written`]).
    pub fn response(&self, request_id: Option<&str>) -> Response<GateBody> {
        let written = self.written(request_id);
        let mut response = Response::new(full_body(written.body));
        *response.status_mut() = written.status;
        *response.headers_mut() = written.headers;
        response
    }

    /// The answer a gRPC client understands: HTTP 200 with no body and the status in
    /// the headers (a "Trailers-Only" response, gRPC over HTTP/2 spec), since a bare
    /// 401 reads to a gRPC client as a protocol error.
    pub fn grpc_response(&self) -> Response<GateBody> {
        let answer = self.answer();
        let mut response = Response::new(full_body(""));
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        headers.insert("grpc-status", HeaderValue::from(self.grpc_code() as i32));
        if let Ok(message) = HeaderValue::from_str(&grpc_message(&self.to_string())) {
            headers.insert("grpc-message", message);
        }
        if let Some(value) = answer
            .challenge
            .and_then(|c| HeaderValue::from_str(&c).ok())
        {
            headers.insert(WWW_AUTHENTICATE, value);
        }
        response
    }
}

/// `grpc-message`: percent-encoded UTF-8, every byte outside visible ASCII and `%`
/// escaped (gRPC over HTTP/2 spec).
fn grpc_message(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authorize::AuthError;

    #[test]
    fn grpc_clients_get_a_status_they_understand() {
        let cases = [
            (Rejection::Auth(AuthError::MissingToken), "16"),
            (Rejection::Auth(AuthError::NotGranted), "7"),
            (Rejection::Auth(AuthError::KeysUnavailable), "14"),
            (Rejection::UpstreamTimeout, "4"),
            (Rejection::Auth(AuthError::BadMethod), "3"),
            (Rejection::Internal, "13"),
        ];
        for (rejection, code) in cases {
            let r = rejection.grpc_response();
            assert_eq!(r.status(), StatusCode::OK, "{rejection:?}");
            assert_eq!(r.headers()["grpc-status"], code, "{rejection:?}");
            assert_eq!(r.headers()[CONTENT_TYPE], "application/grpc");
        }
        assert_eq!(grpc_message("no bearer token"), "no bearer token");
        assert_eq!(grpc_message("100% é"), "100%25 %C3%A9");
    }
}
