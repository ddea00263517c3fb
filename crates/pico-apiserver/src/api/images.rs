//! `GET /v1/images`: the local runtime's image cache (empty on Kubernetes, whose nodes keep
//! their own).

use axum::Json;
use axum::extract::State;
use pico_wire::{ErrorBody, ImageList};

use super::AppState;
use crate::auth::Caller;
use crate::error::ApiError;

#[utoipa::path(get, path = "/v1/images", tag = "sessions",
    responses(
        (status = 200, description = "Cached images with their sizes and the sessions using them", body = ImageList),
        (status = 401, description = "UNAUTHORIZED", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    _caller: Caller,
) -> Result<Json<ImageList>, ApiError> {
    let images = state.service.runtime().images().await?;
    Ok(Json(ImageList { images }))
}
