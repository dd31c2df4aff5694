//! `kind = "google"`: Google accounts and Google Workspace. Fixed issuers (both forms Google
//! writes), one JWKS, fixed endpoints, the fixed Logins key `accounts.google.com`, and the
//! Workspace domain allowlist (`hosted_domains`, checked against `hd`).

use super::{ClientEndpoints, KeyHome, KindRules, expect_claim, one_of_issuers};
use crate::config::ProviderConfig;
use crate::token::{Claims, TokenError};

const ISSUERS: [&str; 2] = ["https://accounts.google.com", "accounts.google.com"];
const LOGINS_KEY: &str = "accounts.google.com";
const JWKS: &str = "https://www.googleapis.com/oauth2/v3/certs";
const AUTHORIZE: &str = "https://accounts.google.com/o/oauth2/v2/auth";
const TOKEN: &str = "https://oauth2.googleapis.com/token";

/// A Google provider's own settings.
#[derive(Debug)]
pub(super) struct Google {
    /// Allowed Workspace domains (`hd`); empty allows any account.
    hosted_domains: Vec<String>,
}

impl Google {
    pub(super) fn from_config(config: &ProviderConfig) -> Google {
        Google {
            hosted_domains: config.hosted_domains.clone(),
        }
    }
}

impl KindRules for Google {
    fn check_issuer(&self, issuer: &str, _claims: &Claims) -> Result<(), TokenError> {
        one_of_issuers(&ISSUERS, issuer)
    }

    fn accepted_issuers(&self) -> Vec<String> {
        // The scheme-less form is the same provider as the https form.
        vec![ISSUERS[0].to_string()]
    }

    fn shown_issuer(&self) -> String {
        ISSUERS[0].to_string()
    }

    fn key_home(&self) -> KeyHome {
        KeyHome::Fixed(JWKS)
    }

    fn fixed_endpoints(&self) -> Option<ClientEndpoints> {
        Some(ClientEndpoints {
            issuer: self.shown_issuer(),
            authorization_endpoint: Some(AUTHORIZE.to_string()),
            token_endpoint: Some(TOKEN.to_string()),
            // Google's token endpoint wants the client secret even with PKCE.
            public_client: false,
            ..ClientEndpoints::default()
        })
    }

    fn check_claims(&self, claims: &Claims) -> Result<(), TokenError> {
        if self.hosted_domains.is_empty() {
            return Ok(());
        }
        let domains: Vec<&str> = self.hosted_domains.iter().map(String::as_str).collect();
        expect_claim(claims, "hd", "wrong_hosted_domain", &domains)
    }

    fn logins_key(&self, _issuer: &str) -> String {
        LOGINS_KEY.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(value: serde_json::Value) -> Claims {
        value.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn both_issuer_forms_are_google_and_share_one_logins_key() {
        let google = Google {
            hosted_domains: Vec::new(),
        };
        for issuer in ISSUERS {
            assert!(google.check_issuer(issuer, &Claims::new()).is_ok());
            assert_eq!(google.logins_key(issuer), "accounts.google.com");
        }
        let other = google.check_issuer("https://accounts.google.com/", &Claims::new());
        assert_eq!(other.unwrap_err().code(), "wrong_issuer");
    }

    #[test]
    fn hosted_domains_restrict_hd() {
        let google = Google {
            hosted_domains: vec!["example.com".to_string()],
        };
        assert!(google.check_claims(&claims(json!({"hd": "example.com"}))).is_ok());
        let personal = google.check_claims(&claims(json!({}))).unwrap_err();
        assert_eq!(personal.code(), "wrong_hosted_domain");
        let any = Google {
            hosted_domains: Vec::new(),
        };
        assert!(any.check_claims(&claims(json!({}))).is_ok());
    }
}
