//! The portal's markup: the page frame and the pieces the pages share.
//!
//! Every page is a maud template (`html!`), checked when the server is
//! compiled: a value spliced into it is escaped, unless it is marked as
//! markup already (`Markup` from another template, or a chart, whose SVG
//! [`super::chart`] escapes itself). No page is put together from strings.
//! The pages carry no script, so the Content-Security-Policy allows none.

use std::fmt::Write;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup, Render, DOCTYPE};

/// `text` as one path segment of a link (user names are plain, but a link
/// never trusts that). maud escapes for HTML; it does not percent-encode.
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

/// A text someone typed, or a message that may quote it, escaped as maud
/// escapes every splice (`&`, `<`, `>`, `"`) and with `'` as `&#39;` too:
/// the shared pieces below carry such texts, and they read the same in an
/// attribute whichever quote it is in.
struct Typed<'a>(&'a str);

impl Render for Typed<'_> {
    fn render_to(&self, buffer: &mut String) {
        let mut pieces = self.0.split('\'');
        if let Some(first) = pieces.next() {
            first.render_to(buffer);
        }
        for piece in pieces {
            buffer.push_str("&#39;");
            piece.render_to(buffer);
        }
    }
}

/// Who the page is for: their name and whether they are an admin, and the
/// form token their POSTs must carry. `None` on the login page.
pub struct Viewer<'a> {
    pub name: &'a str,
    pub admin: bool,
    pub csrf: &'a str,
}

/// A whole page.
pub fn page(
    status: StatusCode,
    title: &str,
    viewer: Option<&Viewer<'_>>,
    body: Markup,
) -> Response {
    let html = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · diycloud" }
                link rel="stylesheet" href="/portal/style.css";
            }
            body {
                header {
                    a class="brand" href="/portal/" { "diycloud" }
                    @if let Some(v) = viewer {
                        nav aria-label="main" {
                            a href="/portal/" { "My account" }
                            @if v.admin {
                                a href="/portal/admin" { "Users and node" }
                                a href="/portal/admin/new" { "New user" }
                            }
                        }
                        form class="logout" method="post" action="/portal/logout" {
                            (csrf_field(v.csrf))
                            span { (v.name) }
                            " "
                            button type="submit" { "Log out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    };
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
        html.into_string(),
    )
        .into_response()
}

/// The hidden field of a form that carries the session's form token.
pub fn csrf_field(token: &str) -> Markup {
    html! { input type="hidden" name="csrf" value=(token); }
}

/// A message box: `kind` is `ok` or `error`.
pub fn notice(kind: &str, text: &str) -> Markup {
    let role = if kind == "error" { "alert" } else { "status" };
    html! { p class={ "notice " (kind) } role=(role) { (Typed(text)) } }
}

/// A labelled input (`id` `f-NAME`), with the attributes its field needs:
/// `input(name, label, type, value).required()`.
pub fn input<'a>(name: &'a str, label: &'a str, kind: &'a str, value: &'a str) -> Input<'a> {
    Input {
        name,
        label,
        kind,
        value,
        autocomplete: None,
        required: false,
        autofocus: false,
        pattern: None,
        maxlength: None,
    }
}

/// See [`input`].
pub struct Input<'a> {
    name: &'a str,
    label: &'a str,
    kind: &'a str,
    value: &'a str,
    autocomplete: Option<&'a str>,
    required: bool,
    autofocus: bool,
    pattern: Option<&'a str>,
    maxlength: Option<u32>,
}

impl<'a> Input<'a> {
    pub fn autocomplete(self, autocomplete: &'a str) -> Self {
        Self {
            autocomplete: Some(autocomplete),
            ..self
        }
    }

    pub fn required(self) -> Self {
        Self {
            required: true,
            ..self
        }
    }

    pub fn autofocus(self) -> Self {
        Self {
            autofocus: true,
            ..self
        }
    }

    pub fn pattern(self, pattern: &'a str) -> Self {
        Self {
            pattern: Some(pattern),
            ..self
        }
    }

    pub fn maxlength(self, maxlength: u32) -> Self {
        Self {
            maxlength: Some(maxlength),
            ..self
        }
    }
}

impl Render for Input<'_> {
    fn render(&self) -> Markup {
        html! {
            label for={ "f-" (self.name) } { (self.label) }
            input id={ "f-" (self.name) } name=(self.name) type=(self.kind)
                value=(Typed(self.value)) autocomplete=[self.autocomplete]
                required[self.required] autofocus[self.autofocus]
                pattern=[self.pattern] maxlength=[self.maxlength];
        }
    }
}

/// A table of `label: value` rows.
pub fn facts(rows: &[(&str, String)]) -> Markup {
    html! {
        dl class="facts" {
            @for (label, value) in rows {
                dt { (label) }
                dd { (Typed(value)) }
            }
        }
    }
}

/// A table in a box that scrolls sideways at phone width: a header row of
/// `columns`, then `rows` (`tr` elements).
pub fn table(class: Option<&str>, columns: &[&str], rows: Markup) -> Markup {
    html! {
        div class="scroll" {
            table class=[class] {
                thead {
                    tr {
                        @for column in columns {
                            th scope="col" { (column) }
                        }
                    }
                }
                tbody { (rows) }
            }
        }
    }
}

/// A link to a user's page, for an admin.
pub fn user_link(name: &str) -> Markup {
    html! { a href={ "/portal/admin/users/" (segment(name)) } { (name) } }
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
        let typed = "<script>alert('x') & \"y\"</script>";
        assert_eq!(
            html! { (Typed(typed)) }.into_string(),
            "&lt;script&gt;alert(&#39;x&#39;) &amp; &quot;y&quot;&lt;/script&gt;"
        );
        assert_eq!(
            input("n", "<b>", "text", typed).render().into_string(),
            "<label for=\"f-n\">&lt;b&gt;</label><input id=\"f-n\" name=\"n\" type=\"text\" \
             value=\"&lt;script&gt;alert(&#39;x&#39;) &amp; &quot;y&quot;&lt;/script&gt;\">"
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
