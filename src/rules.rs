//! Claim rules in the form mod_auth_openidc uses for `Require claim`, so rules port over as they
//! are written in an Apache config:
//!
//! - `claim:value` holds when the claim equals `value`; for an array claim, when one element does.
//! - `claim~regex` holds when the claim (or one element of an array claim) matches `regex`.
//!   As in mod_auth_openidc the match is a search, not anchored: write `^...$` for a whole match.
//!
//! The claim name ends at the first `:` or `~`, so claim names containing either cannot be used.
//! Numbers and booleans compare by their JSON text (`email_verified:true`). A missing claim, an
//! object or `null` never holds.

use std::fmt;

use regex::Regex;
use serde_json::Value;

use crate::token::Claims;

/// Compiled regexes are bounded so a rule cannot make sign-in slow or memory-hungry.
const REGEX_SIZE_LIMIT: usize = 256 * 1024;

/// One parsed claim rule.
#[derive(Debug, Clone)]
pub struct Rule {
    text: String,
    claim: String,
    matcher: Matcher,
}

#[derive(Debug, Clone)]
enum Matcher {
    Equals(String),
    Matches(Regex),
}

/// Why a rule string cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RuleError {
    /// Neither `:` nor `~` separates a claim name from a value.
    #[error("rule `{0}` has no `:` (equals) or `~` (regex) after the claim name")]
    NoOperator(String),
    /// The claim name is empty.
    #[error("rule `{0}` names no claim before its operator")]
    NoClaim(String),
    /// The regular expression does not compile.
    #[error("rule `{rule}` has an invalid regex: {problem}")]
    BadRegex {
        /// The rule as written.
        rule: String,
        /// The regex compiler's message.
        problem: String,
    },
}

impl Rule {
    /// Parses a rule written as `claim:value` or `claim~regex`.
    pub fn parse(text: &str) -> Result<Rule, RuleError> {
        let split = text
            .find([':', '~'])
            .ok_or_else(|| RuleError::NoOperator(text.to_string()))?;
        let (claim, rest) = text.split_at(split);
        if claim.is_empty() {
            return Err(RuleError::NoClaim(text.to_string()));
        }
        let value = &rest[1..];
        let matcher = if rest.starts_with(':') {
            Matcher::Equals(value.to_string())
        } else {
            let regex = regex::RegexBuilder::new(value)
                .size_limit(REGEX_SIZE_LIMIT)
                .build()
                .map_err(|e| RuleError::BadRegex {
                    rule: text.to_string(),
                    problem: e.to_string(),
                })?;
            Matcher::Matches(regex)
        };
        Ok(Rule {
            text: text.to_string(),
            claim: claim.to_string(),
            matcher,
        })
    }

    /// Whether the rule holds for these claims.
    pub fn holds(&self, claims: &Claims) -> bool {
        match claims.get(&self.claim) {
            Some(Value::Array(items)) => items.iter().any(|item| self.matches_scalar(item)),
            Some(value) => self.matches_scalar(value),
            None => false,
        }
    }

    /// The claim the rule reads.
    pub fn claim(&self) -> &str {
        &self.claim
    }

    fn matches_scalar(&self, value: &Value) -> bool {
        let text = match value {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Null | Value::Array(_) | Value::Object(_) => return false,
        };
        match &self.matcher {
            Matcher::Equals(expected) => *expected == text,
            Matcher::Matches(regex) => regex.is_match(&text),
        }
    }
}

/// The rule as it was written (used in `claim_rule_denied` errors; never the claim's value).
impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl TryFrom<String> for Rule {
    type Error = RuleError;

    fn try_from(text: String) -> Result<Rule, RuleError> {
        Rule::parse(&text)
    }
}

impl<'de> serde::Deserialize<'de> for Rule {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Rule, D::Error> {
        let text = String::deserialize(deserializer)?;
        Rule::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// The first rule of `rules` that does not hold, if any.
pub fn first_unmet<'a>(rules: &'a [Rule], claims: &Claims) -> Option<&'a Rule> {
    rules.iter().find(|rule| !rule.holds(claims))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(value: Value) -> Claims {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn equality_on_a_string_claim() {
        let rule = Rule::parse("hd:example.com").unwrap();
        assert!(rule.holds(&claims(json!({"hd": "example.com"}))));
        assert!(!rule.holds(&claims(json!({"hd": "example.com.evil"}))));
        assert!(!rule.holds(&claims(json!({}))));
    }

    #[test]
    fn equality_on_an_array_claim_means_contains() {
        let rule = Rule::parse("groups:admins").unwrap();
        assert!(rule.holds(&claims(json!({"groups": ["users", "admins"]}))));
        assert!(!rule.holds(&claims(json!({"groups": ["users"]}))));
        assert!(!rule.holds(&claims(json!({"groups": [["admins"]]}))));
    }

    #[test]
    fn the_value_may_contain_the_separators() {
        let rule = Rule::parse("sub:https://login.salesforce.com/id/00D/005").unwrap();
        assert_eq!(rule.claim(), "sub");
        assert!(rule.holds(&claims(json!({"sub": "https://login.salesforce.com/id/00D/005"}))));
    }

    #[test]
    fn numbers_and_booleans_compare_by_their_json_text() {
        assert!(
            Rule::parse("email_verified:true")
                .unwrap()
                .holds(&claims(json!({"email_verified": true})))
        );
        assert!(
            !Rule::parse("email_verified:true")
                .unwrap()
                .holds(&claims(json!({"email_verified": "false"})))
        );
        assert!(
            Rule::parse("level:3")
                .unwrap()
                .holds(&claims(json!({"level": 3})))
        );
    }

    #[test]
    fn null_and_objects_never_hold() {
        let rule = Rule::parse("x~.*").unwrap();
        assert!(!rule.holds(&claims(json!({"x": null}))));
        assert!(!rule.holds(&claims(json!({"x": {"a": 1}}))));
    }

    #[test]
    fn regex_is_a_search_like_mod_auth_openidc() {
        let search = Rule::parse("email~@example\\.com").unwrap();
        assert!(search.holds(&claims(json!({"email": "a@example.com.evil.org"}))));
        let anchored = Rule::parse("email~@example\\.com$").unwrap();
        assert!(anchored.holds(&claims(json!({"email": "a@example.com"}))));
        assert!(!anchored.holds(&claims(json!({"email": "a@example.com.evil.org"}))));
    }

    #[test]
    fn regex_on_an_array_claim_matches_any_element() {
        let rule = Rule::parse("roles~^app-").unwrap();
        assert!(rule.holds(&claims(json!({"roles": ["x", "app-admin"]}))));
        assert!(!rule.holds(&claims(json!({"roles": ["x-app-admin"]}))));
    }

    #[test]
    fn malformed_rules_are_rejected() {
        assert_eq!(Rule::parse("hd").unwrap_err(), RuleError::NoOperator("hd".into()));
        assert_eq!(Rule::parse(":x").unwrap_err(), RuleError::NoClaim(":x".into()));
        assert!(matches!(
            Rule::parse("a~(").unwrap_err(),
            RuleError::BadRegex { .. }
        ));
        assert!(matches!(
            Rule::parse("a~x{100000}{100000}").unwrap_err(),
            RuleError::BadRegex { .. }
        ));
    }

    #[test]
    fn display_is_the_rule_as_written() {
        assert_eq!(Rule::parse("groups:admins").unwrap().to_string(), "groups:admins");
    }

    #[test]
    fn first_unmet_names_the_failing_rule() {
        let rules = [Rule::parse("a:1").unwrap(), Rule::parse("b:2").unwrap()];
        let found = first_unmet(&rules, &claims(json!({"a": "1", "b": "3"})));
        assert_eq!(found.map(ToString::to_string).as_deref(), Some("b:2"));
        assert!(first_unmet(&rules, &claims(json!({"a": "1", "b": "2"}))).is_none());
    }
}
