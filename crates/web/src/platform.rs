//! Browser implementations of the core's small platform traits: randomness
//! (`crypto.getRandomValues`), PBKDF2 (WebCrypto `deriveBits`) and the opening of many sealed
//! values at once (WebCrypto AES-GCM `decrypt`), HTTP (`fetch` via gloo-net) and the clock. All of them reach the global scope, never `window`, so they work in the service
//! worker too.

use gloo_net::http::{Method, RequestBuilder};
use js_sys::{Reflect, Uint8Array};
use tracker_offline_core::{
    crypto::{EnvelopeParts, SealInput, SecretKey},
    http::{HttpClient, HttpRequest, HttpResponse},
    kdf::PasswordKdf,
    random::RandomSource,
    CoreError, Result,
};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

use crate::error::js_error_parts;

/// `crypto.getRandomValues` through getrandom's `js` backend.
#[derive(Debug, Default, Clone, Copy)]
pub struct WebRandom;

impl RandomSource for WebRandom {
    fn fill(&self, buf: &mut [u8]) -> Result<()> {
        getrandom::getrandom(buf).map_err(|e| CoreError::Crypto(format!("crypto.getRandomValues: {e}")))
    }
}

/// Milliseconds since the epoch.
pub fn now_ms() -> i64 {
    js_sys::Date::now() as i64
}

fn subtle_crypto() -> Result<web_sys::SubtleCrypto> {
    let global = js_sys::global();
    let crypto = Reflect::get(&global, &"crypto".into())
        .ok()
        .and_then(|c| c.dyn_into::<web_sys::Crypto>().ok())
        .ok_or_else(|| CoreError::Crypto("no crypto object in this context".into()))?;
    Ok(crypto.subtle())
}

fn crypto_error(value: JsValue) -> CoreError {
    let (name, message) = js_error_parts(&value);
    CoreError::Crypto(format!("WebCrypto {name}: {message}"))
}

/// PBKDF2-HMAC-SHA256 by WebCrypto `deriveBits` (native code, about 3x the speed of the Rust
/// implementation compiled to wasm). The browser tests prove it equals [`tracker_offline_core::kdf::RustPbkdf2`].
#[derive(Debug, Default, Clone, Copy)]
pub struct WebCryptoPbkdf2;

impl PasswordKdf for WebCryptoPbkdf2 {
    async fn pbkdf2_sha256(&self, password: &[u8], salt: &[u8], iterations: u32) -> Result<SecretKey> {
        if iterations == 0 {
            return Err(CoreError::BadInput("PBKDF2 needs at least one iteration".into()));
        }
        let subtle = subtle_crypto()?;
        let password_bytes = Uint8Array::from(password);
        let usages = js_sys::Array::of1(&"deriveBits".into());
        let base_key = JsFuture::from(
            subtle.import_key_with_str("raw", &password_bytes, "PBKDF2", false, &usages).map_err(crypto_error)?,
        )
        .await
        .map_err(crypto_error)?;
        password_bytes.fill(0, 0, password_bytes.length());
        let base_key: web_sys::CryptoKey = base_key.unchecked_into();
        let params = web_sys::Pbkdf2Params::new_with_str("PBKDF2", "SHA-256", iterations, &Uint8Array::from(salt));
        let bits = JsFuture::from(subtle.derive_bits_with_object(&params, &base_key, 256).map_err(crypto_error)?)
            .await
            .map_err(crypto_error)?;
        let view = Uint8Array::new(&bits);
        if view.length() != 32 {
            return Err(CoreError::Crypto("deriveBits returned the wrong length".into()));
        }
        // Straight into the key's own memory, then wiped on the JS side.
        let key = SecretKey::filled(|out| view.copy_to(&mut out[..]));
        view.fill(0, 0, 32);
        Ok(key)
    }

    /// AES-256-GCM `decrypt` of every envelope, all requests in flight before the first is
    /// awaited. The data key is imported once per call, not extractable (`import_aes_key`);
    /// the imported key is dropped with the call.
    async fn open_many(&self, key: &SecretKey, envelopes: &[EnvelopeParts<'_>]) -> Option<Vec<Result<Vec<u8>>>> {
        let subtle = subtle_crypto().ok()?;
        let crypto_key = import_aes_key(&subtle, key, "decrypt").await?;
        let pending: Vec<_> = envelopes
            .iter()
            .map(|e| {
                subtle.decrypt_with_object_and_u8_array(&aes_gcm_params(e.nonce, &e.aad), &crypto_key, e.ciphertext)
            })
            .collect();
        // WebCrypto says only OperationError: the same error as the Rust AES-GCM's.
        let opened = bytes_of_all(pending).await;
        Some(
            opened
                .into_iter()
                .map(|r| r.map_err(|_| CoreError::StorageCorrupt("authentication failed".into())))
                .collect(),
        )
    }

    /// AES-256-GCM `encrypt` of every input under the nonce it carries, all requests in flight
    /// at once; the key handled as in `open_many`.
    async fn seal_many(&self, key: &SecretKey, inputs: &[SealInput<'_>]) -> Option<Vec<Result<Vec<u8>>>> {
        let subtle = subtle_crypto().ok()?;
        let crypto_key = import_aes_key(&subtle, key, "encrypt").await?;
        let pending: Vec<_> = inputs
            .iter()
            .map(|input| {
                let params = aes_gcm_params(&input.nonce, &input.aad);
                subtle.encrypt_with_object_and_u8_array(&params, &crypto_key, input.plaintext)
            })
            .collect();
        Some(bytes_of_all(pending).await.into_iter().map(|r| r.map_err(crypto_error)).collect())
    }
}

/// The bytes each WebCrypto request answers, awaited in order (all are in flight already).
async fn bytes_of_all(
    pending: Vec<std::result::Result<js_sys::Promise, JsValue>>,
) -> Vec<std::result::Result<Vec<u8>, JsValue>> {
    let mut out = Vec::with_capacity(pending.len());
    for request in pending {
        out.push(match request {
            Ok(promise) => JsFuture::from(promise).await.map(|buffer| Uint8Array::new(&buffer).to_vec()),
            Err(e) => Err(e),
        });
    }
    out
}

/// The data key as a WebCrypto AES-GCM key for `usage`, not extractable; its copy in the JS
/// heap is wiped as soon as it is imported.
async fn import_aes_key(subtle: &web_sys::SubtleCrypto, key: &SecretKey, usage: &str) -> Option<web_sys::CryptoKey> {
    let raw = Uint8Array::from(&key.expose()[..]);
    let usages = js_sys::Array::of1(&usage.into());
    let imported = subtle.import_key_with_str("raw", &raw, "AES-GCM", false, &usages);
    raw.fill(0, 0, raw.length());
    Some(JsFuture::from(imported.ok()?).await.ok()?.unchecked_into())
}

/// AES-GCM parameters (copied by WebCrypto when called, so views of wasm memory are safe).
fn aes_gcm_params(nonce: &[u8], aad: &[u8]) -> web_sys::AesGcmParams {
    let params = web_sys::AesGcmParams::new_with_u8_array("AES-GCM", &Uint8Array::from(nonce));
    params.set_additional_data_u8_array(&Uint8Array::from(aad));
    params.set_tag_length(128);
    params
}

/// HTTP through `fetch` (gloo-net), with a timeout so a hanging network counts as unreachable.
#[derive(Debug, Clone, Copy)]
pub struct FetchHttp {
    /// Milliseconds before a request is aborted.
    pub timeout_ms: u32,
}

impl Default for FetchHttp {
    fn default() -> Self {
        Self { timeout_ms: tracker_offline_core::fetch_plan::LIBRARY_REQUEST_TIMEOUT_MS }
    }
}

impl HttpClient for FetchHttp {
    async fn send(&self, request: HttpRequest) -> Result<HttpResponse> {
        let method = match request.method.as_str() {
            "GET" => Method::GET,
            "POST" => Method::POST,
            "PUT" => Method::PUT,
            "DELETE" => Method::DELETE,
            "PATCH" => Method::PATCH,
            other => return Err(CoreError::BadInput(format!("unsupported HTTP method {other}"))),
        };
        let signal = web_sys::AbortSignal::timeout_with_u32(self.timeout_ms);
        let mut builder = RequestBuilder::new(&request.url)
            .method(method)
            .credentials(if request.opens_session {
                web_sys::RequestCredentials::SameOrigin
            } else {
                web_sys::RequestCredentials::Omit
            })
            .abort_signal(Some(&signal));
        for (name, value) in &request.headers {
            builder = builder.header(name, value);
        }
        let built = match request.body.as_deref() {
            Some(body) => builder.body(Uint8Array::from(body)),
            None => builder.build(),
        }
        .map_err(|e| CoreError::BadInput(format!("request: {e}")))?;
        let response = built.send().await.map_err(|e| CoreError::ServerUnreachable(e.to_string()))?;
        let status = response.status();
        let headers = response.headers().entries().map(|(k, v)| (k.to_ascii_lowercase(), v)).collect();
        let body = response.binary().await.map_err(|e| CoreError::ServerUnreachable(e.to_string()))?;
        Ok(HttpResponse { status, headers, body })
    }
}
