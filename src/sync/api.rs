//! The HTTP routes the agent uses (PROTOCOL.md, "HTTP API" and "Workspace
//! files"): tree changes go over HTTP, text over the socket.

use std::time::Duration;

use serde_json::{Value, json};

use crate::model::File;

/// A refusal from the server, with its error code, or a transport failure.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{code}: {message}")]
    Refused {
        status: u16,
        code: String,
        message: String,
    },
    #[error("cannot reach the server: {0}")]
    Unreachable(#[from] reqwest::Error),
}

impl ApiError {
    pub fn code(&self) -> Option<&str> {
        match self {
            ApiError::Refused { code, .. } => Some(code),
            ApiError::Unreachable(_) => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
    /// Sent as `X-Socket-Id`, so the file events of our own changes can be told apart.
    pub socket_id: Option<String>,
}

impl Api {
    pub fn new(base: &str, token: Option<&str>) -> Api {
        Api {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("http client"),
            base: base.trim_end_matches('/').to_owned(),
            token: token.map(str::to_owned),
            socket_id: None,
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, ApiError> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(sid) = &self.socket_id {
            req = req.header("X-Socket-Id", sid);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if (200..300).contains(&status) {
            return Ok(value);
        }
        let err = &value["error"];
        Err(ApiError::Refused {
            status,
            code: err["code"].as_str().unwrap_or("HTTP_ERROR").to_owned(),
            message: err["message"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| format!("HTTP {status}: {}", text.trim())),
        })
    }

    /// `POST /api/sessions`: a new session owned by the caller; its id.
    pub async fn create_session(
        &self,
        title: &str,
        main_path: Option<&str>,
    ) -> Result<String, ApiError> {
        let mut body = json!({ "title": title });
        if let Some(p) = main_path {
            body["mainPath"] = json!(p);
            body["language"] = json!(crate::model::language_for_path(p));
        }
        let v = self
            .call(reqwest::Method::POST, "/api/sessions", Some(body))
            .await?;
        Ok(v["id"].as_str().unwrap_or_default().to_owned())
    }

    /// `POST …/files` with the initial content.
    pub async fn create_file(
        &self,
        session: &str,
        path: &str,
        content: &str,
    ) -> Result<File, ApiError> {
        let v = self
            .call(
                reqwest::Method::POST,
                &format!("/api/sessions/{session}/files"),
                Some(json!({ "path": path, "content": content })),
            )
            .await?;
        parse_file(v)
    }

    /// `PATCH …/files/{id}` with a new path (rename or move).
    pub async fn move_file(&self, session: &str, id: &str, path: &str) -> Result<File, ApiError> {
        let v = self
            .call(
                reqwest::Method::PATCH,
                &format!("/api/sessions/{session}/files/{id}"),
                Some(json!({ "path": path })),
            )
            .await?;
        parse_file(v)
    }

    /// `DELETE …/files/{id}`.
    pub async fn delete_file(&self, session: &str, id: &str) -> Result<(), ApiError> {
        self.call(
            reqwest::Method::DELETE,
            &format!("/api/sessions/{session}/files/{id}"),
            None,
        )
        .await
        .map(drop)
    }
}

fn parse_file(v: Value) -> Result<File, ApiError> {
    serde_json::from_value(v).map_err(|e| ApiError::Refused {
        status: 200,
        code: "INVALID_RESPONSE".into(),
        message: format!("unexpected file in the reply: {e}"),
    })
}
