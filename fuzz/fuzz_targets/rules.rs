//! Claim rules: `Rule::parse` of arbitrary text and `holds` against arbitrary claims.
//!
//! Input: the rule on the first line, the claims after it. The claims are a JSON object; any
//! other JSON value, or text that is not JSON, becomes the value of the claim named by the rule's
//! text up to its first `:` or `~`, so the fuzzer reaches the matching code without having to
//! guess a claim name.
//!
//! Checked: no panic; the rule prints as written and re-parses to a rule that judges alike;
//! `holds` agrees with a reference written the other way round (walking the token's claim
//! names, as mod_auth_openidc does, and keeping the longest that fits); an equals rule and the
//! anchored, escaped regex rule for the same claim and value agree; `first_unmet` agrees with
//! `holds`.
#![no_main]

use credbroker::rules::{Rule, first_unmet};
use credbroker::token::Claims;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (rule_text, claims_text) = text.split_once('\n').unwrap_or((text, ""));
    let Ok(rule) = Rule::parse(rule_text) else {
        return;
    };
    let claims = claims_for(rule_text, claims_text);
    let holds = rule.holds(&claims);
    assert_eq!(rule.to_string(), rule_text, "a rule must print as it was written");
    let again = Rule::parse(rule_text).unwrap_or_else(|e| panic!("re-parse failed: {e}"));
    assert_eq!(again.holds(&claims), holds, "re-parse judges differently");
    assert_eq!(
        first_unmet(std::slice::from_ref(&rule), &claims).is_none(),
        holds,
        "first_unmet disagrees with holds"
    );
    if let Some(expected) = reference_holds(rule_text, &claims) {
        assert_eq!(holds, expected, "`{rule_text}` disagrees with the reference");
    }
    check_regex_agrees(rule_text, &claims);
});

/// The claims to test against (see the module docs).
fn claims_for(rule: &str, text: &str) -> Claims {
    let name = &rule[..rule.find([':', '~']).unwrap_or(rule.len())];
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(claims)) => claims,
        Ok(value) => Claims::from_iter([(name.to_owned(), value)]),
        Err(_) => Claims::from_iter([(name.to_owned(), Value::String(text.to_owned()))]),
    }
}

/// The README's definition, computed from the claims' side: of the object's keys `k` such that
/// the rule starts with `k` followed by `:`, `.` or `~` (no `~` inside `k`), take the longest,
/// then compare, descend or match. `None` when the answer needs a regex (checked separately).
fn reference_holds(rule: &str, object: &Claims) -> Option<bool> {
    let names_end = rule.find('~').map_or(rule.len(), |at| at + 1);
    let fitting = object
        .iter()
        .filter(|(key, _)| {
            !key.is_empty()
                && key.len() < names_end
                && rule.starts_with(key.as_str())
                && matches!(rule.as_bytes()[key.len()], b':' | b'.' | b'~')
        })
        .max_by_key(|(key, _)| key.len());
    let Some((key, value)) = fitting else {
        return Some(false);
    };
    let rest = &rule[key.len() + 1..];
    match rule.as_bytes()[key.len()] {
        b':' => Some(equals_holds(value, rest)),
        b'.' => match value {
            Value::Object(inner) => reference_holds(rest, inner),
            _ => Some(false),
        },
        _ => None,
    }
}

/// The claim equals `value`, or, as an array, has an element that does; numbers and booleans
/// compare by their JSON text; objects and null never match.
fn equals_holds(claim: &Value, value: &str) -> bool {
    let scalar_is = |item: &Value| match item {
        Value::String(s) => s == value,
        Value::Number(number) => number.to_string() == value,
        Value::Bool(flag) => flag.to_string() == value,
        _ => false,
    };
    match claim {
        Value::Array(items) => items.iter().any(scalar_is),
        item => scalar_is(item),
    }
}

/// For a top-level `NAME:value` rule whose name is one of the claims, holds no `.`, `:` or `~`,
/// and is the only claim name the rule starts with: `NAME~^ESCAPED$` holds exactly when the
/// equals rule does.
fn check_regex_agrees(rule_text: &str, claims: &Claims) {
    let Some((name, value)) = rule_text.split_once(':') else {
        return;
    };
    let longer_name = claims
        .keys()
        .any(|key| key != name && rule_text.starts_with(key.as_str()));
    if name.contains(['.', '~']) || !claims.contains_key(name) || longer_name {
        return;
    }
    let (Ok(equals), Ok(regex)) = (
        Rule::parse(rule_text),
        Rule::parse(&format!("{name}~^{}$", escape_regex(value))),
    ) else {
        // The size limit may refuse a long escaped value; that is no disagreement.
        return;
    };
    assert_eq!(
        regex.holds(claims),
        equals.holds(claims),
        "the regex form of `{rule_text}` disagrees"
    );
}

/// `value` as a regex that matches only itself: every ASCII character but letters and digits
/// is written as `\x{..}` (plain escapes would not do: `\<` and `\>` are word boundaries).
fn escape_regex(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len() * 2);
    for c in value.chars() {
        if c.is_ascii() && !c.is_ascii_alphanumeric() {
            escaped.push_str(&format!("\\x{{{:x}}}", u32::from(c)));
        } else {
            escaped.push(c);
        }
    }
    escaped
}
