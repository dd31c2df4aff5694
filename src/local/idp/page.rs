//! The dev provider's HTML: the sign-in page (pick a preset user or edit one) and the error page
//! shown when a request cannot be sent back to the client. Every interpolated value is escaped.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::users::{DevUser, UserFields};
use crate::local::html::escape_html;

/// Readable on a phone and in dark mode, with no external resources.
const STYLE: &str = "\
:root{color-scheme:light dark;font-family:system-ui,-apple-system,sans-serif;line-height:1.4}\
body{margin:0;padding:1rem}\
main{max-width:34rem;margin:0 auto}\
h1{font-size:1.35rem;margin:.5rem 0}\
h2{font-size:1.05rem;margin:1.5rem 0 .5rem}\
.note{font-size:.9rem;opacity:.75}\
code,.claims{font-family:ui-monospace,monospace;overflow-wrap:anywhere}\
form{margin:0}\
.user{display:block;width:100%;text-align:left;padding:.7rem .9rem;margin:.5rem 0;\
border:1px solid #8886;border-radius:.5rem;background:transparent;color:inherit;font:inherit;cursor:pointer}\
.user:hover,.user:focus{border-color:#3b6fd4}\
.claims{display:block;font-size:.8rem;opacity:.75;white-space:pre-wrap}\
label{display:block;margin:.7rem 0 .2rem;font-weight:600}\
input[type=text],textarea{box-sizing:border-box;width:100%;padding:.5rem;font:inherit;\
border:1px solid #8888;border-radius:.4rem;background:transparent;color:inherit}\
textarea{font-family:ui-monospace,monospace;min-height:6rem}\
.primary{margin-top:1rem;padding:.6rem 1.3rem;border:0;border-radius:.4rem;background:#3b6fd4;\
color:#fff;font:inherit;cursor:pointer}\
.error{padding:.7rem .9rem;border-radius:.5rem;border:1px solid #c33;background:#c332}";

/// What the sign-in page shows.
pub(super) struct SignInPage<'a> {
    /// Where the forms post (the provider's authorization endpoint).
    pub(super) action: &'a str,
    /// The one-time token tying a form to the validated authorization request.
    pub(super) request_token: &'a str,
    pub(super) issuer: &'a str,
    pub(super) client_id: &'a str,
    pub(super) redirect_uri: &'a str,
    pub(super) presets: &'a [DevUser],
    /// What the editable form starts with.
    pub(super) editable: &'a UserFields,
    /// Why the last submission was refused, if it was.
    pub(super) problem: Option<&'a str>,
}

impl SignInPage<'_> {
    /// The page as a response: 200, or 400 when it re-shows a refused submission.
    pub(super) fn into_response(self) -> Response {
        let status = match self.problem {
            Some(_) => StatusCode::BAD_REQUEST,
            None => StatusCode::OK,
        };
        html_response(status, "Sign in — credbroker dev", &self.body())
    }

    fn body(&self) -> String {
        let problem = self
            .problem
            .map(|p| format!("<p class=\"error\" role=\"alert\">{}</p>", escape_html(p)))
            .unwrap_or_default();
        let presets: String = self.presets.iter().map(|u| self.preset_form(u)).collect();
        format!(
            "<h1>Sign in to credbroker dev</h1>\
             <p class=\"note\">Development OpenID provider <code>{issuer}</code>: whoever you pick \
             is signed in, nothing is checked. Client <code>{client}</code> will receive the \
             result at <code>{redirect}</code>.</p>{problem}\
             <h2>Pick a user</h2>{presets}\
             <h2>Or edit one</h2>{editable}",
            issuer = escape_html(self.issuer),
            client = escape_html(self.client_id),
            redirect = escape_html(self.redirect_uri),
            editable = self.editable_form(),
        )
    }

    fn preset_form(&self, user: &DevUser) -> String {
        let fields = user.fields();
        format!(
            "<form method=\"post\" action=\"{action}\">{hidden}\
             <button class=\"user\" type=\"submit\">{label}{claims}</button></form>",
            action = escape_html(self.action),
            hidden = self.hidden_fields(&fields),
            label = escape_html(&user.label()),
            claims = claims_summary(&fields.claims),
        )
    }

    fn hidden_fields(&self, fields: &UserFields) -> String {
        [
            ("request", self.request_token),
            ("sub", &fields.sub),
            ("email", &fields.email),
            ("name", &fields.name),
            ("claims", &fields.claims),
        ]
        .iter()
        .map(|(name, value)| {
            format!(
                "<input type=\"hidden\" name=\"{name}\" value=\"{}\">",
                escape_html(value)
            )
        })
        .collect()
    }

    fn editable_form(&self) -> String {
        let fields = self.editable;
        format!(
            "<form method=\"post\" action=\"{action}\">\
             <input type=\"hidden\" name=\"request\" value=\"{request}\">\
             <label for=\"sub\">sub</label>\
             <input type=\"text\" id=\"sub\" name=\"sub\" required maxlength=\"255\" value=\"{sub}\">\
             <label for=\"email\">email</label>\
             <input type=\"text\" id=\"email\" name=\"email\" inputmode=\"email\" value=\"{email}\">\
             <label for=\"name\">name</label>\
             <input type=\"text\" id=\"name\" name=\"name\" value=\"{name}\">\
             <label for=\"claims\">extra claims, one <code>key=value</code> per line</label>\
             <textarea id=\"claims\" name=\"claims\" spellcheck=\"false\" \
             placeholder=\"groups=[&quot;admins&quot;]&#10;hd=corp.example\">{claims}</textarea>\
             <p class=\"note\">Values that parse as JSON are taken as JSON (<code>[\"a\",\"b\"]</code>, \
             <code>false</code>, <code>3</code>), anything else as a string.</p>\
             <button class=\"primary\" type=\"submit\">Sign in</button></form>",
            action = escape_html(self.action),
            request = escape_html(self.request_token),
            sub = escape_html(&fields.sub),
            email = escape_html(&fields.email),
            name = escape_html(&fields.name),
            claims = escape_html(&fields.claims),
        )
    }
}

/// A preset's extra claims under its name, or nothing when it has none.
fn claims_summary(claims: &str) -> String {
    let claims = claims.trim_end();
    if claims.is_empty() {
        return String::new();
    }
    format!("<span class=\"claims\">{}</span>", escape_html(claims))
}

/// A 400 page for requests that must not be redirected back (unknown client, unacceptable
/// `redirect_uri`, expired sign-in page): RFC 6749 §4.1.2.1.
pub(super) fn error_page(problem: &str) -> Response {
    let body = format!(
        "<h1>Sign-in request refused</h1><p class=\"error\" role=\"alert\">{}</p>\
         <p class=\"note\">This is the credbroker dev OpenID provider. Start the sign-in again \
         from your app.</p>",
        escape_html(problem)
    );
    html_response(StatusCode::BAD_REQUEST, "Sign-in refused — credbroker dev", &body)
}

/// The page of `GET /logout` when there is no (allowed) `post_logout_redirect_uri`.
pub(super) fn signed_out_page() -> Response {
    let body = "<h1>Signed out</h1><p class=\"note\">You are signed out of the credbroker dev \
                OpenID provider in this browser.</p>";
    html_response(StatusCode::OK, "Signed out — credbroker dev", body)
}

fn html_response(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{title}</title><style>{STYLE}</style></head><body><main>{body}</main></body></html>",
        title = escape_html(title),
    );
    let mut response = (status, html).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // No scripts at all, and no framing: the page only needs its inline style.
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}
