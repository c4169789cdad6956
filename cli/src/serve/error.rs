//! Errors of the HTTP API, in OpenAI's shape: a status code and the body
//! `{"error": {"message", "type", "param", "code"}}`, which OpenAI's client libraries turn into
//! their typed exceptions (`BadRequestError`, `AuthenticationError`, `NotFoundError`, ...).
//!
//! Every failure of a request ends here and nowhere else: the server answers it and goes on
//! serving.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use lamina::Error;

/// One failed request: what the client is told.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// OpenAI's error class: `invalid_request_error`, `authentication_error`, `server_error`, ...
    pub kind: &'static str,
    /// The request field at fault, when one is.
    pub param: Option<String>,
    /// A stable machine-readable code, when there is one (`model_not_found`, ...).
    pub code: Option<&'static str>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, message: message.into(), kind, param: None, code: None }
    }

    /// 400: the request is malformed or asks for something this server does not do.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    /// 400 naming the field at fault.
    pub fn invalid_param(param: impl Into<String>, message: impl Into<String>) -> Self {
        Self::bad_request(message).with_param(param)
    }

    /// 404 for a `model` this server does not serve.
    pub fn unknown_model(name: &str, served: &[String]) -> Self {
        let message = format!("the model `{name}` does not exist here; this server serves: {}", served.join(", "));
        let mut e = Self::new(StatusCode::NOT_FOUND, "invalid_request_error", message).with_param("model");
        e.code = Some("model_not_found");
        e
    }

    /// 404 for a path that is not part of the API.
    pub fn unknown_route(method: &str, path: &str) -> Self {
        let mut e = Self::new(StatusCode::NOT_FOUND, "invalid_request_error", format!("no route {method} {path}"));
        e.code = Some("unknown_url");
        e
    }

    /// 405 for a known path with the wrong method.
    pub fn method_not_allowed(method: &str, path: &str) -> Self {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, "invalid_request_error", format!("{path} does not accept {method}"))
    }

    /// 401: the API key is missing or wrong.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::UNAUTHORIZED, "authentication_error", message);
        e.code = Some("invalid_api_key");
        e
    }

    /// 503: the server is shutting down, or its generation thread is gone.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "server_error", message)
    }

    /// 500: something failed that the request could not have caused.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", message)
    }

    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    /// A lamina error met while serving a request. Errors of the input (arguments, empty or
    /// too long prompts, a template that refuses the messages) are the client's: 400 with
    /// lamina's message. Anything else (a failed decode, a backend) is the server's: 500.
    pub fn from_lamina(e: &Error) -> Self {
        match e {
            Error::InvalidArgument { .. } | Error::InvalidUtf8 { .. } | Error::EmptyPrompt { .. } | Error::ChatTemplate(_) => {
                Self::bad_request(e.to_string())
            }
            Error::PromptTooLong { .. } => {
                let mut err = Self::bad_request(e.to_string());
                err.code = Some("context_length_exceeded");
                err
            }
            _ => Self::internal(e.to_string()),
        }
    }

    /// The JSON body (also sent as the last event of a stream that fails after it started).
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({
            "error": { "message": self.message, "type": self.kind, "param": self.param, "code": self.code }
        })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            eprintln!("lamina serve: {} {}", self.status.as_u16(), self.message);
        }
        (self.status, [(header::CONTENT_TYPE, "application/json")], self.body().to_string()).into_response()
    }
}
