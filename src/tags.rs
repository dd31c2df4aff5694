//! Principal tags: session tags that the broker derives from a verified token's claims and sends
//! with `GetOpenIdTokenForDeveloperIdentity` (developer pool mode), so IAM policies can condition
//! on `aws:PrincipalTag/NAME` — e.g. allow `/api/admin/*` only for members of `admins`.
//!
//! # Bounds
//!
//! Cognito's API model bounds `PrincipalTags` to 50 entries, tag names to 1..=128 characters
//! and values to 1..=256 (`PrincipalTagID`, `PrincipalTagValue` in the Cognito Identity service
//! model, as shipped in botocore's `cognito-identity/2014-06-30/service-2.json`); STS, which
//! finally receives them as session tags, allows letters, digits, white space and `_.:/=+-@`
//! and reserves the `aws:` prefix. A name outside these bounds is a configuration error.
//!
//! # Values from claims
//!
//! A tag whose value would break a bound is left out rather than cut or rewritten: a missing
//! tag makes an IAM condition on it fail (no access), while a truncated one could match a
//! condition it should not. Strings are taken as they are, numbers and booleans as their JSON
//! text, and arrays of such (e.g. `groups`) as their members between colons, `:admins:staff:`,
//! so that `StringLike "*:admins:*"` matches exactly the member `admins`; members that contain
//! `:` or a character STS refuses are dropped. Objects and `null` give no tag.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::token::Claims;

/// Most principal tags per request (Cognito's `PrincipalTags` map, STS's session tags).
pub const MAX_PRINCIPAL_TAGS: usize = 50;
/// Longest tag name, in characters.
pub const MAX_TAG_KEY_CHARS: usize = 128;
/// Longest tag value, in characters.
pub const MAX_TAG_VALUE_CHARS: usize = 256;
/// What separates (and surrounds) the members of an array claim in a tag value.
pub const MEMBER_SEPARATOR: char = ':';

/// `principal_tags = { tag = "claim" }`: tag name → the claim its value comes from.
pub type PrincipalTagMap = BTreeMap<String, String>;

/// Tag name → value, as sent to Cognito.
pub type PrincipalTags = BTreeMap<String, String>;

/// Whether `c` may appear in an STS session tag name or value.
fn is_tag_char(c: char) -> bool {
    c.is_alphanumeric() || c.is_whitespace() || "_.:/=+-@".contains(c)
}

/// Checks a configured map against Cognito's and STS's bounds; the problem, if any.
pub fn validate_map(map: &PrincipalTagMap) -> Result<(), String> {
    if map.len() > MAX_PRINCIPAL_TAGS {
        return Err(format!("has {} tags, over {MAX_PRINCIPAL_TAGS}", map.len()));
    }
    for (tag, claim) in map {
        let length = tag.chars().count();
        if length == 0 || length > MAX_TAG_KEY_CHARS || !tag.chars().all(is_tag_char) {
            return Err(format!("`{}` is not a valid tag name", tag.escape_debug()));
        }
        if tag.to_ascii_lowercase().starts_with("aws:") {
            return Err(format!("`{tag}` uses the reserved aws: prefix"));
        }
        if claim.is_empty() {
            return Err(format!("tag `{tag}` names no claim"));
        }
    }
    Ok(())
}

/// The tags `map` gives for `claims`; tags whose claim is missing or whose value breaks a bound
/// are left out (see the [module documentation](self)).
pub fn from_claims(map: &PrincipalTagMap, claims: &Claims) -> PrincipalTags {
    map.iter()
        .filter_map(|(tag, claim)| {
            let value = claims.get(claim).and_then(tag_value);
            if value.is_none() && claims.contains_key(claim) {
                tracing::debug!(tag, claim, "claim gives no usable principal tag value");
            }
            value.map(|value| (tag.clone(), value))
        })
        .collect()
}

/// The tag value of one claim, within bounds, or `None`.
fn tag_value(claim: &Value) -> Option<String> {
    let value = match claim {
        Value::Array(members) => {
            let kept: Vec<String> = members
                .iter()
                .filter_map(scalar_text)
                .filter(|member| !member.is_empty() && !member.contains(MEMBER_SEPARATOR))
                .filter(|member| member.chars().all(is_tag_char))
                .collect();
            if kept.is_empty() {
                return None;
            }
            let separator = MEMBER_SEPARATOR.to_string();
            format!("{separator}{}{separator}", kept.join(&separator))
        }
        scalar => scalar_text(scalar)?,
    };
    let length = value.chars().count();
    let usable = (1..=MAX_TAG_VALUE_CHARS).contains(&length) && value.chars().all(is_tag_char);
    usable.then_some(value)
}

/// The text of a string, number or boolean.
fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(pairs: &[(&str, &str)]) -> PrincipalTagMap {
        pairs
            .iter()
            .map(|(tag, claim)| (tag.to_string(), claim.to_string()))
            .collect()
    }

    fn claims(value: Value) -> Claims {
        value.as_object().cloned().expect("test claims are an object")
    }

    #[test]
    fn strings_numbers_and_booleans_become_values() {
        let tags = from_claims(
            &map(&[
                ("dept", "department"),
                ("level", "level"),
                ("verified", "email_verified"),
            ]),
            &claims(json!({"department": "R&D Paris", "level": 3, "email_verified": true})),
        );
        // `&` is not a tag character: that tag is left out rather than rewritten.
        assert_eq!(
            tags,
            PrincipalTags::from([("level".into(), "3".into()), ("verified".into(), "true".into()),])
        );
        let plain = from_claims(
            &map(&[("dept", "department")]),
            &claims(json!({"department": "R-D Paris"})),
        );
        assert_eq!(plain["dept"], "R-D Paris");
    }

    #[test]
    fn arrays_become_colon_delimited_members_without_unusable_ones() {
        let tags = from_claims(
            &map(&[("groups", "groups")]),
            &claims(json!({"groups": ["admins", "a:b", "", "staff", {"x": 1}, "bad*char"]})),
        );
        assert_eq!(tags["groups"], ":admins:staff:");
        let none = from_claims(&map(&[("groups", "groups")]), &claims(json!({"groups": ["a:b"]})));
        assert!(none.is_empty());
    }

    #[test]
    fn values_over_the_bound_missing_claims_and_objects_give_no_tag() {
        let long = "x".repeat(MAX_TAG_VALUE_CHARS + 1);
        let exact = "y".repeat(MAX_TAG_VALUE_CHARS);
        let tags = from_claims(
            &map(&[
                ("long", "long"),
                ("exact", "exact"),
                ("gone", "missing"),
                ("obj", "obj"),
                ("empty", "empty"),
            ]),
            &claims(json!({"long": long, "exact": exact, "obj": {"a": 1}, "empty": "", "nil": null})),
        );
        assert_eq!(tags.keys().collect::<Vec<_>>(), ["exact"]);
        let many_groups: Vec<String> = (0..100).map(|i| format!("group-{i}")).collect();
        let too_long = from_claims(
            &map(&[("groups", "groups")]),
            &claims(json!({ "groups": many_groups })),
        );
        assert!(
            too_long.is_empty(),
            "an over-long member list is left out, not cut"
        );
    }

    #[test]
    fn configured_maps_are_bounded() {
        assert!(validate_map(&map(&[("groups", "groups"), ("dept", "department")])).is_ok());
        let too_many: PrincipalTagMap = (0..=MAX_PRINCIPAL_TAGS)
            .map(|i| (format!("t{i}"), "sub".to_string()))
            .collect();
        assert!(validate_map(&too_many).unwrap_err().contains("over 50"));
        for bad in [
            "",
            "aws:foo",
            "AWS:Foo",
            "a*b",
            &"k".repeat(MAX_TAG_KEY_CHARS + 1),
        ] {
            assert!(validate_map(&map(&[(bad, "sub")])).is_err(), "{bad}");
        }
        assert!(
            validate_map(&map(&[("ok", "")]))
                .unwrap_err()
                .contains("names no claim")
        );
    }
}
