//! The HTTP contract of the core: plain request/response values and a client trait the browser
//! implements with `fetch`. The core builds every request and interprets every answer.

use crate::error::Result;

/// An HTTP request built by the core.
#[derive(Debug, Clone, PartialEq, Eq)]
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
