//! `kind = "oidc"` (and the dev provider of `credbroker dev`): any OpenID Connect issuer. The
//! issuer is compared exactly as configured (OpenID Discovery §4.3), and keys and endpoints come
//! from its discovery document unless `jwks_uri` overrides the keys.

use super::{ClientEndpoints, KeyHome, KindRules, one_of_issuers};
use crate::config::{ConfigError, ProviderConfig, invalid, validate_url};
use crate::issuer::Issuer;
use crate::token::{Claims, TokenError};

/// An OpenID provider's own settings.
#[derive(Debug)]
pub(super) struct Oidc {
    /// The issuer exactly as the provider writes `iss`.
    issuer: Issuer,
}

impl Oidc {
    pub(super) fn new(issuer: Issuer) -> Oidc {
        Oidc { issuer }
    }
}

/// `issuer` is required, and a URL credbroker may fetch.
pub(crate) fn validate(name: &str, provider: &ProviderConfig) -> Result<(), ConfigError> {
    let key = format!("providers.{name}.issuer");
    match &provider.issuer {
        Some(issuer) => validate_url(&key, issuer.url()),
        None => Err(invalid(
            key,
            "is required for kind = \"oidc\"",
            "set issuer = \"https://...\"",
        )),
    }
}

impl KindRules for Oidc {
    fn check_issuer(&self, issuer: &str, _claims: &Claims) -> Result<(), TokenError> {
        one_of_issuers(&[self.issuer.as_str()], issuer)
    }

    fn accepted_issuers(&self) -> Vec<String> {
        vec![self.issuer.to_string()]
    }

    fn shown_issuer(&self) -> String {
        self.issuer.to_string()
    }

    fn key_home(&self) -> KeyHome {
        KeyHome::Discovered
    }

    fn discovery(&self) -> Option<Issuer> {
        Some(self.issuer.clone())
    }

    /// Endpoints come from discovery.
    fn fixed_endpoints(&self) -> Option<ClientEndpoints> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuer_is_compared_exactly_trailing_slash_included() {
        let issuer = Issuer::parse("https://tenant.auth0.com/").expect("issuer");
        let oidc = Oidc::new(issuer);
        assert!(
            oidc.check_issuer("https://tenant.auth0.com/", &Claims::new())
                .is_ok()
        );
        let without = oidc.check_issuer("https://tenant.auth0.com", &Claims::new());
        assert_eq!(without.unwrap_err().code(), "wrong_issuer");
    }
}
