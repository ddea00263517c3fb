//! JSON request bodies with the API's own errors: 413 over 1 MiB, 415 for a non-JSON type,
//! 400 with serde's explanation for malformed JSON. An empty body is `None`.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use pico_wire::ErrorCode;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

pub struct OptionalJson<T>(pub Option<T>);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let content_type = request
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap_or("").to_ascii_lowercase());
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(
                        ErrorCode::PayloadTooLarge,
                        format!(
                            "request body is larger than {} bytes",
                            super::MAX_BODY_BYTES
                        ),
                    )
                } else if let Some(err) = crate::body_timeout::timeout_error(&rejection) {
                    err
                } else {
                    ApiError::invalid_request(format!("cannot read request body: {rejection}"))
                }
            })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(None));
        }
        if let Some(content_type) = content_type {
            let essence = content_type.split(';').next().unwrap_or("").trim();
            if essence != "application/json" && !essence.ends_with("+json") {
                return Err(ApiError::new(
                    ErrorCode::UnsupportedMediaType,
                    format!("Content-Type must be application/json, not {essence}"),
                ));
            }
        }
        let value: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::invalid_request(format!("malformed JSON body: {e}")))?;
        // `null` is an absent body, as the schema allows.
        if value.is_null() {
            return Ok(Self(None));
        }
        // serde would also read a struct from an array; the API takes objects only.
        if !value.is_object() {
            return Err(ApiError::invalid_request(
                "request body must be a JSON object",
            ));
        }
        T::deserialize(value)
            .map(|body| Self(Some(body)))
            .map_err(|e| {
                let message = e.to_string();
                let err = ApiError::invalid_request(format!("invalid request body: {message}"));
                match unknown_field(&message) {
                    Some(field) => err.with_details(serde_json::json!({ "field": field })),
                    None => err,
                }
            })
    }
}

/// The field serde names in "unknown field `tll`, expected one of …", so that clients get
/// the misspelled name as `details.field` as well as in the message.
fn unknown_field(message: &str) -> Option<&str> {
    message.strip_prefix("unknown field `")?.split('`').next()
}
