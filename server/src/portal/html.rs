//! The portal's markup: escaping, the page frame and the form pieces.
//!
//! Every text that did not come from this file goes through [`esc`]; the
//! pages carry no script, so the Content-Security-Policy allows none.

use std::fmt::Write;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// `text` safe inside an element or a double-quoted attribute.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `text` as one path segment of a link (user names are plain, but a link
/// never trusts that).
pub fn segment(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Who the page is for: their name and whether they are an admin, and the
/// form token their POSTs must carry. `None` on the login page.
pub struct Viewer<'a> {
    pub name: &'a str,
    pub admin: bool,
    pub csrf: &'a str,
}

/// A whole page.
pub fn page(status: StatusCode, title: &str, viewer: Option<&Viewer<'_>>, body: &str) -> Response {
    let mut nav = String::new();
    if let Some(v) = viewer {
        nav.push_str("<nav aria-label=\"main\"><a href=\"/portal/\">My account</a>");
        if v.admin {
            nav.push_str("<a href=\"/portal/admin\">Users and node</a><a href=\"/portal/admin/new\">New user</a>");
        }
        let _ = write!(
            nav,
            "</nav><form class=\"logout\" method=\"post\" action=\"/portal/logout\">{}<span>{}</span> <button type=\"submit\">Log out</button></form>",
            csrf_field(v.csrf),
            esc(v.name)
        );
    }
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · diycloud</title><link rel=\"stylesheet\" href=\"/portal/style.css\"></head>\
         <body><header><a class=\"brand\" href=\"/portal/\">diycloud</a>{nav}</header>\
         <main>{body}</main></body></html>\n",
        esc(title)
    );
    (
        status,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
                ),
            ),
            // For browsers older than CSP's frame-ancestors.
            (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("same-origin"),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        html,
    )
        .into_response()
}

pub fn csrf_field(token: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        esc(token)
    )
}

/// A message box: `kind` is `ok` or `error`.
pub fn notice(kind: &str, text: &str) -> String {
    let role = if kind == "error" { "alert" } else { "status" };
    format!(
        "<p class=\"notice {kind}\" role=\"{role}\">{}</p>",
        esc(text)
    )
}

/// A labelled text input.
pub fn input(name: &str, label: &str, kind: &str, value: &str, extra: &str) -> String {
    format!(
        "<label for=\"f-{name}\">{}</label><input id=\"f-{name}\" name=\"{name}\" type=\"{kind}\" value=\"{}\" {extra}>",
        esc(label),
        esc(value)
    )
}

/// A table of `label: value` rows.
pub fn facts(rows: &[(&str, String)]) -> String {
    let mut out = String::from("<dl class=\"facts\">");
    for (label, value) in rows {
        let _ = write!(out, "<dt>{}</dt><dd>{}</dd>", esc(label), esc(value));
    }
    out.push_str("</dl>");
    out
}

/// Bytes as people read them (binary units, like the limits).
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_is_escaped() {
        assert_eq!(
            esc("<script>alert('x') & \"y\"</script>"),
            "&lt;script&gt;alert(&#39;x&#39;) &amp; &quot;y&quot;&lt;/script&gt;"
        );
        assert_eq!(segment("a b/../c"), "a%20b%2F..%2Fc");
        assert_eq!(segment("alice-1_x"), "alice-1_x");
    }

    #[test]
    fn sizes_read_naturally() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 << 20), "3.0 MiB");
        assert_eq!(bytes(1536 << 20), "1.5 GiB");
    }
}
