//! `kind = "salesforce"`: production, sandbox and My Domain hosts. Each accepted issuer keeps its
//! keys at `{issuer}/id/keys`, and the org, which Salesforce writes only inside `sub`, becomes the
//! `organization_id` claim that rules such as `organization_id:00D...` need.

use serde_json::Value;
use url::Url;

use super::{ClientEndpoints, KeyHome, KindRules, one_of_issuers};
use crate::config::{ConfigError, ProviderConfig, validate_url};
use crate::issuer::Issuer;
use crate::token::{Claims, TokenError};

const DEFAULT_ISSUERS: [&str; 2] = ["https://login.salesforce.com", "https://test.salesforce.com"];

/// A Salesforce provider's own settings.
#[derive(Debug)]
pub(super) struct Salesforce {
    /// Accepted issuers, exactly as `iss` writes them (`issuers`, else production + sandbox).
    issuers: Vec<String>,
}

impl Salesforce {
    pub(super) fn from_config(config: &ProviderConfig) -> Salesforce {
        let issuers = if config.issuers.is_empty() {
            DEFAULT_ISSUERS.map(String::from).to_vec()
        } else {
            config.issuers.iter().map(Issuer::to_string).collect()
        };
        Salesforce { issuers }
    }
}

/// Every configured issuer is a URL credbroker may fetch keys from.
pub(crate) fn validate(name: &str, provider: &ProviderConfig) -> Result<(), ConfigError> {
    for (index, issuer) in provider.issuers.iter().enumerate() {
        validate_url(&format!("providers.{name}.issuers[{index}]"), issuer.url())?;
    }
    Ok(())
}

impl KindRules for Salesforce {
    fn check_issuer(&self, issuer: &str, _claims: &Claims) -> Result<(), TokenError> {
        one_of_issuers(&self.issuers, issuer)
    }

    fn accepted_issuers(&self) -> Vec<String> {
        self.issuers.clone()
    }

    fn shown_issuer(&self) -> String {
        self.issuers.first().cloned().unwrap_or_default()
    }

    fn key_home(&self) -> KeyHome {
        KeyHome::PerIssuer("/id/keys")
    }

    fn fixed_endpoints(&self) -> Option<ClientEndpoints> {
        let issuer = self.shown_issuer();
        Some(ClientEndpoints {
            authorization_endpoint: Some(format!("{issuer}/services/oauth2/authorize")),
            token_endpoint: Some(format!("{issuer}/services/oauth2/token")),
            // Salesforce's OpenID logout endpoint (help.salesforce.com, "OpenID Connect
            // Logout"); its discovery document lists it as end_session_endpoint.
            end_session_endpoint: Some(format!("{issuer}/services/auth/idp/oidc/logout")),
            issuer,
            public_client: true,
            iss_parameter_supported: false,
        })
    }

    /// `sub` is the identity URL `https://{host}/id/{organization_id}/{user_id}`; its org and
    /// user become claims of their own, never overwriting claims the token has.
    fn add_derived_claims(&self, claims: &mut Claims) {
        let Some(sub) = claims.get("sub").and_then(Value::as_str) else {
            return;
        };
        let Ok(url) = Url::parse(sub) else { return };
        let segments: Vec<&str> = url.path_segments().map(Iterator::collect).unwrap_or_default();
        if let ["id", org, user] = segments.as_slice() {
            let (org, user) = (org.to_string(), user.to_string());
            claims.entry("organization_id").or_insert(Value::String(org));
            claims.entry("user_id").or_insert(Value::String(user));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(value: Value) -> Claims {
        value.as_object().cloned().unwrap_or_default()
    }

    fn salesforce() -> Salesforce {
        Salesforce {
            issuers: DEFAULT_ISSUERS.map(String::from).to_vec(),
        }
    }

    #[test]
    fn org_and_user_come_from_the_identity_url() {
        let mut found =
            claims(json!({"sub": "https://login.salesforce.com/id/00Dx0000000BV7z/005x00000012Q9P"}));
        salesforce().add_derived_claims(&mut found);
        assert_eq!(found["organization_id"], "00Dx0000000BV7z");
        assert_eq!(found["user_id"], "005x00000012Q9P");
    }

    #[test]
    fn derived_claims_never_overwrite() {
        let sub = "https://login.salesforce.com/id/00D/005";
        let mut own = claims(json!({"sub": sub, "organization_id": "kept"}));
        salesforce().add_derived_claims(&mut own);
        assert_eq!(own["organization_id"], "kept");
    }

    #[test]
    fn production_and_sandbox_by_default() {
        let sf = salesforce();
        assert!(
            sf.check_issuer("https://test.salesforce.com", &Claims::new())
                .is_ok()
        );
        let my_domain = sf.check_issuer("https://acme.my.salesforce.com", &Claims::new());
        assert_eq!(my_domain.unwrap_err().code(), "wrong_issuer");
    }
}
