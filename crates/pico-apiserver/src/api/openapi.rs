//! The OpenAPI 3.1 document, derived from the wire types and route annotations.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "pico sandbox session API",
        description = "Create throw-away Linux sandboxes and reach their SSH server through an \
            HTTP CONNECT tunnel on the same port: `CONNECT /v1/sessions/{id}/tunnel HTTP/1.1` \
            (also `/v1/sessions/{id}`, `/sessions/{id}` and the authority form `{id}:22`) with \
            the bearer token in `Authorization` or `Proxy-Authorization`; the answer is \
            `HTTP/1.1 200 Connection Established` followed by the SSH byte stream, or an error \
            with the JSON error body.",
        license(name = "Apache-2.0")
    ),
    paths(
        super::health::health,
        super::health::readyz,
        super::health::metrics,
        super::sessions::create,
        super::sessions::list,
        super::sessions::get,
        super::sessions::extend,
        super::sessions::delete,
        super::pause::pause,
        super::pause::resume,
        super::images::list,
        super::exec::commands,
        super::exec::code,
        super::files::upload,
        super::files::download,
        super::files::delete,
        super::processes::list,
        super::processes::one,
        super::processes::output,
        super::processes::stdin,
        super::processes::signal,
    ),
    modifiers(&BearerAuth),
    tags((name = "sessions", description = "Sandbox sessions"), (name = "health", description = "Probes and metrics"),
        (name = "exec", description = "Commands and code run inside a session's sandbox"),
        (name = "files", description = "Files inside a session's sandbox"),
        (name = "processes", description = "Background processes inside a session's sandbox"))
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

pub async fn serve() -> Json<utoipa::openapi::OpenApi> {
    Json(document())
}
