//! The users the dev provider signs in: presets, the "edit a user" form's fields, and the limits
//! on what a user's claims may be.

use serde_json::{Map, Value, json};

/// OpenID Connect caps `sub` at 255 ASCII characters (Core §2).
const MAX_SUB_CHARS: usize = 255;
/// Bounds on the extra claims, so an ID token stays well under the broker's token size limit.
const MAX_EXTRA_CLAIMS: usize = 32;
const MAX_CLAIM_NAME_CHARS: usize = 64;
/// Bounds on the free-text fields of the form.
pub(super) const MAX_CLAIMS_TEXT_BYTES: usize = 8 * 1024;
const MAX_PROFILE_FIELD_CHARS: usize = 256;

/// Claims the provider itself sets on every ID token; a user cannot choose them.
const PROTOCOL_CLAIMS: [&str; 8] = ["iss", "sub", "aud", "azp", "exp", "iat", "auth_time", "nonce"];

/// A signed-in (or about to be) user: the profile claims and any extra claims.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct DevUser {
    pub(super) sub: String,
    pub(super) email: Option<String>,
    pub(super) name: Option<String>,
    /// Claims added as they are; they may override `email`, `email_verified` and `name`.
    pub(super) extra: Map<String, Value>,
}

impl DevUser {
    /// The ID-token claims describing the user, without the protocol claims.
    pub(super) fn profile_claims(&self) -> Map<String, Value> {
        let mut claims = Map::new();
        if let Some(email) = &self.email {
            claims.insert("email".into(), Value::String(email.clone()));
            claims.insert("email_verified".into(), Value::Bool(true));
        }
        if let Some(name) = &self.name {
            claims.insert("name".into(), Value::String(name.clone()));
        }
        claims.extend(self.extra.clone());
        claims
    }

    /// A one-line description for the sign-in page, e.g. `Alice Example — alice@example.com`.
    pub(super) fn label(&self) -> String {
        match (&self.name, &self.email) {
            (Some(name), Some(email)) => format!("{name} — {email}"),
            (Some(only), None) | (None, Some(only)) => format!("{only} ({})", self.sub),
            (None, None) => self.sub.clone(),
        }
    }

    /// The user as the sign-in form's fields.
    pub(super) fn fields(&self) -> UserFields {
        UserFields {
            sub: self.sub.clone(),
            email: self.email.clone().unwrap_or_default(),
            name: self.name.clone().unwrap_or_default(),
            claims: format_claim_lines(&self.extra),
        }
    }

    /// Builds a user from the sign-in form's fields, checking every limit.
    pub(super) fn from_fields(fields: &UserFields) -> Result<DevUser, String> {
        let sub = fields.sub.trim();
        check_sub(sub)?;
        Ok(DevUser {
            sub: sub.to_string(),
            email: optional_field("email", &fields.email)?,
            name: optional_field("name", &fields.name)?,
            extra: parse_claim_lines(&fields.claims)?,
        })
    }
}

/// The sign-in form's user fields as typed, kept verbatim so a refused form can be shown again.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct UserFields {
    pub(super) sub: String,
    pub(super) email: String,
    pub(super) name: String,
    /// `key=value` lines.
    pub(super) claims: String,
}

/// The users offered on the sign-in page, chosen to exercise the claim rules people write:
/// a plain user, a Google Workspace-style `hd` + `groups` user, and an Entra/Auth0-style
/// tenant/organization user.
pub(super) fn presets() -> [DevUser; 3] {
    [
        preset("alice", "alice@example.com", "Alice Example", json!({})),
        preset(
            "bob",
            "bob@corp.example",
            "Bob Admin",
            json!({"hd": "corp.example", "groups": ["admins"]}),
        ),
        preset(
            "carol",
            "carol@partner.example",
            "Carol Partner",
            json!({
                "tid": "00000000-0000-4000-8000-00000000ca01",
                "organization_id": "org_dev_carol",
            }),
        ),
    ]
}

fn preset(sub: &str, email: &str, name: &str, extra: Value) -> DevUser {
    DevUser {
        sub: sub.into(),
        email: Some(email.into()),
        name: Some(name.into()),
        extra: match extra {
            Value::Object(map) => map,
            _ => Map::new(),
        },
    }
}

/// Checks a subject identifier: present, at most 255 characters, no control characters.
pub(super) fn check_sub(sub: &str) -> Result<(), String> {
    if sub.is_empty() {
        return Err("sub is required".into());
    }
    if sub.chars().count() > MAX_SUB_CHARS {
        return Err(format!("sub is longer than {MAX_SUB_CHARS} characters"));
    }
    if sub.chars().any(char::is_control) {
        return Err("sub contains control characters".into());
    }
    Ok(())
}

/// Checks extra claims: bounded in number and name length, and none of the protocol claims.
pub(super) fn check_extra_claims(claims: &Map<String, Value>) -> Result<(), String> {
    if claims.len() > MAX_EXTRA_CLAIMS {
        return Err(format!("at most {MAX_EXTRA_CLAIMS} extra claims"));
    }
    for name in claims.keys() {
        if name.is_empty() || name.chars().count() > MAX_CLAIM_NAME_CHARS {
            return Err(format!(
                "claim names must be 1 to {MAX_CLAIM_NAME_CHARS} characters"
            ));
        }
        if PROTOCOL_CLAIMS.contains(&name.as_str()) {
            return Err(format!(
                "claim `{name}` is set by the provider and cannot be chosen"
            ));
        }
    }
    Ok(())
}

/// An optional single-line text field: empty means absent.
fn optional_field(field: &str, value: &str) -> Result<Option<String>, String> {
    let value = value.trim();
    if value.chars().count() > MAX_PROFILE_FIELD_CHARS {
        return Err(format!(
            "{field} is longer than {MAX_PROFILE_FIELD_CHARS} characters"
        ));
    }
    Ok((!value.is_empty()).then(|| value.to_string()))
}

/// Parses `key=value` lines (blank lines and `#` comments skipped). A value that parses as JSON
/// is taken as that JSON (`groups=["a","b"]`, `email_verified=false`), anything else as a string.
pub(super) fn parse_claim_lines(text: &str) -> Result<Map<String, Value>, String> {
    if text.len() > MAX_CLAIMS_TEXT_BYTES {
        return Err(format!("the extra claims are over {MAX_CLAIMS_TEXT_BYTES} bytes"));
    }
    let mut claims = Map::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line_number = index + 1;
        let (name, value) = line
            .split_once('=')
            .ok_or_else(|| format!("line {line_number}: expected key=value"))?;
        let name = name.trim();
        let value = value.trim();
        let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.into()));
        if claims.insert(name.to_string(), value).is_some() {
            return Err(format!("line {line_number}: claim `{name}` is given twice"));
        }
    }
    check_extra_claims(&claims)?;
    Ok(claims)
}

/// The inverse of [`parse_claim_lines`]: strings that would read back as JSON (`true`, `42`)
/// are written as JSON strings so they stay strings.
fn format_claim_lines(claims: &Map<String, Value>) -> String {
    claims
        .iter()
        .map(|(name, value)| {
            let text = match value {
                Value::String(s) if serde_json::from_str::<Value>(s).is_err() => s.clone(),
                other => other.to_string(),
            };
            format!("{name}={text}\n")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_lines_take_json_when_it_parses() {
        let claims =
            parse_claim_lines("groups=[\"a\",\"b\"]\n# comment\n\nhd = corp.example\nn=3\n").unwrap();
        assert_eq!(claims["groups"], json!(["a", "b"]));
        assert_eq!(claims["hd"], json!("corp.example"));
        assert_eq!(claims["n"], json!(3));
    }

    #[test]
    fn claim_lines_round_trip_strings_that_look_like_json() {
        let mut claims = Map::new();
        claims.insert("flag".into(), json!("true"));
        claims.insert("real".into(), json!(true));
        claims.insert("groups".into(), json!(["x"]));
        claims.insert("hd".into(), json!("corp.example"));
        let text = format_claim_lines(&claims);
        assert_eq!(parse_claim_lines(&text).unwrap(), claims);
    }

    #[test]
    fn claim_lines_refuse_bad_input() {
        assert!(
            parse_claim_lines("no equals sign")
                .unwrap_err()
                .contains("line 1")
        );
        assert!(parse_claim_lines("a=1\na=2").unwrap_err().contains("given twice"));
        assert!(
            parse_claim_lines("iss=https://evil")
                .unwrap_err()
                .contains("set by the provider")
        );
        assert!(parse_claim_lines("=x").unwrap_err().contains("claim names"));
        let many: String = (0..=MAX_EXTRA_CLAIMS).map(|i| format!("c{i}=1\n")).collect();
        assert!(parse_claim_lines(&many).unwrap_err().contains("at most"));
        let huge = format!("big={}", "x".repeat(MAX_CLAIMS_TEXT_BYTES));
        assert!(parse_claim_lines(&huge).unwrap_err().contains("bytes"));
    }

    fn fields(sub: &str, email: &str, name: &str, claims: &str) -> UserFields {
        UserFields {
            sub: sub.into(),
            email: email.into(),
            name: name.into(),
            claims: claims.into(),
        }
    }

    #[test]
    fn sub_is_checked() {
        assert!(DevUser::from_fields(&fields(" ", "", "", "")).is_err());
        assert!(DevUser::from_fields(&fields(&"s".repeat(256), "", "", "")).is_err());
        assert!(DevUser::from_fields(&fields("a\u{7}b", "", "", "")).is_err());
        let user = DevUser::from_fields(&fields(" dana ", " ", "", "")).unwrap();
        assert_eq!(user.sub, "dana");
        assert_eq!(user.email, None);
    }

    #[test]
    fn presets_survive_the_form() {
        for preset in presets() {
            assert_eq!(DevUser::from_fields(&preset.fields()).unwrap(), preset);
        }
    }

    #[test]
    fn extra_claims_override_profile_claims() {
        let user = DevUser::from_fields(&fields(
            "dana",
            "dana@example.com",
            "Dana",
            "email_verified=false",
        ))
        .unwrap();
        let claims = user.profile_claims();
        assert_eq!(claims["email"], json!("dana@example.com"));
        assert_eq!(claims["email_verified"], json!(false));
        assert_eq!(claims["name"], json!("Dana"));
    }
}
