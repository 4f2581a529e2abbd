//! Cross-site request checks for every state-changing request a cookie
//! authenticates, and the portal's form token check.

use axum::http::{header, HeaderMap, HeaderValue, Method};

/// Why a request is cross-site, or `None` where it may go on (see
/// `router::same_site_only`).
pub(crate) fn cross_site(
    method: &Method,
    headers: &HeaderMap,
    uri: &axum::http::Uri,
) -> Option<String> {
    if matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    ) {
        return None;
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .is_some_and(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"));
    if bearer {
        return None;
    }
    let shown = |v: &HeaderValue| {
        let text = String::from_utf8_lossy(v.as_bytes());
        format!("{:?}", text.chars().take(100).collect::<String>())
    };
    if let Some(site) = headers.get("sec-fetch-site") {
        return match site.as_bytes() {
            b"same-origin" | b"none" => None,
            _ => Some(format!("Sec-Fetch-Site: {}", shown(site))),
        };
    }
    let origin = headers.get(header::ORIGIN)?;
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()));
    let same = origin
        .to_str()
        .ok()
        .and_then(origin_authority)
        .zip(host)
        .is_some_and(|((scheme, authority), host)| same_authority(scheme, &authority, host));
    if same {
        None
    } else {
        Some(format!("Origin: {}", shown(origin)))
    }
}

/// Whether a form carries the session's form token (`expected`, from
/// `auth::form_token`): compared in constant time, so a guess learns
/// nothing from how long the refusal took.
pub(crate) fn same_form_token(sent: &str, expected: &str) -> bool {
    bool::from(subtle::ConstantTimeEq::ct_eq(
        sent.as_bytes(),
        expected.as_bytes(),
    ))
}

/// An `Origin` header's scheme and `host[:port]`; `None` for `null` and
/// anything else that is not `scheme://authority`.
fn origin_authority(origin: &str) -> Option<(&str, String)> {
    let (scheme, authority) = origin.split_once("://")?;
    let valid = !authority.is_empty()
        && authority
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b));
    valid.then(|| (scheme, authority.to_ascii_lowercase()))
}

/// Whether `authority` (of an Origin of `scheme`) is `host` (a Host header),
/// the scheme's default port written or not.
fn same_authority(scheme: &str, authority: &str, host: &str) -> bool {
    let default = match scheme.to_ascii_lowercase().as_str() {
        "https" => ":443",
        "http" => ":80",
        _ => return false,
    };
    let bare = |a: &str| a.strip_suffix(default).unwrap_or(a).to_ascii_lowercase();
    bare(authority) == bare(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(method: Method, pairs: &[(&'static str, &str)]) -> Option<String> {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_str(value).unwrap());
        }
        cross_site(&method, &headers, &axum::http::Uri::from_static("/x"))
    }

    #[test]
    fn a_form_token_is_the_sessions_or_refused() {
        let expected = "ab".repeat(32);
        assert!(same_form_token(&expected, &expected));
        for sent in [
            "",
            "ab",
            &"ab".repeat(31),
            &format!("{expected}a"),
            &"ba".repeat(32),
        ] {
            assert!(!same_form_token(sent, &expected), "{sent}");
        }
    }

    #[test]
    fn an_origin_is_this_host_or_another_site() {
        let host = ("host", "portal.example.org");
        for origin in [
            "https://portal.example.org",
            "https://PORTAL.example.org",
            "https://portal.example.org:443",
            "http://portal.example.org",
        ] {
            assert_eq!(
                check(Method::POST, &[host, ("origin", origin)]),
                None,
                "{origin}"
            );
        }
        let with_port = ("host", "127.0.0.1:8480");
        assert_eq!(
            check(
                Method::POST,
                &[with_port, ("origin", "http://127.0.0.1:8480")]
            ),
            None
        );
        let v6 = ("host", "[::1]:8480");
        assert_eq!(
            check(Method::POST, &[v6, ("origin", "http://[::1]:8480")]),
            None
        );
        for origin in [
            "null",
            "https://evil.example",
            "https://portal.example.org.evil.example",
            "https://portal.example.org:8443",
            "http://127.0.0.1:8480",
            "file://",
            "https://portal.example.org/path",
            "https://user@portal.example.org",
        ] {
            let why = check(Method::DELETE, &[host, ("origin", origin)]);
            assert!(why.is_some_and(|w| w.starts_with("Origin")), "{origin}");
        }
        // No Host to compare with: refused.
        assert!(check(Method::POST, &[("origin", "https://portal.example.org")]).is_some());
    }

    #[test]
    fn fetch_metadata_decides_where_a_browser_sends_it() {
        let host = ("host", "portal.example.org");
        for site in ["same-origin", "none"] {
            assert_eq!(check(Method::POST, &[host, ("sec-fetch-site", site)]), None);
        }
        for site in ["same-site", "cross-site", "bogus"] {
            // Even beside an Origin of this host.
            let why = check(
                Method::PATCH,
                &[
                    host,
                    ("sec-fetch-site", site),
                    ("origin", "https://portal.example.org"),
                ],
            );
            assert!(
                why.is_some_and(|w| w.starts_with("Sec-Fetch-Site")),
                "{site}"
            );
        }
    }

    #[test]
    fn safe_methods_and_bearer_tokens_pass() {
        let foreign = [("host", "a.example"), ("origin", "https://evil.example")];
        for method in [Method::GET, Method::HEAD, Method::OPTIONS] {
            assert_eq!(check(method, &foreign), None);
        }
        for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            assert!(check(method.clone(), &foreign).is_some(), "{method}");
            let mut bearer = foreign.to_vec();
            bearer.push(("authorization", "Bearer abc"));
            assert_eq!(check(method.clone(), &bearer), None, "{method}");
            let mut basic = foreign.to_vec();
            basic.push(("authorization", "Basic abc"));
            assert!(check(method.clone(), &basic).is_some(), "{method}");
        }
        // Neither Origin nor Sec-Fetch-Site: not a browser's cross-site
        // request.
        assert_eq!(check(Method::POST, &[("host", "a.example")]), None);
    }
}
