//! Claim rules: `Rule::parse` of arbitrary text and `holds` against arbitrary claims.
//!
//! Input: the rule on the first line, the claims after it. The claims are a JSON object; any
//! other JSON value, or text that is not JSON, becomes the value of the rule's own claim, so
//! the fuzzer reaches the matching code without having to guess the claim name.
//!
//! Checked: no panic; the rule prints as written and re-parses to the same claim; the claim
//! name ends at the first `:` or `~`; `claim:value` holds exactly as the README defines; an
//! equals rule and the anchored, escaped regex rule for the same value always agree;
//! `first_unmet` agrees with `holds`.
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
    check_rule_shape(&rule, rule_text);
    let claims = claims_for(&rule, claims_text);
    let holds = rule.holds(&claims);
    assert_eq!(
        first_unmet(std::slice::from_ref(&rule), &claims).is_none(),
        holds,
        "first_unmet disagrees with holds"
    );
    if let Some(value) = equals_value(rule_text) {
        assert_eq!(holds, equals_holds(&claims, rule.claim(), value), "`{rule_text}`");
        check_regex_agrees(&rule, value, &claims, holds);
    }
});

/// The parsed rule keeps its text and splits it at the first operator.
fn check_rule_shape(rule: &Rule, text: &str) {
    assert_eq!(rule.to_string(), text, "a rule must print as it was written");
    let split = text
        .find([':', '~'])
        .unwrap_or_else(|| panic!("a rule without operator parsed"));
    assert_eq!(Some(rule.claim()), text.get(..split), "claim name");
    assert!(!rule.claim().is_empty(), "a rule with an empty claim name parsed");
    let again = Rule::parse(&rule.to_string()).unwrap_or_else(|e| panic!("re-parse failed: {e}"));
    assert_eq!(again.claim(), rule.claim(), "re-parse changed the claim");
}

/// The claims to test against (see the module docs).
fn claims_for(rule: &Rule, text: &str) -> Claims {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(claims)) => claims,
        Ok(value) => Claims::from_iter([(rule.claim().to_owned(), value)]),
        Err(_) => Claims::from_iter([(rule.claim().to_owned(), Value::String(text.to_owned()))]),
    }
}

/// The value of a `claim:value` rule; `None` for a regex rule.
fn equals_value(text: &str) -> Option<&str> {
    let split = text.find([':', '~'])?;
    text.get(split..)?.strip_prefix(':')
}

/// The README's definition: the claim equals `value`, or, as an array, has an element that
/// does; numbers and booleans compare by their JSON text; objects and null never match.
fn equals_holds(claims: &Claims, claim: &str, value: &str) -> bool {
    let scalar_is = |item: &Value| match item {
        Value::String(s) => s == value,
        Value::Number(number) => number.to_string() == value,
        Value::Bool(flag) => flag.to_string() == value,
        _ => false,
    };
    match claims.get(claim) {
        Some(Value::Array(items)) => items.iter().any(scalar_is),
        Some(item) => scalar_is(item),
        None => false,
    }
}

/// `claim~^ESCAPED$` holds exactly when `claim:value` does.
fn check_regex_agrees(rule: &Rule, value: &str, claims: &Claims, holds: bool) {
    let anchored = format!("{}~^{}$", rule.claim(), escape_regex(value));
    // The size limit may refuse a long escaped value; that is no disagreement.
    if let Ok(regex_rule) = Rule::parse(&anchored) {
        assert_eq!(
            regex_rule.holds(claims),
            holds,
            "`{anchored}` disagrees with `{rule}`"
        );
    }
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
