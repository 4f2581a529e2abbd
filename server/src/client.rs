//! Who is asking: the client's address (for the login rate limit and the
//! audit log) and the user their session token stands for.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header::{AUTHORIZATION, COOKIE};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use libdiycloud::model::user::{Role, User};

use crate::error::ApiError;
use crate::AppState;

/// The session cookie's name where the client came over HTTPS (through a
/// trusted proxy that says so). With the `__Host-` prefix a browser takes
/// the cookie only from a secure origin, with `Secure`, `Path=/` and no
/// `Domain`: a sibling domain or a page over plain HTTP cannot plant or
/// overwrite it (a planted session would be login CSRF).
pub const HOST_COOKIE_NAME: &str = "__Host-diycloud_session";

/// The session cookie's name over plain HTTP (the server asked directly on
/// loopback, or a proxy without TLS), where a browser drops a `Secure`,
/// `__Host-` cookie.
pub const COOKIE_NAME: &str = "diycloud_session";

/// The session cookie's name for a client on `https` or not.
pub fn cookie_name(https: bool) -> &'static str {
    if https {
        HOST_COOKIE_NAME
    } else {
        COOKIE_NAME
    }
}

/// The client: the peer, or, where the peer is a trusted proxy (or a local
/// process on the unix socket), the last address the proxy added to
/// `X-Forwarded-For`. `https` where that proxy says the client used TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client {
    pub ip: IpAddr,
    pub https: bool,
}

impl FromRequestParts<Arc<AppState>> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip());
        Ok(client(
            peer,
            &parts.headers,
            &state.config.api.trusted_proxies,
        ))
    }
}

/// The client behind `peer` (`None`: the unix socket, where only local
/// processes with the socket's permission connect).
pub fn client(peer: Option<IpAddr>, headers: &HeaderMap, trusted: &[IpAddr]) -> Client {
    let proxied = peer.is_none_or(|ip| trusted.contains(&ip));
    let local = IpAddr::from([127, 0, 0, 1]);
    if !proxied {
        return Client {
            ip: peer.unwrap_or(local),
            https: false,
        };
    }
    // The proxy appends the address it saw: the last entry is the one it
    // vouches for (earlier ones are whatever the client sent).
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .last()
        .and_then(|ip| ip.trim().parse::<IpAddr>().ok());
    let https = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|p| p.eq_ignore_ascii_case("https"));
    Client {
        ip: forwarded.or(peer).unwrap_or(local),
        https,
    }
}

/// Whether the request came straight from a process on this node: over
/// the unix socket, or from a loopback address with no proxy's
/// `X-Forwarded-For` (a request through the nginx in front carries one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirectLocal(pub bool);

impl<S: Sync> FromRequestParts<S> for DirectLocal {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip());
        Ok(DirectLocal(
            peer.is_none_or(|ip| ip.is_loopback())
                && !parts.headers.contains_key("x-forwarded-for"),
        ))
    }
}

/// The bearer token of a request: `Authorization: Bearer TOKEN`, else the
/// session cookie of its name over `https` or not (over HTTPS only the
/// `__Host-` cookie counts).
pub fn token(headers: &HeaderMap, https: bool) -> Option<String> {
    let wanted = cookie_name(https);
    if let Some(value) = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let (scheme, token) = value.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim().to_owned());
    }
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == wanted).then(|| value.to_owned())
        })
}

/// The user a request's session stands for; 401 without one.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: User,
    pub token: String,
}

impl Caller {
    pub fn is_admin(&self) -> bool {
        self.user.role == Role::Admin
    }

    /// 403 unless an admin.
    pub fn admin(&self) -> Result<(), ApiError> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(ApiError::forbidden())
        }
    }

    /// For the audit log: `api:NAME`.
    pub fn actor(&self) -> String {
        format!("api:{}", self.user.username)
    }
}

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let https = match Client::from_request_parts(parts, state).await {
            Ok(client) => client.https,
            Err(never) => match never {},
        };
        let token = token(&parts.headers, https).ok_or_else(ApiError::unauthorized)?;
        let state = Arc::clone(state);
        let looked_up = token.clone();
        let user = crate::work::blocking(move || {
            let store = state.store()?;
            Ok(libdiycloud::usecases::auth::session_user(
                &store,
                &state.config.lockout,
                &looked_up,
                state.now(),
            )?)
        })
        .await?;
        user.map(|user| Caller { user, token })
            .ok_or_else(ApiError::unauthorized)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn forwarded_addresses_count_only_from_trusted_proxies() {
        let proxy = IpAddr::from([127, 0, 0, 1]);
        let stranger = IpAddr::from([192, 0, 2, 7]);
        let h = headers(&[
            ("x-forwarded-for", "203.0.113.9, 198.51.100.4"),
            ("x-forwarded-proto", "https"),
        ]);
        let via_proxy = client(Some(proxy), &h, &[proxy]);
        assert_eq!(
            via_proxy.ip,
            IpAddr::from([198, 51, 100, 4]),
            "the proxy's entry"
        );
        assert!(via_proxy.https);
        let direct = client(Some(stranger), &h, &[proxy]);
        assert_eq!(direct.ip, stranger, "a client cannot name itself");
        assert!(!direct.https);
        let garbage = headers(&[("x-forwarded-for", "not an address")]);
        assert_eq!(client(Some(proxy), &garbage, &[proxy]).ip, proxy);
        assert_eq!(
            client(None, &HeaderMap::new(), &[]).ip,
            proxy,
            "unix socket"
        );
    }

    #[test]
    fn tokens_from_the_header_or_the_cookie() {
        for https in [false, true] {
            assert_eq!(
                token(&headers(&[("authorization", "Bearer abc")]), https).as_deref(),
                Some("abc")
            );
            assert_eq!(
                token(&headers(&[("authorization", "Basic abc")]), https),
                None
            );
            assert_eq!(token(&HeaderMap::new(), https), None);
        }
        let jar = headers(&[("cookie", "a=1; diycloud_session=xyz; b=2")]);
        assert_eq!(token(&jar, false).as_deref(), Some("xyz"));
        assert_eq!(
            token(&jar, true),
            None,
            "over HTTPS only the __Host- cookie"
        );
        let jar = headers(&[(
            "cookie",
            "diycloud_session=planted; __Host-diycloud_session=own",
        )]);
        assert_eq!(token(&jar, true).as_deref(), Some("own"));
        assert_eq!(token(&jar, false).as_deref(), Some("planted"));
        assert_eq!(
            token(&headers(&[("cookie", "diycloud_sessionx=1")]), false),
            None
        );
    }
}
