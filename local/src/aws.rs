//! AWS's wire shapes, shared by the gateway's Management API and the stand-in: request ids,
//! restJson1 error responses (what the SDK maps to its modelled errors) and timestamps.

use std::time::SystemTime;

use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// The header the SDK reads the error type from (restJson1).
const ERROR_TYPE_HEADER: HeaderName = HeaderName::from_static("x-amzn-errortype");

/// The header the SDK reads the request id from.
const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-amzn-requestid");

/// A random id of AWS's request-id shape (`8-4-4-4-12` hex digits, version 4).
#[must_use]
pub fn request_id() -> String {
    let hex = |n: usize| -> String {
        (0..n)
            .map(|_| char::from_digit(fastrand::u32(0..16), 16).unwrap_or('0'))
            .collect()
    };
    format!("{}-{}-4{}-{}-{}", hex(8), hex(4), hex(3), hex(4), hex(12))
}

/// RFC 3339 in UTC with milliseconds, e.g. `2024-05-01T12:00:00.000Z` (what the SDK parses as a
/// `date-time` timestamp).
#[must_use]
pub fn format_timestamp(at: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(at).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The error type AWS names for a Management API status, as the SDK matches it.
#[must_use]
pub fn error_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        403 => "ForbiddenException",
        404 => "NotFoundException",
        410 => "GoneException",
        413 => "PayloadTooLargeException",
        429 => "LimitExceededException",
        503 => "ServiceUnavailableException",
        500..=599 => "InternalServerError",
        _ => "BadRequestException",
    }
}

/// An error response in AWS's restJson1 shape: the status, `x-amzn-errortype`,
/// `x-amzn-requestid` and a `{"message": "..."}` body.
#[must_use]
pub fn error(status: StatusCode, message: &str, request_id: &str) -> Response {
    let mut response = (
        status,
        axum::Json(serde_json::json!({ "message": message })),
    )
        .into_response();
    response.headers_mut().insert(
        ERROR_TYPE_HEADER,
        HeaderValue::from_static(error_type(status)),
    );
    with_request_id(response, request_id)
}

/// A success response with an optional JSON body, `x-amzn-requestid` and a JSON content type
/// (also on an empty body, as AWS sends it).
#[must_use]
pub fn ok(status: StatusCode, body: Option<serde_json::Value>, request_id: &str) -> Response {
    let response = match body {
        Some(json) => (status, axum::Json(json)).into_response(),
        None => status.into_response(),
    };
    with_request_id(response, request_id)
}

fn with_request_id(mut response: Response, request_id: &str) -> Response {
    if let Ok(value) = HeaderValue::from_str(request_id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    if !response.headers().contains_key(header::CONTENT_TYPE) {
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn timestamps_are_rfc3339_utc_with_milliseconds() {
        let at = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(format_timestamp(at), "2023-11-14T22:13:20.123Z");
        assert_eq!(format_timestamp(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let leap_day = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(format_timestamp(leap_day), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn request_ids_have_the_aws_shape() {
        let id = request_id();
        let groups: Vec<usize> = id.split('-').map(str::len).collect();
        assert_eq!(groups, vec![8, 4, 4, 4, 12]);
        assert!(id.split('-').nth(2).is_some_and(|g| g.starts_with('4')));
    }
}
