//! What the REST executors (Cloud Run's Admin API, Azure Resource Manager)
//! share: reading a JSON answer, with the error's text and whether another
//! try may succeed decided in one place.

use reqwest::{RequestBuilder, StatusCode};
use serde_json::Value;

/// A call that did not give a JSON answer.
pub(crate) struct Failure {
    /// The HTTP status, when the API answered.
    pub status: Option<StatusCode>,
    pub detail: String,
    /// Throttling, server and connection errors; any other answer (403,
    /// 404, a bad request, a body that is not JSON) is permanent.
    pub transient: bool,
}

/// Sends `request` and reads its answer as JSON (`null` when empty);
/// `error_text` turns an error answer's body into its message.
pub(crate) async fn json_response(
    request: RequestBuilder,
    error_text: fn(StatusCode, &str) -> String,
) -> Result<Value, Failure> {
    let response = request.send().await.map_err(|e| Failure {
        status: None,
        detail: error_chain(&e),
        // Anything that kept the request from getting an answer (refused,
        // reset, timed out) is worth another try.
        transient: !e.is_builder(),
    })?;
    let status = response.status();
    let text = response.text().await.map_err(|e| Failure {
        status: Some(status),
        detail: format!("cannot read the response: {}", error_chain(&e)),
        transient: true,
    })?;
    if !status.is_success() {
        return Err(Failure {
            status: Some(status),
            detail: error_text(status, &text),
            transient: status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error(),
        });
    }
    if text.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(&text).map_err(|e| Failure {
        status: Some(status),
        detail: format!("the response is not JSON ({e}): {}", truncate(&text)),
        transient: false,
    })
}

/// The first 500 characters of `s`, with `…` when cut.
pub(crate) fn truncate(s: &str) -> String {
    const MAX: usize = 500;
    match s.char_indices().nth(MAX) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_owned(),
    }
}

/// An error and its sources, `outer: inner: innermost`.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}
