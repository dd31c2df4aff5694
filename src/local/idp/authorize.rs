//! The authorization endpoint: request validation, the sign-in page, the session cookie, and the
//! redirect back with a code (or an error) — RFC 6749 §4.1 with PKCE (RFC 7636) and the OpenID
//! Connect `nonce` and `prompt` parameters.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use url::Url;

use super::page::{SignInPage, error_page, signed_out_page};
use super::params::Params;
use super::users::{DevUser, UserFields, check_sub};
use super::{DEV_CLIENT_ID, DevIdp, IssuedCode, SignIn, is_loopback_http_url};

/// The session cookie: which user this browser signed in as, for `prompt=none`.
const SESSION_COOKIE: &str = "credbroker_dev_idp_session";
/// Bounds on client-chosen values echoed into codes, tokens and pages.
const MAX_REDIRECT_URI_BYTES: usize = 2048;
const MAX_STATE_BYTES: usize = 1024;
const MAX_NONCE_BYTES: usize = 512;
/// PKCE `code_challenge` length (RFC 7636 §4.2); S256 challenges are 43.
const CODE_CHALLENGE_CHARS: std::ops::RangeInclusive<usize> = 43..=128;

/// A validated authorization request.
#[derive(Debug, Clone)]
pub(super) struct AuthRequest {
    redirect_uri: Url,
    /// As sent, for the token request's exact comparison.
    redirect_uri_text: String,
    state: Option<String>,
    nonce: Option<String>,
    code_challenge: String,
    scope: String,
    prompt_none: bool,
    login_hint: Option<String>,
}

/// Why a request is refused, and how the refusal reaches the user.
enum Refusal {
    /// The client or `redirect_uri` cannot be trusted: tell the user, never redirect.
    Page(String),
    /// The redirect target is known good: send the error back to the client.
    Redirect(Box<ErrorRedirect>),
}

/// An error for the client, sent to its `redirect_uri` (RFC 6749 §4.1.2.1).
struct ErrorRedirect {
    redirect_uri: Url,
    state: Option<String>,
    error: &'static str,
    description: String,
}

/// `GET /authorize`.
pub(super) async fn show(
    State(idp): State<Arc<DevIdp>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let request = match Params::parse(query.unwrap_or_default().as_bytes())
        .map_err(Refusal::Page)
        .and_then(|params| AuthRequest::from_params(&params, &idp))
    {
        Ok(request) => request,
        Err(refusal) => return idp.refuse(refusal),
    };
    let session = session_id(&headers).and_then(|id| idp.sessions.get(&id));
    match (request.prompt_none, session) {
        (true, Some(sign_in)) => idp.redirect_with_code(&request, sign_in),
        (true, None) => idp.refuse(request.refusal(
            "login_required",
            "no dev provider session in this browser; sign in without prompt=none first",
        )),
        (false, session) => {
            let editable = match session {
                Some(sign_in) => sign_in.user.fields(),
                None => idp.user_for_hint(request.login_hint.as_deref()),
            };
            idp.sign_in_page(request, &editable, None)
        }
    }
}

/// `POST /authorize`: the sign-in page's form.
pub(super) async fn submit(State(idp): State<Arc<DevIdp>>, headers: HeaderMap, body: Bytes) -> Response {
    let params = match Params::parse(&body) {
        Ok(params) => params,
        Err(problem) => return error_page(&problem),
    };
    let Some(request) = params.get("request").and_then(|token| idp.pages.take(token)) else {
        return error_page(
            "This sign-in page has expired (pages live 10 minutes), was already used, or did \
             not come from this provider.",
        );
    };
    let fields = UserFields {
        sub: params.text("sub").to_string(),
        email: params.text("email").to_string(),
        name: params.text("name").to_string(),
        claims: params.text("claims").to_string(),
    };
    let user = match DevUser::from_fields(&fields) {
        Ok(user) => user,
        Err(problem) => return idp.sign_in_page(request, &fields, Some(&problem)),
    };
    if let Some(previous) = session_id(&headers) {
        idp.sessions.remove(&previous);
    }
    let sign_in = idp.sign_in_now(user);
    let session = idp.sessions.insert(sign_in.clone());
    let mut response = idp.redirect_with_code(&request, sign_in);
    if let Ok(cookie) = HeaderValue::from_str(&idp.session_cookie(&session)) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

impl AuthRequest {
    fn from_params(params: &Params, idp: &DevIdp) -> Result<AuthRequest, Refusal> {
        let client_id = params.require("client_id").map_err(Refusal::Page)?;
        if client_id != DEV_CLIENT_ID {
            return Err(Refusal::Page(format!(
                "Unknown client_id `{client_id}`: the dev provider only knows `{DEV_CLIENT_ID}`."
            )));
        }
        let redirect_uri_text = params.require("redirect_uri").map_err(Refusal::Page)?;
        let redirect_uri = checked_redirect_uri(redirect_uri_text).map_err(Refusal::Page)?;
        if !idp.allows(&redirect_uri) {
            return Err(Refusal::Page(format!(
                "redirect_uri `{redirect_uri_text}` is not on an origin of this dev stack ({}). \
                 Add your app's origin to `allowed_origins` in the configuration.",
                idp.origins.join(", ")
            )));
        }
        let state = params.get("state").map(str::to_string);
        let refuse = |error: &'static str, description: String| {
            Refusal::Redirect(Box::new(ErrorRedirect {
                redirect_uri: redirect_uri.clone(),
                state: state.clone(),
                error,
                description,
            }))
        };
        if state.as_ref().is_some_and(|s| s.len() > MAX_STATE_BYTES) {
            return Err(refuse(
                "invalid_request",
                format!("state is over {MAX_STATE_BYTES} bytes"),
            ));
        }
        let response_type = params.get("response_type").unwrap_or_default();
        if response_type != "code" {
            return Err(refuse(
                "unsupported_response_type",
                "only response_type=code (the authorization code flow) is supported".into(),
            ));
        }
        if params.get("response_mode").is_some_and(|mode| mode != "query") {
            return Err(refuse(
                "invalid_request",
                "only response_mode=query is supported".into(),
            ));
        }
        let scope = params.get("scope").unwrap_or_default();
        if !scope.split(' ').any(|s| s == "openid") {
            return Err(refuse("invalid_scope", "scope must include openid".into()));
        }
        let code_challenge =
            checked_code_challenge(params).map_err(|problem| refuse("invalid_request", problem))?;
        let nonce = params.get("nonce").map(str::to_string);
        if nonce.as_ref().is_some_and(|n| n.len() > MAX_NONCE_BYTES) {
            return Err(refuse(
                "invalid_request",
                format!("nonce is over {MAX_NONCE_BYTES} bytes"),
            ));
        }
        let prompt_none = wants_no_prompt(params.get("prompt").unwrap_or_default())
            .map_err(|problem| refuse("invalid_request", problem))?;
        Ok(AuthRequest {
            redirect_uri: redirect_uri.clone(),
            redirect_uri_text: redirect_uri_text.to_string(),
            state: state.clone(),
            nonce,
            code_challenge,
            scope: scope.split_whitespace().collect::<Vec<_>>().join(" "),
            prompt_none,
            login_hint: params
                .get("login_hint")
                .filter(|hint| check_sub(hint).is_ok())
                .map(str::to_string),
        })
    }

    fn refusal(&self, error: &'static str, description: &str) -> Refusal {
        Refusal::Redirect(Box::new(ErrorRedirect {
            redirect_uri: self.redirect_uri.clone(),
            state: self.state.clone(),
            error,
            description: description.to_string(),
        }))
    }
}

/// A `redirect_uri` the dev provider may send codes to: an absolute `http(s)` URL on a loopback
/// host, without fragment (RFC 6749 §3.1.2).
fn checked_redirect_uri(text: &str) -> Result<Url, String> {
    if text.len() > MAX_REDIRECT_URI_BYTES {
        return Err(format!("redirect_uri is over {MAX_REDIRECT_URI_BYTES} bytes."));
    }
    let url = Url::parse(text).map_err(|e| format!("redirect_uri `{text}` is not an absolute URL ({e})."))?;
    if !is_loopback_http_url(&url) {
        return Err(format!(
            "redirect_uri `{text}` is not an http(s) URL on a loopback host (127.0.0.1, \
             localhost or [::1]). The dev provider signs in anyone, so it only sends codes back \
             to this machine."
        ));
    }
    if url.fragment().is_some() {
        return Err(format!(
            "redirect_uri `{text}` has a #fragment, which RFC 6749 §3.1.2 forbids."
        ));
    }
    Ok(url)
}

/// The PKCE challenge: required, method `S256` only (`plain` protects nothing).
fn checked_code_challenge(params: &Params) -> Result<String, String> {
    let challenge = params.get("code_challenge").ok_or_else(|| {
        "PKCE is required: send code_challenge=BASE64URL(SHA256(code_verifier)) with \
         code_challenge_method=S256"
            .to_string()
    })?;
    if params.get("code_challenge_method") != Some("S256") {
        return Err("code_challenge_method must be S256".into());
    }
    let well_formed = CODE_CHALLENGE_CHARS.contains(&challenge.len())
        && challenge
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_');
    if !well_formed {
        return Err("code_challenge must be 43 to 128 base64url characters".into());
    }
    Ok(challenge.to_string())
}

/// Whether `prompt` asks for no user interaction; `none` cannot be combined with other values
/// (OpenID Connect Core §3.1.2.1). Other values (`login`, `consent`...) change nothing here: the
/// page is always shown.
fn wants_no_prompt(prompt: &str) -> Result<bool, String> {
    let values: Vec<&str> = prompt.split_whitespace().collect();
    match values.as_slice() {
        ["none"] => Ok(true),
        several if several.contains(&"none") => {
            Err("prompt=none cannot be combined with other prompt values".into())
        }
        _ => Ok(false),
    }
}

/// `GET /logout`, the `end_session_endpoint` (OpenID Connect RP-Initiated Logout 1.0 §2): ends
/// this browser's session here, then sends it to `post_logout_redirect_uri` (with `state`) when
/// that is on an allowed origin; otherwise, as the spec lets a provider do with a URI it does
/// not know, it only says so.
pub(super) async fn logout(
    State(idp): State<Arc<DevIdp>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    if let Some(id) = session_id(&headers) {
        idp.sessions.remove(&id);
    }
    let params = Params::parse(query.unwrap_or_default().as_bytes()).ok();
    let back = params
        .as_ref()
        .and_then(|params| params.get("post_logout_redirect_uri"))
        .and_then(|text| checked_redirect_uri(text).ok())
        .filter(|url| idp.allows(url));
    let mut response = match back {
        Some(mut url) => {
            if let Some(state) = params.as_ref().and_then(|params| params.get("state")) {
                url.query_pairs_mut().append_pair("state", state);
            }
            let mut response = StatusCode::FOUND.into_response();
            if let Ok(location) = HeaderValue::from_str(url.as_str()) {
                response.headers_mut().insert(header::LOCATION, location);
            }
            response
        }
        None => signed_out_page(),
    };
    if let Ok(cookie) = HeaderValue::from_str(&idp.session_cookie_removal()) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The session id in the request's cookies, if any.
fn session_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|cookies| cookies.split(';'))
        .filter_map(|cookie| cookie.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.to_string())
}

impl DevIdp {
    fn refuse(&self, refusal: Refusal) -> Response {
        match refusal {
            Refusal::Page(problem) => error_page(&problem),
            Refusal::Redirect(redirect) => self.redirect_back(
                redirect.redirect_uri,
                &[
                    ("error", redirect.error),
                    ("error_description", &redirect.description),
                ],
                redirect.state.as_deref(),
            ),
        }
    }

    /// Issues a code for `sign_in` and sends the browser back to the client with it.
    fn redirect_with_code(&self, request: &AuthRequest, sign_in: SignIn) -> Response {
        let code = self.codes.insert(IssuedCode {
            sign_in,
            redirect_uri: request.redirect_uri_text.clone(),
            code_challenge: request.code_challenge.clone(),
            nonce: request.nonce.clone(),
            scope: request.scope.clone(),
        });
        self.redirect_back(
            request.redirect_uri.clone(),
            &[("code", &code)],
            request.state.as_deref(),
        )
    }

    /// `302` to `redirect_uri` with `params`, `state` and `iss` (RFC 9207) added to its query.
    fn redirect_back(&self, mut redirect_uri: Url, params: &[(&str, &str)], state: Option<&str>) -> Response {
        {
            let mut query = redirect_uri.query_pairs_mut();
            query.extend_pairs(params);
            if let Some(state) = state {
                query.append_pair("state", state);
            }
            query.append_pair("iss", self.issuer.as_str());
        }
        let mut response = StatusCode::FOUND.into_response();
        let headers = response.headers_mut();
        if let Ok(location) = HeaderValue::from_str(redirect_uri.as_str()) {
            headers.insert(header::LOCATION, location);
        }
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        // The code is in the URL: do not leak it onward.
        headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
        response
    }

    /// Shows the sign-in page for `request`, under a fresh one-time form token.
    fn sign_in_page(&self, request: AuthRequest, editable: &UserFields, problem: Option<&str>) -> Response {
        let redirect_uri = request.redirect_uri_text.clone();
        let request_token = self.pages.insert(request);
        SignInPage {
            action: &self.endpoint("authorize"),
            request_token: &request_token,
            issuer: self.issuer.as_str(),
            client_id: DEV_CLIENT_ID,
            redirect_uri: &redirect_uri,
            presets: &self.presets,
            editable,
            problem,
        }
        .into_response()
    }

    /// What the editable form starts with: the preset `login_hint` names (by `sub` or email), a
    /// new user named by the hint, or the first preset.
    fn user_for_hint(&self, hint: Option<&str>) -> UserFields {
        let [first, ..] = &self.presets;
        let Some(hint) = hint else {
            return first.fields();
        };
        let preset = self
            .presets
            .iter()
            .find(|user| user.sub == hint || user.email.as_deref() == Some(hint));
        match preset {
            Some(user) => user.fields(),
            None => UserFields {
                sub: hint.to_string(),
                email: if hint.contains('@') {
                    hint.to_string()
                } else {
                    String::new()
                },
                ..UserFields::default()
            },
        }
    }

    /// The `Set-Cookie` value that removes the session cookie.
    fn session_cookie_removal(&self) -> String {
        format!(
            "{SESSION_COOKIE}=; Path={}; Max-Age=0; HttpOnly; SameSite=Lax",
            self.issuer.path()
        )
    }

    /// The `Set-Cookie` value for session `id`, scoped to the issuer's path.
    fn session_cookie(&self, id: &str) -> String {
        let path = self.issuer.path();
        let secure = if self.issuer.scheme() == "https" {
            "; Secure"
        } else {
            ""
        };
        format!(
            "{SESSION_COOKIE}={id}; Path={path}; Max-Age={}; HttpOnly; SameSite=Lax{secure}",
            self.sessions.lifetime().as_secs()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_values() {
        assert_eq!(wants_no_prompt(""), Ok(false));
        assert_eq!(wants_no_prompt("none"), Ok(true));
        assert_eq!(wants_no_prompt("login consent"), Ok(false));
        assert!(wants_no_prompt("none login").is_err());
    }

    #[test]
    fn session_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; credbroker_dev_idp_session=abc; b=2"),
        );
        assert_eq!(session_id(&headers).as_deref(), Some("abc"));
        assert_eq!(session_id(&HeaderMap::new()), None);
    }

    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt as _;

    fn dev_stack_idp() -> Arc<DevIdp> {
        let issuer = Url::parse("http://127.0.0.1:8787/dev-idp").unwrap();
        DevIdp::for_origins(issuer, vec!["http://127.0.0.1:8787".to_string()])
    }

    async fn get(idp: &Arc<DevIdp>, uri: &str) -> Response {
        let request = Request::get(uri).body(Body::empty()).unwrap();
        idp.clone().router().oneshot(request).await.unwrap()
    }

    fn location(response: &Response) -> Option<&str> {
        response
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
    }

    #[tokio::test]
    async fn codes_go_only_to_the_dev_stack_origins() {
        let idp = dev_stack_idp();
        let query = "client_id=credbroker-dev&response_type=code&scope=openid&state=s\
                     &code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256";
        let ours = get(
            &idp,
            &format!("/authorize?{query}&redirect_uri=http%3A%2F%2F127.0.0.1%3A8787%2F"),
        )
        .await;
        assert_eq!(ours.status(), StatusCode::OK, "the sign-in page");
        let other_app = get(
            &idp,
            &format!("/authorize?{query}&redirect_uri=http%3A%2F%2F127.0.0.1%3A5173%2F"),
        )
        .await;
        assert_eq!(other_app.status(), StatusCode::BAD_REQUEST);
        assert_eq!(location(&other_app), None, "never redirected there");
    }

    #[tokio::test]
    async fn logout_ends_the_session_and_returns_only_to_allowed_origins() {
        let idp = dev_stack_idp();
        let back = get(
            &idp,
            "/logout?client_id=credbroker-dev&state=xyz&post_logout_redirect_uri=http%3A%2F%2F127.0.0.1%3A8787%2F%3Fa%3D1",
        )
        .await;
        assert_eq!(back.status(), StatusCode::FOUND);
        assert_eq!(location(&back), Some("http://127.0.0.1:8787/?a=1&state=xyz"));
        let cookie = back.headers()[header::SET_COOKIE].to_str().unwrap();
        assert!(
            cookie.starts_with(&format!("{SESSION_COOKIE}=;")) && cookie.contains("Max-Age=0"),
            "{cookie}"
        );
        for elsewhere in [
            "https%3A%2F%2Fevil.example%2F",
            "http%3A%2F%2F127.0.0.1%3A5173%2F",
            "%2Frelative",
        ] {
            let page = get(&idp, &format!("/logout?post_logout_redirect_uri={elsewhere}")).await;
            assert_eq!(page.status(), StatusCode::OK, "{elsewhere}");
            assert_eq!(location(&page), None, "{elsewhere}");
        }
    }

    #[test]
    fn redirect_uri_rules() {
        assert!(checked_redirect_uri("http://127.0.0.1:5173/callback").is_ok());
        assert!(
            checked_redirect_uri("https://app.example.com/cb")
                .unwrap_err()
                .contains("loopback")
        );
        assert!(
            checked_redirect_uri("http://localhost/cb#x")
                .unwrap_err()
                .contains("fragment")
        );
        assert!(
            checked_redirect_uri("/relative")
                .unwrap_err()
                .contains("absolute")
        );
    }

    #[test]
    fn code_challenge_rules() {
        let good = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        let params = |query: &str| Params::parse(query.as_bytes()).unwrap();
        assert_eq!(
            checked_code_challenge(&params(&format!(
                "code_challenge={good}&code_challenge_method=S256"
            ))),
            Ok(good.to_string())
        );
        assert!(checked_code_challenge(&params("")).unwrap_err().contains("PKCE"));
        assert!(
            checked_code_challenge(&params(&format!(
                "code_challenge={good}&code_challenge_method=plain"
            )))
            .unwrap_err()
            .contains("S256")
        );
        assert!(checked_code_challenge(&params("code_challenge=short&code_challenge_method=S256")).is_err());
    }
}
