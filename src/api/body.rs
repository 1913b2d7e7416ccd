//! Reading and validating request input: bodies of at most 64 KiB that must be a JSON object
//! sent as `application/json` and arrive within [`BODY_TIMEOUT`]; query strings with known
//! keys only. Every bad field is collected and named at once (422), unknown fields included.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::Request;
use axum::http::{header, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Map, Value};

use super::error::{ApiError, FieldError};

/// Largest accepted body.
pub const MAX_BODY: usize = 64 * 1024;
/// A body must arrive within this (a slow client cannot hold a connection open with one).
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// The JSON object of a request body (`{}` when the body is empty).
pub async fn json_object(req: Request) -> Result<Fields, ApiError> {
    let (parts, body) = req.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return Err(too_large());
    }
    let json_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .map(|t| t == "application/json" || t == "application/merge-patch+json");
    let limited = http_body_util::Limited::new(body, MAX_BODY);
    let bytes = match tokio::time::timeout(BODY_TIMEOUT, limited.collect()).await {
        Err(_) => {
            return Err(ApiError::bad_request(format!(
                "the request body did not arrive within {} s",
                BODY_TIMEOUT.as_secs()
            )))
        }
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => return Err(too_large()),
        Ok(Err(_)) => return Err(ApiError::bad_request("the request body could not be read")),
        Ok(Ok(c)) => c.to_bytes(),
    };
    if bytes.is_empty() {
        return Ok(Fields::new(Map::new()));
    }
    if json_type != Some(true) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "the request body must be sent as Content-Type: application/json (or application/merge-patch+json)",
        ));
    }
    let v: Value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))?;
    match v {
        Value::Object(m) => Ok(Fields::new(m)),
        _ => Err(ApiError::field("body", "must be a JSON object")),
    }
}

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        format!("the request body is larger than {} KiB", MAX_BODY / 1024),
    )
}

/// The query string's parameters; unknown or repeated keys are refused.
pub fn query(raw: Option<&str>, allowed: &[&str]) -> Result<BTreeMap<String, String>, ApiError> {
    let mut out = BTreeMap::new();
    let mut errors = Vec::new();
    for (k, v) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        let field = format!("query.{k}");
        if !allowed.contains(&k.as_ref()) {
            errors.push(FieldError {
                field,
                reason: if allowed.is_empty() {
                    "this resource takes no query parameters".into()
                } else {
                    format!("unknown parameter: expected {}", allowed.join(", "))
                },
            });
        } else if out.insert(k.to_string(), v.to_string()).is_some() {
            errors.push(FieldError {
                field,
                reason: "given more than once".into(),
            });
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(ApiError::invalid(errors))
    }
}

/// A query flag: absent, `true` or `false`.
pub fn flag(q: &BTreeMap<String, String>, key: &str) -> Result<bool, ApiError> {
    match q.get(key).map(String::as_str) {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(_) => Err(ApiError::field(
            format!("query.{key}"),
            "expected true or false",
        )),
    }
}

/// A JSON object whose fields are taken one by one; whatever is left is unknown.
#[derive(Debug)]
pub struct Fields {
    map: Map<String, Value>,
    errors: Vec<FieldError>,
}

impl Fields {
    pub fn new(map: Map<String, Value>) -> Self {
        Fields {
            map,
            errors: vec![],
        }
    }

    /// The whole object, unvalidated (a merge patch is validated by its own rules).
    pub fn into_value(self) -> Value {
        Value::Object(self.map)
    }

    /// Record a bad field.
    pub fn error(&mut self, field: &str, reason: impl Into<String>) {
        self.errors.push(FieldError {
            field: field.to_string(),
            reason: reason.into(),
        });
    }

    /// A string field (`null` or absent: `None`).
    pub fn string(&mut self, key: &str) -> Option<String> {
        match self.map.remove(key) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s),
            Some(_) => {
                self.error(key, "expected a string");
                None
            }
        }
    }

    /// An array of strings (`null` or absent: empty).
    pub fn strings(&mut self, key: &str) -> Vec<String> {
        match self.map.remove(key) {
            None | Some(Value::Null) => vec![],
            Some(Value::Array(a)) if a.iter().all(Value::is_string) => a
                .into_iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            Some(_) => {
                self.error(key, "expected an array of strings");
                vec![]
            }
        }
    }

    /// A boolean field.
    pub fn bool(&mut self, key: &str) -> Option<bool> {
        match self.map.remove(key) {
            None | Some(Value::Null) => None,
            Some(Value::Bool(b)) => Some(b),
            Some(_) => {
                self.error(key, "expected true or false");
                None
            }
        }
    }

    /// A non-negative integer field at most `max`.
    pub fn uint(&mut self, key: &str, max: u64) -> Option<u64> {
        match self.map.remove(key) {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) if n.as_u64().is_some_and(|n| n <= max) => n.as_u64(),
            Some(_) => {
                self.error(key, format!("expected a whole number from 0 to {max}"));
                None
            }
        }
    }

    /// A string field parsed with `FromStr` (its error is the reason).
    pub fn parsed<T: std::str::FromStr<Err = String>>(&mut self, key: &str) -> Option<T> {
        let s = self.string(key)?;
        match s.parse() {
            Ok(v) => Some(v),
            Err(m) => {
                self.error(key, m);
                None
            }
        }
    }

    /// Done: every unknown field and every bad one named (422), or nothing wrong.
    pub fn finish(mut self) -> Result<(), ApiError> {
        let unknown: Vec<String> = self.map.keys().cloned().collect();
        for k in unknown {
            self.error(&k, "unknown field");
        }
        if self.errors.is_empty() {
            Ok(())
        } else {
            self.errors.sort_by(|a, b| a.field.cmp(&b.field));
            Err(ApiError::invalid(self.errors))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bad_field_is_named_at_once() {
        let v = serde_json::json!({"source": 3, "type": "full", "verify": "deep", "extra": 1});
        let Value::Object(m) = v else { unreachable!() };
        let mut f = Fields::new(m);
        assert_eq!(f.string("source"), None);
        assert_eq!(f.string("type").as_deref(), Some("full"));
        let _ = f.parsed::<crate::model::Level>("verify");
        let e = f.finish().unwrap_err();
        assert_eq!(e.status, 422);
        let names: Vec<&str> = e.fields.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(names, ["extra", "source", "verify"]);
    }

    #[test]
    fn query_refuses_unknown_and_repeated_keys() {
        assert!(query(Some("source=a"), &["source"]).is_ok());
        let e = query(Some("source=a&source=b&x=1"), &["source"]).unwrap_err();
        assert_eq!(e.fields.len(), 2);
    }
}
