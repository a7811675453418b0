//! Request extractors with PROTOCOL.md errors: the bearer user, JSON and raw
//! bodies whose rejections become `INVALID_PAYLOAD` / `UPDATE_TOO_LARGE`.

use axum::extract::rejection::{BytesRejection, JsonRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::{ApiError, HttpState};
use crate::auth::User;
use crate::error::ErrorCode;

/// The caller, from `Authorization: Bearer <jwt>`.
pub struct AuthUser(pub User);

impl FromRequestParts<HttpState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &HttpState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| ApiError::new(ErrorCode::Unauthorized, "missing bearer token"))?;
        let token = header.strip_prefix("Bearer ").ok_or_else(|| {
            ApiError::new(
                ErrorCode::Unauthorized,
                "expected `Authorization: Bearer <token>`",
            )
        })?;
        st.app
            .auth
            .verify(token.trim())
            .map(AuthUser)
            .map_err(|_| ApiError::new(ErrorCode::Unauthorized, "invalid or expired token"))
    }
}

/// JSON body; malformed input is `INVALID_PAYLOAD`.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(JsonBody(v)),
            Err(e) => Err(json_rejection(e)),
        }
    }
}

/// Rejections name what is wrong in plain words; serde's own text (type
/// names, positions) is logged, never sent.
fn json_rejection(e: JsonRejection) -> ApiError {
    tracing::debug!(error = %e.body_text(), "JSON body refused");
    let message = match &e {
        _ if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return ApiError::new(ErrorCode::UpdateTooLarge, "request body too large");
        }
        JsonRejection::MissingJsonContentType(_) => "expected `Content-Type: application/json`",
        JsonRejection::JsonSyntaxError(_) => "the body is not valid JSON",
        JsonRejection::JsonDataError(_) => "the JSON body has missing, unknown or mistyped fields",
        _ => "the request body could not be read",
    };
    ApiError::new(ErrorCode::InvalidPayload, message)
}

/// A raw body (a Yjs update); above the body limit it is `UPDATE_TOO_LARGE`.
pub struct RawBody(pub bytes::Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match bytes::Bytes::from_request(req, state).await {
            Ok(b) => Ok(RawBody(b)),
            Err(e) => Err(bytes_rejection(e)),
        }
    }
}

fn bytes_rejection(e: BytesRejection) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(ErrorCode::UpdateTooLarge, "update exceeds the size limit")
    } else {
        tracing::debug!(error = %e.body_text(), "request body refused");
        ApiError::new(
            ErrorCode::InvalidPayload,
            "the request body could not be read",
        )
    }
}
