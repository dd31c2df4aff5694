//! OpenID issuer identifiers, kept exactly as the provider writes them.
//!
//! OpenID Connect Core 1.0 §3.1.3.7 step 2 wants a token's `iss` to match the provider's issuer
//! *exactly*, and OpenID Connect Discovery 1.0 §4.3 wants the `issuer` of the metadata document to
//! be *identical* to the issuer URL discovery was made for. So the configured value, the
//! discovery `issuer` and the token's `iss` are one string, compared byte for byte:
//! `https://TENANT.auth0.com/` (Auth0 writes the `/`) and `https://login.salesforce.com` (no `/`)
//! are each accepted only as written. `url::Url` would normalise (it adds `/` to an empty path),
//! so an [`Issuer`] keeps its text and uses the parsed URL only for scheme and host checks.

use std::fmt;

use url::Url;

/// The discovery document's path under the issuer (Discovery §4).
const WELL_KNOWN_PATH: &str = "/.well-known/openid-configuration";

/// An issuer identifier: its exact text and the URL it parses to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issuer {
    text: String,
    url: Url,
}

impl Issuer {
    /// Reads an issuer identifier: an absolute URL with no query or fragment (OpenID Connect
    /// Core 1.0 §2, `iss`; Discovery §3, `issuer`). The text is kept as given.
    pub fn parse(text: &str) -> Result<Issuer, String> {
        let url = Url::parse(text).map_err(|e| format!("`{text}` is not a URL: {e}"))?;
        if url.query().is_some() || url.fragment().is_some() {
            return Err(format!(
                "`{text}` has a query or fragment, which an issuer never has"
            ));
        }
        if url.cannot_be_a_base() || url.host().is_none() {
            return Err(format!("`{text}` has no host"));
        }
        Ok(Issuer {
            text: text.to_string(),
            url,
        })
    }

    /// The issuer as written: what `iss` and the discovery `issuer` must equal.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The parsed URL (for scheme and host checks only; its text may differ from the issuer's).
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// Whether a token's `iss` (or a discovery document's `issuer`) names this issuer: an exact,
    /// case-sensitive comparison with no normalisation.
    pub fn is(&self, found: &str) -> bool {
        self.text == found
    }

    /// `{issuer without its trailing /}/.well-known/openid-configuration` (Discovery §4.1: "If
    /// the Issuer value contains a path component, any terminating / MUST be removed before
    /// appending /.well-known/openid-configuration").
    pub fn discovery_url(&self) -> Url {
        let base = self.text.trim_end_matches('/');
        Url::parse(&format!("{base}{WELL_KNOWN_PATH}")).expect("an issuer URL with a path appended is a URL")
    }

    /// The issuer's name in a Cognito Identity `Logins` map: the name of its IAM OIDC provider,
    /// which is the issuer URL without its scheme and without a trailing `/`. IAM drops the `/`
    /// when it names the provider (`arn:aws:iam::ACCOUNT:oidc-provider/TENANT.auth0.com` for
    /// `https://TENANT.auth0.com/`; see aws/aws-sam-cli#7432, where a key kept with its `/`
    /// names no provider), and Cognito wants exactly that name as the key
    /// (aws-amplify/amplify-flutter#3478: "without https:// prefix and trailing /").
    pub fn logins_key(&self) -> String {
        logins_key_of(&self.text)
    }
}

/// The `Logins` key of an issuer given as text (see [`Issuer::logins_key`]).
pub fn logins_key_of(issuer: &str) -> String {
    let without_scheme = issuer.split_once("://").map_or(issuer, |(_, rest)| rest);
    without_scheme.trim_end_matches('/').to_string()
}

impl fmt::Display for Issuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl<'de> serde::Deserialize<'de> for Issuer {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Issuer, D::Error> {
        let text = String::deserialize(deserializer)?;
        Issuer::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issuer(text: &str) -> Issuer {
        Issuer::parse(text).unwrap()
    }

    #[test]
    fn the_text_is_kept_exactly_as_written() {
        for text in [
            "https://tenant.auth0.com/",
            "https://login.salesforce.com",
            "https://keycloak.example.com/realms/corp",
            "https://idp.example.com/tenant/v2.0/",
        ] {
            let parsed = issuer(text);
            assert_eq!(parsed.as_str(), text);
            assert_eq!(parsed.to_string(), text);
            assert!(parsed.is(text));
        }
    }

    #[test]
    fn a_trailing_slash_makes_a_different_issuer() {
        assert!(!issuer("https://tenant.auth0.com/").is("https://tenant.auth0.com"));
        assert!(!issuer("https://tenant.auth0.com").is("https://tenant.auth0.com/"));
        assert!(!issuer("https://idp.example.com").is("https://IDP.example.com"));
    }

    #[test]
    fn discovery_drops_one_terminating_slash_before_the_well_known_path() {
        assert_eq!(
            issuer("https://tenant.auth0.com/").discovery_url().as_str(),
            "https://tenant.auth0.com/.well-known/openid-configuration"
        );
        assert_eq!(
            issuer("https://kc.example.com/realms/corp")
                .discovery_url()
                .as_str(),
            "https://kc.example.com/realms/corp/.well-known/openid-configuration"
        );
    }

    #[test]
    fn logins_keys_drop_the_scheme_and_the_trailing_slash() {
        assert_eq!(
            issuer("https://tenant.auth0.com/").logins_key(),
            "tenant.auth0.com"
        );
        assert_eq!(
            issuer("http://127.0.0.1:8787/dev-idp").logins_key(),
            "127.0.0.1:8787/dev-idp"
        );
        assert_eq!(logins_key_of("accounts.google.com"), "accounts.google.com");
    }

    #[test]
    fn queries_fragments_and_non_urls_are_refused() {
        for text in [
            "https://idp.example.com/?tenant=a",
            "https://idp.example.com/#x",
            "idp.example.com",
            "mailto:a@example.com",
            "",
        ] {
            assert!(Issuer::parse(text).is_err(), "{text}");
        }
    }
}
