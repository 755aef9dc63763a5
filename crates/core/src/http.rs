//! The HTTP contract of the core: plain request/response values and a client trait the browser
//! implements with `fetch`. The core builds every request and interprets every answer.

use base64::{engine::general_purpose::STANDARD as B64, Engine as _};
use zeroize::{Zeroize, Zeroizing};

use crate::error::Result;

/// An HTTP request built by the core. Its header values and body are zeroized when it is
/// dropped (the `Authorization` header carries the password; an escrow body, the data key),
/// and `Debug` never prints the `Authorization` value.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// `GET`, `POST`, ...
    pub method: String,
    /// Absolute or origin-relative URL.
    pub url: String,
    /// Header name/value pairs.
    pub headers: Vec<(String, String)>,
    /// Body bytes, if any.
    pub body: Option<Vec<u8>>,
    /// Whether the browser may send and keep its session cookie for this request: only the
    /// request that opens the DHIS2 session the app then uses, once a login is verified, and
    /// its renewal. Every other request of the library authenticates on its own (Basic) and
    /// leaves the browser's cookies alone, so a download or flush of one user never replaces
    /// the session of the user logged in next, and the login's password check is never
    /// answered by a live session instead of the password (DHIS2 does not check a Basic
    /// password when the request carries a session of the same username).
    pub opens_session: bool,
}

impl Drop for HttpRequest {
    fn drop(&mut self) {
        for (_, value) in &mut self.headers {
            value.zeroize();
        }
        if let Some(body) = &mut self.body {
            body.zeroize();
        }
    }
}

impl std::fmt::Debug for HttpRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), if k.eq_ignore_ascii_case("authorization") { "<redacted>" } else { v.as_str() }))
            .collect();
        f.debug_struct("HttpRequest")
            .field("method", &self.method)
            .field("url", &self.url)
            .field("headers", &headers)
            .field("body", &self.body.as_ref().map(|b| format!("<{} bytes>", b.len())))
            .field("opens_session", &self.opens_session)
            .finish()
    }
}

/// The `Authorization` header pair `Basic base64(username:password)`. Every buffer that holds
/// the password on the way (`username:password`, its base64) is zeroized; the returned value
/// moves into a request's headers without being copied (see [`HttpRequest`]'s drop).
pub fn basic_authorization(username: &str, password: &str) -> (String, String) {
    let mut plain = Zeroizing::new(Vec::with_capacity(username.len() + 1 + password.len()));
    plain.extend_from_slice(username.as_bytes());
    plain.push(b':');
    plain.extend_from_slice(password.as_bytes());
    const PREFIX: &[u8] = b"Basic ";
    let encoded_len = plain.len().div_ceil(3) * 4;
    let mut value = Zeroizing::new(vec![0u8; PREFIX.len() + encoded_len]);
    value[..PREFIX.len()].copy_from_slice(PREFIX);
    let written = B64.encode_slice(plain.as_slice(), &mut value[PREFIX.len()..]).unwrap_or(0);
    value.truncate(PREFIX.len() + written);
    // Base64 and the prefix are ASCII: the bytes become the String as they are (no copy).
    let value = String::from_utf8(std::mem::take(&mut *value)).unwrap_or_default();
    ("Authorization".into(), value)
}

/// An HTTP response as the client received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Header name/value pairs (names lower-case).
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// First value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Sends requests. An `Err` means no HTTP answer arrived (network error, timeout, CORS, abort);
/// any HTTP status, even 5xx, is an `Ok`.
#[allow(async_fn_in_trait, reason = "used generically, never as a trait object")]
pub trait HttpClient {
    /// Sends one request.
    async fn send(&self, request: HttpRequest) -> Result<HttpResponse>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_authorization_is_the_base64_of_user_colon_password() {
        assert_eq!(
            basic_authorization("nurse1", "Nurse1!clinic"),
            ("Authorization".to_string(), "Basic bnVyc2UxOk51cnNlMSFjbGluaWM=".to_string())
        );
        assert_eq!(basic_authorization("ab", "c").1, "Basic YWI6Yw==");
        assert_eq!(basic_authorization("a", "b").1, "Basic YTpi");
        assert_eq!(basic_authorization("سارة", "كلمة").1, format!("Basic {}", B64.encode("سارة:كلمة")));
    }

    #[test]
    fn debug_of_a_request_never_prints_the_authorization_value() {
        let request = HttpRequest {
            opens_session: false,
            method: "GET".into(),
            url: "/api/me".into(),
            headers: vec![basic_authorization("nurse1", "Nurse1!clinic"), ("Accept".into(), "application/json".into())],
            body: Some(b"{\"dataKey\":\"secret\"}".to_vec()),
        };
        let printed = format!("{request:?} {request:#?}");
        for secret in ["bnVyc2UxOk51cnNlMSFjbGluaWM=", "Nurse1!clinic", "dataKey"] {
            assert!(!printed.contains(secret), "{secret} printed: {printed}");
        }
        assert!(printed.contains("<redacted>") && printed.contains("application/json") && printed.contains("/api/me"));
    }
}
