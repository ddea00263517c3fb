//! The error responses that many routes share, written once for the OpenAPI document: each
//! type lists status codes with the `ErrorBody` they carry (`responses(…, SandboxErrors)`).

use std::collections::BTreeMap;

use utoipa::IntoResponses;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::{ContentBuilder, Ref, RefOr};

/// `status → description` entries, each answered with the JSON `ErrorBody`.
fn errors(list: &[(&str, &str)]) -> BTreeMap<String, RefOr<Response>> {
    list.iter()
        .map(|(status, description)| {
            let body = ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build();
            let response = ResponseBuilder::new()
                .description(*description)
                .content("application/json", body)
                .build();
            ((*status).to_owned(), RefOr::T(response))
        })
        .collect()
}

const UNAUTHORIZED: (&str, &str) = ("401", "UNAUTHORIZED");
const NOT_FOUND: (&str, &str) = ("404", "SESSION_NOT_FOUND");

/// A route on one existing session: 401 and 404.
pub struct SessionErrors;

impl IntoResponses for SessionErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        errors(&[UNAUTHORIZED, NOT_FOUND])
    }
}

/// A JSON request body: too large, or not JSON.
pub struct BodyErrors;

impl IntoResponses for BodyErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        errors(&[
            ("413", "PAYLOAD_TOO_LARGE"),
            ("415", "UNSUPPORTED_MEDIA_TYPE"),
        ])
    }
}

/// A route that reaches into a session's running sandbox (exec, files): 401, 404, and the
/// sandbox being unreachable or not running.
pub struct SandboxErrors;

impl IntoResponses for SandboxErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        errors(&[
            UNAUTHORIZED,
            NOT_FOUND,
            ("502", "SANDBOX_UNREACHABLE"),
            ("503", "SESSION_NOT_READY"),
        ])
    }
}

/// The file routes: [`SandboxErrors`] with the file-specific 403, 404 and 400.
pub struct FileErrors;

impl IntoResponses for FileErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        let mut all = SandboxErrors::responses();
        all.extend(errors(&[
            ("400", "INVALID_PATH or INVALID_REQUEST"),
            ("403", "FORBIDDEN: the sandbox user may not do this"),
            ("404", "SESSION_NOT_FOUND or FILE_NOT_FOUND"),
        ]));
        all
    }
}
