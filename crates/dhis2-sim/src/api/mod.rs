//! The `/api` routes, and helpers every endpoint shares (query parameters, `fields`, 404).
//!
//! Each endpoint family lives in its own module and contributes a `routes()` router; new
//! families (tracker, dataStore, …) are added in [`protected_routes`] or [`public_routes`].

pub mod apps;
pub mod datastore;
pub mod legacy;
pub mod me;
pub mod metadata;
pub mod settings;
pub mod sharing;
pub mod system;
pub mod tracker;

use axum::{
    extract::{FromRequestParts, OriginalUri, Query, Request},
    http::{request::Parts, StatusCode},
    response::{IntoResponse, Response},
    Router,
};
use serde_json::Value;

use crate::{
    error::{json_response, ApiError},
    fields::{FieldFilter, FilterOptions},
    state::AppState,
};

/// Routes under `/api` that need no authentication.
pub fn public_routes() -> Router<AppState> {
    system::public_routes()
}

/// Routes under `/api` that need an authenticated user (the caller adds the auth layer).
pub fn protected_routes() -> Router<AppState> {
    Router::new()
        .merge(me::routes())
        .merge(system::routes())
        .merge(metadata::routes())
        .merge(legacy::routes())
        .merge(datastore::routes())
        .merge(sharing::routes())
        .merge(tracker::routes())
        .merge(settings::routes())
        .merge(apps::routes())
}

/// All query parameters of a request, in order (repeated names kept).
#[derive(Debug, Clone, Default)]
pub struct Params(pub Vec<(String, String)>);

impl Params {
    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// All values of `name`.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0.iter().filter(move |(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The `fields` filter, when one is given.
    pub fn fields(&self) -> Option<FieldFilter> {
        FieldFilter::from_query(self.all("fields"))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
            .map(|q| Params(q.0))
            .map_err(|e| ApiError::BadRequest(e.body_text()))
    }
}

/// A 200 JSON response of `full`, filtered by the request's `fields` (or `default_fields`).
pub fn filtered_json(full: &Value, params: &Params, default_fields: &str, opts: &FilterOptions<'_>) -> Response {
    let filter = params.fields().unwrap_or_else(|| FieldFilter::parse(default_fields));
    json_response(StatusCode::OK, &filter.apply(full, opts))
}

/// Fallback for unknown paths: 404 WebMessage.
pub async fn not_found(req: Request) -> ApiError {
    // Inside `nest("/api")` the URI is stripped of its prefix; report the one asked for.
    let path = req.extensions().get::<OriginalUri>().map_or_else(|| req.uri().path(), |o| o.0.path());
    ApiError::NotFound(format!("No handler found for {} {path}", req.method()))
}

/// Fallback for known paths with an unsupported method: 405 WebMessage.
pub async fn method_not_allowed(req: Request) -> Response {
    ApiError::MethodNotAllowed(format!("Request method '{}' is not supported", req.method())).into_response()
}
