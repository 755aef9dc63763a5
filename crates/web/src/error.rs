//! Errors at the JS boundary: a core error becomes a JS `Error` with a stable `code` (and
//! `retryAfterMs` for lockouts); browser failures (DOMException, fetch) become core errors.

use tracker_offline_core::CoreError;
use wasm_bindgen::{JsCast, JsValue};

/// Builds the JS `Error` for a core error: `message`, `name = "TrackerOfflineError"`, `code`
/// and, for a lockout, `retryAfterMs`.
pub fn to_js_error(error: &CoreError) -> JsValue {
    let js = js_sys::Error::new(&error.to_string());
    js.set_name("TrackerOfflineError");
    let _ = js_sys::Reflect::set(&js, &"code".into(), &error.code().into());
    if let Some(ms) = error.retry_after_ms() {
        let _ = js_sys::Reflect::set(&js, &"retryAfterMs".into(), &JsValue::from_f64(ms as f64));
    }
    js.into()
}

/// Maps a thrown JS value (DOMException, TypeError, ...) to a core storage error; a quota
/// failure becomes [`CoreError::StorageFull`].
pub fn storage_error(value: &JsValue) -> CoreError {
    let (name, message) = js_error_parts(value);
    if name == "QuotaExceededError" {
        CoreError::StorageFull
    } else {
        CoreError::Storage(format!("{name}: {message}"))
    }
}

/// `(name, message)` of a thrown JS value.
pub fn js_error_parts(value: &JsValue) -> (String, String) {
    if let Some(e) = value.dyn_ref::<web_sys::DomException>() {
        return (e.name(), e.message());
    }
    if let Some(e) = value.dyn_ref::<js_sys::Error>() {
        return (String::from(e.name()), String::from(e.message()));
    }
    ("Error".into(), value.as_string().unwrap_or_else(|| format!("{value:?}")))
}

/// Maps an indexed_db_futures error to a core error (quota exhaustion included).
pub fn idb_error(error: indexed_db_futures::error::Error) -> CoreError {
    use indexed_db_futures::error::{DomException, Error};
    match error {
        Error::DomException(DomException::Other(dom)) if dom.name() == "QuotaExceededError" => CoreError::StorageFull,
        other => {
            let text = other.to_string();
            if text.contains("QuotaExceeded") {
                CoreError::StorageFull
            } else {
                CoreError::Storage(text)
            }
        }
    }
}
