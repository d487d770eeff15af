//! `POST /number-mapping`: the contact center's PhoneToUID / UIDToPhone
//! endpoint (`crate::mapping` has the rules and the answer codes).
//!
//! Basic authentication with `[mapping] username` and `password`, compared in
//! constant time (SHA-256 of both sides, so not even the length leaks); a
//! missing or wrong credential gets 401 with `WWW-Authenticate` and no hint
//! which half was wrong. With no password configured the endpoint answers
//! 404: it is off, never open.

use axum::{
    Json,
    body::Bytes,
    extract::{State, rejection::BytesRejection},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use base64::Engine as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::AppState;
use crate::{
    mapping::{self, Answer, Code, Mode, Pair, Rejection, Request},
    phone,
};

pub async fn number_mapping(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let settings = &state.settings.mapping;
    if settings.password.expose().is_empty() {
        return (
            StatusCode::NOT_FOUND,
            "the number-mapping endpoint is off: no [mapping] password is set\n",
        )
            .into_response();
    }
    if !authorized(&headers, &settings.username, settings.password.expose()) {
        let answer = Answer::error(Code::Unauthorized, "missing or wrong credentials");
        return (
            StatusCode::UNAUTHORIZED,
            [(
                header::WWW_AUTHENTICATE,
                r#"Basic realm="axn-worker number-mapping", charset="UTF-8""#,
            )],
            Json(answer),
        )
            .into_response();
    }
    let body = match body {
        Ok(b) => b,
        Err(e) => {
            let status = e.status();
            let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
                format!("the body is over {} bytes", settings.max_body_bytes)
            } else {
                format!("the body could not be read: {e}")
            };
            return (status, Json(Answer::error(Code::BatchSize, message))).into_response();
        }
    };
    match answer(&state, &body).await {
        Ok(results) => {
            tracing::info!(count = results.len(), "number mapping answered");
            Json(Answer::ok(results)).into_response()
        }
        Err(r) => {
            let status = match r.code {
                Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::BAD_REQUEST,
            };
            tracing::info!(code = r.code as i32, message = %r.message, "number mapping refused");
            (status, Json(Answer::error(r.code, r.message))).into_response()
        }
    }
}

async fn answer(state: &AppState, body: &[u8]) -> Result<Vec<Pair>, Rejection> {
    let request: Request = serde_json::from_slice(body).map_err(|e| Rejection {
        code: Code::BadRequest,
        message: format!(
            "the body must be {{\"Numbers\": [strings], \"Mode\": \"PhoneToUID\" | \"UIDToPhone\"}}: {}",
            phone::mask_digits_in(&e.to_string())
        ),
    })?;
    let unavailable = |e: redis::RedisError| {
        tracing::warn!(error = %e, "number mapping: Redis failed");
        Rejection {
            code: Code::Unavailable,
            message: "the mapping store is unavailable; retry".into(),
        }
    };
    match request.validate(state.settings.mapping.max_batch)? {
        Mode::PhoneToUid => {
            let normalized = mapping::normalize_all(&request.numbers)?;
            let ids = state
                .store
                .phone_to_uid(&normalized)
                .await
                .map_err(unavailable)?;
            Ok(request
                .numbers
                .into_iter()
                .zip(ids)
                .map(|(key, value)| Pair { key, value })
                .collect())
        }
        Mode::UidToPhone => {
            // Whitespace around an id is not part of it (the document's
            // patterns say so); the answer's Key stays as sent.
            let ids: Vec<String> = request
                .numbers
                .iter()
                .map(|n| n.trim().to_owned())
                .collect();
            mapping::check_ids(&ids)?;
            let numbers = state.store.uid_to_phone(&ids).await.map_err(unavailable)?;
            request
                .numbers
                .into_iter()
                .zip(numbers)
                .enumerate()
                .map(|(i, (key, number))| match number {
                    Some(n) => Ok(Pair {
                        key,
                        value: mapping::international(&n),
                    }),
                    None => Err(Rejection {
                        code: Code::UnknownId,
                        message: format!("Numbers[{i}] {key} is not a known id"),
                    }),
                })
                .collect()
        }
    }
}

/// Checks `Authorization: Basic ...` against the configured pair in constant
/// time. Both halves are always compared.
fn authorized(headers: &HeaderMap, username: &str, password: &str) -> bool {
    let Some((user, pass)) = basic_credentials(headers) else {
        return false;
    };
    let digest = |s: &str| Sha256::digest(s.as_bytes());
    let user_ok = digest(&user).ct_eq(&digest(username));
    let pass_ok = digest(&pass).ct_eq(&digest(password));
    (user_ok & pass_ok).into()
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, pass) = text.split_once(':')?;
    Some((user.to_owned(), pass.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with_auth(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn basic_auth_needs_both_halves() {
        let good = base64::engine::general_purpose::STANDARD.encode("tccc:s3cret");
        assert!(authorized(
            &with_auth(&format!("Basic {good}")),
            "tccc",
            "s3cret"
        ));
        assert!(authorized(
            &with_auth(&format!("basic {good}")),
            "tccc",
            "s3cret"
        ));
        for bad in ["tccc:wrong", "other:s3cret", "tccc", ":"] {
            let enc = base64::engine::general_purpose::STANDARD.encode(bad);
            assert!(
                !authorized(&with_auth(&format!("Basic {enc}")), "tccc", "s3cret"),
                "{bad}"
            );
        }
        assert!(!authorized(&with_auth("Bearer abc"), "tccc", "s3cret"));
        assert!(!authorized(&with_auth("Basic !!!"), "tccc", "s3cret"));
        assert!(!authorized(&HeaderMap::new(), "tccc", "s3cret"));
    }
}
