//! OAuth request parameters (query strings and form bodies) read the way RFC 6749 §3.1 asks:
//! a parameter given twice is an error, and one given without a value counts as absent.

use std::collections::HashMap;

/// No OAuth request here needs more; anything beyond is refused rather than stored.
const MAX_PARAMS: usize = 64;

/// The parameters of one request.
#[derive(Debug, Default)]
pub(super) struct Params(HashMap<String, String>);

impl Params {
    /// Parses `application/x-www-form-urlencoded` bytes.
    pub(super) fn parse(encoded: &[u8]) -> Result<Params, String> {
        let mut params = HashMap::new();
        for (name, value) in url::form_urlencoded::parse(encoded) {
            if params.len() >= MAX_PARAMS {
                return Err(format!("more than {MAX_PARAMS} parameters"));
            }
            if params.insert(name.to_string(), value.into_owned()).is_some() {
                return Err(format!("parameter `{name}` is given more than once"));
            }
        }
        Ok(Params(params))
    }

    /// The parameter's value; empty counts as absent.
    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|value| !value.is_empty())
    }

    /// The parameter's value, or a message naming it.
    pub(super) fn require(&self, name: &str) -> Result<&str, String> {
        self.get(name)
            .ok_or_else(|| format!("parameter `{name}` is required"))
    }

    /// The parameter's value verbatim, empty when absent (form text fields).
    pub(super) fn text(&self, name: &str) -> &str {
        self.0.get(name).map(String::as_str).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_refused_and_empty_is_absent() {
        let params = Params::parse(b"a=1&b=&c=x%20y").unwrap();
        assert_eq!(params.get("a"), Some("1"));
        assert_eq!(params.get("b"), None);
        assert_eq!(params.text("b"), "");
        assert_eq!(params.get("c"), Some("x y"));
        assert!(params.require("d").unwrap_err().contains("`d`"));
        assert!(Params::parse(b"a=1&a=2").unwrap_err().contains("more than once"));
    }

    #[test]
    fn parameter_count_is_bounded() {
        let many: String = (0..=MAX_PARAMS).map(|i| format!("p{i}=1&")).collect();
        assert!(Params::parse(many.as_bytes()).is_err());
    }
}
