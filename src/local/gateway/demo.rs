//! The demo routes behind the gateway: `/whoami` and `/echo` for API clients, and `/app/`, a
//! small server-rendered HTML area (links, an image, an urlencoded form and a multipart upload)
//! for the browser client's transparent mode. Links are relative, so the area works wherever the
//! gateway is nested (`/api/app/notes` under the usual `/api`).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use axum::body::Bytes;
use axum::extract::{Extension, Form, Multipart, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::Value;

use super::{Caller, json_message};
use crate::local::html::escape_html;

/// Notes kept per identity; the oldest go first.
const MAX_NOTES_PER_IDENTITY: usize = 50;
/// Identities with notes; past this, one is forgotten to make room.
const MAX_IDENTITIES: usize = 1000;
/// Characters in one note.
const MAX_NOTE_CHARS: usize = 2000;

/// In-memory notes, per identity id.
#[derive(Default)]
struct Notes {
    by_identity: Mutex<HashMap<String, VecDeque<String>>>,
}

impl Notes {
    fn list(&self, identity_id: &str) -> Vec<String> {
        let notes = self.by_identity.lock().unwrap_or_else(PoisonError::into_inner);
        notes
            .get(identity_id)
            .map(|list| list.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn add(&self, identity_id: &str, note: String) {
        let mut notes = self.by_identity.lock().unwrap_or_else(PoisonError::into_inner);
        if !notes.contains_key(identity_id) && notes.len() >= MAX_IDENTITIES {
            let evicted = notes.keys().next().cloned();
            if let Some(evicted) = evicted {
                notes.remove(&evicted);
            }
        }
        let list = notes.entry(identity_id.to_owned()).or_default();
        if list.len() >= MAX_NOTES_PER_IDENTITY {
            list.pop_front();
        }
        list.push_back(note);
    }
}

/// The demo routes (the gateway's authentication layer goes around them).
pub(super) fn router() -> Router {
    Router::new()
        .route("/whoami", get(whoami))
        .route("/echo", post(echo))
        .route("/app", get(|| async { Redirect::permanent("app/") }))
        .route("/app/", get(home))
        .route("/app/about", get(about))
        .route("/app/logo.svg", get(logo))
        .route("/app/notes", get(list_notes).post(add_note))
        .route("/app/upload", post(upload))
        .fallback(|| async { json_message(StatusCode::NOT_FOUND, "Not Found") })
        .with_state(Arc::new(Notes::default()))
}

async fn whoami(Extension(caller): Extension<Caller>) -> Json<Value> {
    let identity = &caller.identity;
    Json(serde_json::json!({
        "identityId": identity.identity_id,
        "provider": identity.provider,
        "subject": identity.subject,
        "claims": identity.claims,
        "accessKeyId": caller.access_key_id,
        "authType": caller.auth_type.as_str(),
    }))
}

async fn echo(body: Bytes) -> Response {
    match serde_json::from_slice::<Value>(&body) {
        Ok(value) => Json(value).into_response(),
        Err(error) => json_message(
            StatusCode::BAD_REQUEST,
            &format!("The request body is not valid JSON: {error}"),
        ),
    }
}

/// The name to greet: the `name` claim when there is one, else the subject.
fn display_name(caller: &Caller) -> &str {
    caller
        .identity
        .claims
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or(&caller.identity.subject)
}

async fn home(Extension(caller): Extension<Caller>) -> Html<String> {
    page(
        "Home",
        &format!(
            "<img src=\"logo.svg\" alt=\"credbroker logo\" width=\"48\" height=\"48\">\
             <h1>Hello, {name}!</h1>\
             <p>This page came through the local gateway, signed with credentials issued to \
             identity <code>{id}</code> ({provider}).</p>\
             <ul><li><a href=\"notes\">Your notes</a></li><li><a href=\"about\">About</a></li></ul>",
            name = escape_html(display_name(&caller)),
            id = escape_html(&caller.identity.identity_id),
            provider = escape_html(&caller.identity.provider),
        ),
    )
}

async fn about() -> Html<String> {
    page(
        "About",
        "<h1>About</h1><p>A demo area served by <code>credbroker dev</code>: every request, \
         including this page, its image and its forms, is verified with SigV4 like API Gateway \
         with <code>aws_iam</code> auth.</p><p><a href=\"./\">Home</a></p>",
    )
}

async fn logo() -> Response {
    const LOGO: &str = "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 48 48\">\
        <rect width=\"48\" height=\"48\" rx=\"10\" fill=\"#232f3e\"/>\
        <path d=\"M14 26l7 7 13-16\" stroke=\"#ff9900\" stroke-width=\"5\" fill=\"none\" \
        stroke-linecap=\"round\" stroke-linejoin=\"round\"/></svg>";
    ([(header::CONTENT_TYPE, "image/svg+xml")], LOGO).into_response()
}

async fn list_notes(State(notes): State<Arc<Notes>>, Extension(caller): Extension<Caller>) -> Html<String> {
    let items: String = notes
        .list(&caller.identity.identity_id)
        .iter()
        .map(|note| format!("<li>{}</li>", escape_html(note)))
        .collect();
    let list = if items.is_empty() {
        "<p>No notes yet.</p>".to_owned()
    } else {
        format!("<ul>{items}</ul>")
    };
    page(
        "Notes",
        &format!(
            "<h1>Notes of {name}</h1>{list}\
             <form method=\"post\" action=\"notes\">\
             <label>New note <input name=\"text\" maxlength=\"{MAX_NOTE_CHARS}\" required></label> \
             <button type=\"submit\">Add</button></form>\
             <h2>Upload a file</h2>\
             <form method=\"post\" action=\"upload\" enctype=\"multipart/form-data\">\
             <input type=\"file\" name=\"file\" required> <button type=\"submit\">Upload</button>\
             </form><p><a href=\"./\">Home</a></p>",
            name = escape_html(display_name(&caller)),
        ),
    )
}

/// The urlencoded note form.
#[derive(serde::Deserialize)]
struct NoteForm {
    text: String,
}

async fn add_note(
    State(notes): State<Arc<Notes>>,
    Extension(caller): Extension<Caller>,
    Form(form): Form<NoteForm>,
) -> Response {
    let text = form.text.trim();
    if text.chars().count() > MAX_NOTE_CHARS {
        let message = format!("A note may have at most {MAX_NOTE_CHARS} characters.");
        return error_page(StatusCode::BAD_REQUEST, &message);
    }
    if !text.is_empty() {
        notes.add(&caller.identity.identity_id, text.to_owned());
    }
    Redirect::to("notes").into_response()
}

async fn upload(mut multipart: Multipart) -> Response {
    loop {
        let mut field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => return error_page(StatusCode::BAD_REQUEST, "No file was sent."),
            Err(error) => return error_page(StatusCode::BAD_REQUEST, &error.body_text()),
        };
        if field.name() != Some("file") {
            continue;
        }
        let name = field.file_name().unwrap_or("(unnamed)").to_owned();
        let mut size: usize = 0;
        loop {
            match field.chunk().await {
                Ok(Some(chunk)) => size += chunk.len(),
                Ok(None) => break,
                Err(error) => return error_page(StatusCode::BAD_REQUEST, &error.body_text()),
            }
        }
        return page(
            "Uploaded",
            &format!(
                "<h1>Upload received</h1><p>File <strong>{}</strong>, {size} bytes.</p>\
                 <p><a href=\"notes\">Back to notes</a></p>",
                escape_html(&name)
            ),
        )
        .into_response();
    }
}

fn error_page(status: StatusCode, message: &str) -> Response {
    (
        status,
        page(
            "Error",
            &format!(
                "<h1>Sorry</h1><p>{}</p><p><a href=\"./\">Home</a></p>",
                escape_html(message)
            ),
        ),
    )
        .into_response()
}

/// A complete HTML document around `body` (which must already be escaped).
fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · credbroker demo</title><style>\
         body{{font-family:system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem;\
         color:#232f3e}}a{{color:#0b62c4}}code{{background:#f2f3f3;padding:0 .2rem}}\
         form{{margin:1rem 0}}input,button{{font:inherit}}</style></head><body>{body}</body></html>",
        title = escape_html(title),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_keep_the_newest_per_identity() {
        let notes = Notes::default();
        for i in 0..MAX_NOTES_PER_IDENTITY + 2 {
            notes.add("id-1", format!("note {i}"));
        }
        let listed = notes.list("id-1");
        assert_eq!(listed.len(), MAX_NOTES_PER_IDENTITY);
        assert_eq!(listed.first().map(String::as_str), Some("note 2"));
        assert!(notes.list("id-2").is_empty());
    }
}
