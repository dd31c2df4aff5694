//! Claim rules in the form mod_auth_openidc uses for `Require claim`, so rules port over as they
//! are written in an Apache config, including claim names that contain `:` or `/`
//! (`cognito:groups:admins`, `custom:tenant:acme`, `https://example.com/roles:admin`):
//!
//! - `NAME:value` holds when the token has a claim called `NAME` equal to `value`; for an array
//!   claim, when one element does.
//! - `NAME~regex` holds when the claim (or one element of an array claim) matches `regex`. As in
//!   mod_auth_openidc the match is a search, not anchored: write `^...$` for a whole match.
//! - `NAME.rest` descends into the object claim `NAME` and reads `rest` there, the same way
//!   (`address.country:US`, Keycloak's `realm_access.roles:admin`).
//!
//! The claim name is found the way mod_auth_openidc finds it: not by splitting the rule at its
//! first `:`, but by looking for a claim *of the token* whose real name, followed by `:`, `~` or
//! `.`, starts the rule. When several of the token's claims fit (a token with both `cognito`
//! and `cognito:groups` against `cognito:groups:admins`), the **longest name wins and only it is
//! read**; shorter names are not tried. This is stricter than mod_auth_openidc, which grants when
//! any fitting claim matches in the token's own order: there a claim `https` holding
//! `//example.com/roles:admin` would satisfy a rule meant for `https://example.com/roles`. The
//! same holds inside objects, and a literal top-level name (`realm_access.roles`) wins over the
//! path reading of the same text.
//!
//! A rule can only read the claims a token has: when the longer claim is absent (a Cognito user
//! in no group has no `cognito:groups`), a shorter fitting claim is read, as mod_auth_openidc
//! would. No provider we support issues such prefix names (`cognito`, `custom`, `https`).
//!
//! Claim names cannot contain `~`: the first `~` of a rule always ends a name (when its regex
//! compiles). So a rule whose first `~` follows no `:` is a regex rule and must compile, while in
//! `sub:https://host/~user` the `~` may just as well be part of an equals value. Numbers and
//! booleans compare by their JSON text (`email_verified:true`). A missing claim, an object
//! (other than for `.`) or `null` never holds.
//!
//! Regexes use `regex-lite`'s syntax (the `regex` crate's, less Unicode): `\d`, `\w`, `\s`, `\b`
//! and `(?i)` are ASCII-only, close to PCRE's default mode, which mod_auth_openidc's `Require claim`
//! uses, and `\p{..}` classes are not available. Matching stays linear in the claim's length; the
//! crate is already linked by the AWS SDK's endpoint rules, and `regex`'s faster engines would cost
//! the Lambda binaries about 300 KB of their 8 MB budget for rules that run once per sign-in.
//!
//! Hand-written: no crate implements mod_auth_openidc's rule language, and the matching is a few
//! map look-ups per rule (at most one per `:`/`.`/`~` position of a bounded rule).

use std::fmt;

use regex_lite::Regex;
use serde_json::Value;

use crate::token::Claims;

/// Compiled regexes are bounded so a rule cannot make sign-in slow or memory-hungry.
const REGEX_SIZE_LIMIT: usize = 256 * 1024;
/// Longest accepted rule text, in bytes: bounds the look-ups one rule can make.
pub const MAX_RULE_BYTES: usize = 1024;

/// One parsed claim rule.
#[derive(Debug, Clone)]
pub struct Rule {
    text: String,
    /// Byte offsets of every `:` and `.` before the first `~`, and of that `~` when its regex
    /// compiled: the places where a claim name may end. Ascending.
    name_ends: Vec<usize>,
    /// The regex after the first `~`, when there is one and it compiles.
    regex: Option<Regex>,
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
    /// The rule is longer than [`MAX_RULE_BYTES`].
    #[error("a rule is longer than {MAX_RULE_BYTES} bytes")]
    TooLong,
}

impl Rule {
    /// Parses a rule written as `NAME:value`, `NAME~regex` or `NAME.path...` (see the module
    /// docs for how `NAME` is found).
    pub fn parse(text: &str) -> Result<Rule, RuleError> {
        if text.len() > MAX_RULE_BYTES {
            return Err(RuleError::TooLong);
        }
        if text.starts_with([':', '~']) {
            return Err(RuleError::NoClaim(text.to_string()));
        }
        let tilde = text.find('~');
        let names_end = tilde.unwrap_or(text.len());
        let mut name_ends: Vec<usize> = text[..names_end]
            .match_indices([':', '.'])
            .map(|(at, _)| at)
            .filter(|&at| at > 0)
            .collect();
        let has_equals = name_ends.iter().any(|&at| text.as_bytes()[at] == b':');
        let regex = match tilde {
            Some(at) => match compile(&text[at + 1..]) {
                Ok(regex) => {
                    name_ends.push(at);
                    Some(regex)
                }
                // `a:x~(` is an equals rule whose value contains `~`; `a~(` can only be a regex.
                Err(_) if has_equals => None,
                Err(problem) => {
                    return Err(RuleError::BadRegex {
                        rule: text.to_string(),
                        problem,
                    });
                }
            },
            None => None,
        };
        if regex.is_none() && !has_equals {
            return Err(RuleError::NoOperator(text.to_string()));
        }
        Ok(Rule {
            text: text.to_string(),
            name_ends,
            regex,
        })
    }

    /// Whether the rule holds for these claims.
    pub fn holds(&self, claims: &Claims) -> bool {
        self.holds_in(claims, 0)
    }

    /// Reads `self.text[start..]` against one JSON object: the top-level claims, or an object
    /// claim reached through `.`.
    fn holds_in(&self, object: &Claims, start: usize) -> bool {
        let longest = self
            .name_ends
            .iter()
            .rev()
            .filter(|&&end| end > start)
            .find_map(|&end| object.get(&self.text[start..end]).map(|value| (end, value)));
        let Some((end, value)) = longest else {
            return false;
        };
        let rest = &self.text[end + 1..];
        match self.text.as_bytes()[end] {
            b':' => any_scalar(value, |text| text == rest),
            b'~' => self
                .regex
                .as_ref()
                .is_some_and(|regex| any_scalar(value, |text| regex.is_match(text))),
            _ => match value {
                Value::Object(inner) => self.holds_in(inner, end + 1),
                _ => false,
            },
        }
    }
}

fn compile(pattern: &str) -> Result<Regex, String> {
    regex_lite::RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| e.to_string())
}

/// Whether `test` holds for the claim's scalar text, or for one element of an array claim.
fn any_scalar(value: &Value, test: impl Fn(&str) -> bool) -> bool {
    match value {
        Value::Array(items) => items
            .iter()
            .any(|item| scalar_text(item).is_some_and(|text| test(&text))),
        other => scalar_text(other).is_some_and(|text| test(&text)),
    }
}

fn scalar_text(value: &Value) -> Option<std::borrow::Cow<'_, str>> {
    match value {
        Value::String(s) => Some(s.as_str().into()),
        Value::Number(n) => Some(n.to_string().into()),
        Value::Bool(b) => Some(b.to_string().into()),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
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
        assert!(rule.holds(&claims(json!({"sub": "https://login.salesforce.com/id/00D/005"}))));
        let tilde = Rule::parse("sub:https://example.com/~user").unwrap();
        assert!(tilde.holds(&claims(json!({"sub": "https://example.com/~user"}))));
        // `~(` is no regex, so this can only be an equals rule on `sub`.
        let broken_regex = Rule::parse("sub:x~(").unwrap();
        assert!(broken_regex.holds(&claims(json!({"sub": "x~("}))));
    }

    #[test]
    fn claim_names_may_contain_colons() {
        let groups = Rule::parse("cognito:groups:admins").unwrap();
        assert!(groups.holds(&claims(json!({"cognito:groups": ["users", "admins"]}))));
        assert!(!groups.holds(&claims(json!({"cognito:groups": ["users"]}))));
        let tenant = Rule::parse("custom:tenant:acme").unwrap();
        assert!(tenant.holds(&claims(json!({"custom:tenant": "acme"}))));
        assert!(!tenant.holds(&claims(json!({"custom:tenant": "acme2"}))));
        let roles = Rule::parse("https://example.com/roles:admin").unwrap();
        assert!(roles.holds(&claims(json!({"https://example.com/roles": ["admin"]}))));
        let regex = Rule::parse("https://example.com/roles~^adm").unwrap();
        assert!(regex.holds(&claims(json!({"https://example.com/roles": ["viewer", "admin"]}))));
    }

    #[test]
    fn the_longest_fitting_claim_name_wins_and_only_it_is_read() {
        let rule = Rule::parse("cognito:groups:admins").unwrap();
        // With the longer claim present, a shorter claim whose value continues the rule is not
        // read at all.
        assert!(!rule.holds(&claims(json!({
            "cognito": "groups:admins",
            "cognito:groups": ["users"]
        }))));
        assert!(rule.holds(&claims(json!({
            "cognito": "other",
            "cognito:groups": ["admins"]
        }))));
        // Without it, the shorter name is the token's only fitting claim and is read, exactly as
        // mod_auth_openidc reads it (documented in the README).
        assert!(rule.holds(&claims(json!({"cognito": "groups:admins"}))));
        let hostile = Rule::parse("https://example.com/roles:admin").unwrap();
        assert!(!hostile.holds(&claims(json!({
            "https": "//example.com/roles:admin",
            "https://example.com/roles": ["viewer"]
        }))));
    }

    #[test]
    fn nested_claims_are_read_through_dots() {
        let country = Rule::parse("address.country:US").unwrap();
        assert!(country.holds(&claims(json!({"address": {"country": "US"}}))));
        assert!(!country.holds(&claims(json!({"address": {"country": "FR"}}))));
        assert!(!country.holds(&claims(json!({"address": "country:US"}))));
        let realm = Rule::parse("realm_access.roles:admin").unwrap();
        assert!(realm.holds(&claims(json!({"realm_access": {"roles": ["user", "admin"]}}))));
        let client = Rule::parse("resource_access.my-app.roles~^edit").unwrap();
        assert!(client.holds(&claims(json!({
            "resource_access": {"my-app": {"roles": ["editor"]}}
        }))));
        // A dot that is part of a real claim name: the literal name is longer, so it wins.
        let literal = Rule::parse("realm_access.roles:admin").unwrap();
        assert!(!literal.holds(&claims(json!({
            "realm_access.roles": ["user"],
            "realm_access": {"roles": ["admin"]}
        }))));
        // Dots in values and in namespaced names are plain text.
        let domain = Rule::parse("hd:example.com").unwrap();
        assert!(domain.holds(&claims(json!({"hd": "example.com"}))));
    }

    #[test]
    fn hostile_rules_are_bounded_and_never_panic() {
        let long = format!("a:{}", "x".repeat(MAX_RULE_BYTES));
        assert_eq!(Rule::parse(&long).unwrap_err(), RuleError::TooLong);
        let many = format!("{}:v", ".:".repeat(300));
        let rule = Rule::parse(&many).unwrap();
        assert!(!rule.holds(&claims(json!({"": {"": 1}, ".": {".": 2}}))));
        for text in [
            "a.",
            "a..b:c",
            "a:",
            "a~",
            "a.:b",
            "é:ü",
            "a:b:c~d~e",
            "x.y~(a|b)",
            "::",
            "~~",
        ] {
            if let Ok(rule) = Rule::parse(text) {
                rule.holds(&claims(json!({"a": {"": {"b": "c"}}, "x": {"y": "b"}})));
            }
        }
        assert!(Rule::parse("a:").unwrap().holds(&claims(json!({"a": ""}))));
        assert!(
            Rule::parse("a~")
                .unwrap()
                .holds(&claims(json!({"a": "anything"})))
        );
        assert!(
            Rule::parse("x.y~(a|b)")
                .unwrap()
                .holds(&claims(json!({"x": {"y": "b"}})))
        );
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
    fn regex_classes_are_ascii_like_pcre_defaults() {
        let digits = Rule::parse("employee_id~^\\d+$").unwrap();
        assert!(digits.holds(&claims(json!({"employee_id": "0042"}))));
        // ARABIC-INDIC DIGIT FOUR: a Unicode `\d` would accept it, PCRE's default does not.
        assert!(!digits.holds(&claims(json!({"employee_id": "\u{664}"}))));
        let caseless = Rule::parse("hd~(?i)^EXAMPLE\\x{2e}COM$").unwrap();
        assert!(caseless.holds(&claims(json!({"hd": "example.com"}))));
        assert!(matches!(
            Rule::parse("name~\\p{Greek}").unwrap_err(),
            RuleError::BadRegex { .. }
        ));
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
        assert_eq!(
            Rule::parse("a.b").unwrap_err(),
            RuleError::NoOperator("a.b".into())
        );
        assert_eq!(Rule::parse(":x").unwrap_err(), RuleError::NoClaim(":x".into()));
        assert_eq!(Rule::parse("~x").unwrap_err(), RuleError::NoClaim("~x".into()));
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
