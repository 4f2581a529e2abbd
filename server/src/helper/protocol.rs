//! What the web process may ask the root helper: one request type per use
//! case, in a versioned envelope. There is no request that runs SQL or a
//! command, and none that says who the caller is: the envelope carries the
//! credential the web process received from its client, as it came, and
//! the helper decides whom it stands for.

use std::net::IpAddr;

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// The protocol's version; a peer speaking another is refused with both
/// numbers named.
pub const VERSION: u32 = 1;

/// One request and what comes with it.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    pub version: u32,
    /// The session token or bearer token the client presented, passed on
    /// unread; `None` where it presented none.
    #[serde(default)]
    pub token: Option<String>,
    /// The client's address as the web process saw it (the audit log and
    /// the lockout's records): a claim of the web process, never a
    /// credential.
    pub client: IpAddr,
    pub request: Request,
}

/// The front door a login came through (for the audit log).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Front {
    Api,
    Portal,
}

/// One request per use case. Variants without fields are written `{}`:
/// serde reads an internally tagged unit variant past any other field, and
/// nothing here may be ignored.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Whether the helper can open the database.
    Health {},
    /// The user the envelope's token stands for.
    Whoami {},
    /// A password login: a session opened, or the refusal.
    Login {
        front: Front,
        username: String,
        password: String,
    },
    /// The end of the token's session.
    Logout {},
    /// The token's user changes their own password.
    ChangeOwnPassword { current: String, new: String },
}

/// A use case's refusal or failure as the client is to hear it: the
/// helper decides the status and the words, the web process only relays
/// them (an internal error's cause stays in the helper's log).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Failure {
    pub status: u16,
    pub detail: String,
    /// Seconds, for 429 and 503.
    #[serde(default)]
    pub retry_after: Option<u64>,
}

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Self {
        Self {
            status: e.status.as_u16(),
            detail: e.detail,
            retry_after: e.retry_after,
        }
    }
}

impl From<Failure> for ApiError {
    /// A status that is not an error's (a broken helper) is an internal
    /// error, never passed on as it came.
    fn from(f: Failure) -> Self {
        match StatusCode::from_u16(f.status) {
            Ok(status) if status.is_client_error() || status.is_server_error() => ApiError {
                status,
                detail: f.detail,
                retry_after: f.retry_after,
            },
            _ => ApiError::internal(format!(
                "the helper answered a failure with status {}: {}",
                f.status, f.detail
            )),
        }
    }
}

/// Why the helper refused a message before any use case ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Refusal {
    #[error("the helper speaks protocol version {helper}, the request version {request}")]
    Version { helper: u32, request: u32 },
    #[error("not a request of this protocol: {detail}")]
    Malformed { detail: String },
}

/// Reads an envelope from a frame's bytes: the version first (so a peer of
/// another version hears that, not a complaint about a field), then the
/// whole, which refuses unknown request types and unknown fields.
pub fn decode(bytes: &[u8]) -> Result<Envelope, Refusal> {
    #[derive(Deserialize)]
    struct VersionOnly {
        version: u32,
    }
    let malformed = |e: serde_json::Error| Refusal::Malformed {
        detail: e.to_string(),
    };
    let VersionOnly { version } = serde_json::from_slice(bytes).map_err(malformed)?;
    if version != VERSION {
        return Err(Refusal::Version {
            helper: VERSION,
            request: version,
        });
    }
    serde_json::from_slice(bytes).map_err(malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(request: &str) -> String {
        format!(r#"{{"version":1,"token":"t","client":"192.0.2.7","request":{request}}}"#)
    }

    #[test]
    fn a_request_of_this_version_is_read() {
        let read = decode(envelope(r#"{"type":"whoami"}"#).as_bytes()).unwrap();
        assert!(matches!(read.request, Request::Whoami {}));
        assert_eq!(read.token.as_deref(), Some("t"));
        let login =
            envelope(r#"{"type":"login","front":"portal","username":"alice","password":"pw"}"#);
        assert!(matches!(
            decode(login.as_bytes()).unwrap().request,
            Request::Login {
                front: Front::Portal,
                ..
            }
        ));
    }

    #[test]
    fn another_version_is_named() {
        let other = r#"{"version":2,"client":"::1","request":{"type":"anything_new"}}"#;
        assert_eq!(
            decode(other.as_bytes()).unwrap_err(),
            Refusal::Version {
                helper: 1,
                request: 2
            }
        );
    }

    #[test]
    fn unknown_types_fields_and_garbage_are_refused() {
        for bad in [
            envelope(r#"{"type":"run_sql","sql":"DROP TABLE users"}"#),
            envelope(r#"{"type":"whoami","as_admin":true}"#),
            r#"{"version":1,"client":"::1","request":{"type":"health"},"user":"root"}"#.to_owned(),
            r#"{"version":1,"request":{"type":"health"}}"#.to_owned(),
            "not json".to_owned(),
            String::new(),
        ] {
            assert!(
                matches!(decode(bad.as_bytes()), Err(Refusal::Malformed { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn failures_keep_their_status_and_words_and_only_errors_pass() {
        let locked = ApiError::too_many(30);
        let back = ApiError::from(Failure::from(locked.clone()));
        assert_eq!(back, locked);
        for status in [200, 302, 99, 1000] {
            let odd = Failure {
                status,
                detail: "secret detail".into(),
                retry_after: None,
            };
            let answered = ApiError::from(odd);
            assert_eq!(
                answered.status,
                StatusCode::INTERNAL_SERVER_ERROR,
                "{status}"
            );
            assert!(!answered.detail.contains("secret"), "{status}");
        }
    }

    #[test]
    fn what_is_written_is_read_back() {
        let sent = Envelope {
            version: VERSION,
            token: None,
            client: IpAddr::from([127, 0, 0, 1]),
            request: Request::ChangeOwnPassword {
                current: "a".into(),
                new: "b".into(),
            },
        };
        let bytes = serde_json::to_vec(&sent).unwrap();
        assert!(matches!(
            decode(&bytes).unwrap().request,
            Request::ChangeOwnPassword { .. }
        ));
    }
}
