//! `kind = "microsoft"`: Microsoft Entra ID (v2.0 endpoints). The issuer names the token's own
//! tenant, so it is judged against the token's `tid` and the tenant allowlist (`tenants`, or
//! `any_tenant`); the user is keyed on tenant + object id.

use super::{ClientEndpoints, KeyHome, KindRules};
use crate::config::{ConfigError, ProviderConfig, invalid};
use crate::token::{self, Claims, TokenError};

const HOST: &str = "https://login.microsoftonline.com";
const JWKS: &str = "https://login.microsoftonline.com/common/discovery/v2.0/keys";

/// An Entra provider's own settings.
#[derive(Debug)]
pub(super) struct Microsoft {
    /// Allowed tenant ids; `None` with `any_tenant` (multi-tenant apps).
    tenants: Option<Vec<String>>,
}

impl Microsoft {
    pub(super) fn from_config(config: &ProviderConfig) -> Microsoft {
        Microsoft {
            tenants: (!config.any_tenant).then(|| config.tenants.clone()),
        }
    }

    /// A single-tenant app signs in at its tenant; several tenants or any tenant use the
    /// multi-tenant `organizations` authority (work and school accounts only).
    fn authority(&self) -> &str {
        match self.tenants.as_deref() {
            Some([tenant]) => tenant,
            Some(_) | None => "organizations",
        }
    }
}

/// `tenants` (lowercase GUIDs) or `any_tenant`, exactly one of them.
pub(crate) fn validate(name: &str, provider: &ProviderConfig) -> Result<(), ConfigError> {
    let key = format!("providers.{name}.tenants");
    match (provider.tenants.is_empty(), provider.any_tenant) {
        (true, false) => {
            return Err(invalid(
                key,
                "is empty: no tenant could sign in",
                "list your Entra tenant id(s), or set any_tenant = true for a multi-tenant app",
            ));
        }
        (false, true) => {
            return Err(invalid(
                key,
                "is set together with any_tenant = true",
                "choose one: a tenant allowlist, or any_tenant = true",
            ));
        }
        _ => {}
    }
    let guid = regex_lite::Regex::new(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
        .expect("static regex");
    match provider.tenants.iter().find(|t| !guid.is_match(t)) {
        Some(tenant) => Err(invalid(
            key,
            format!("`{tenant}` is not a tenant id"),
            "use the Directory (tenant) ID GUID in lowercase, not a domain name",
        )),
        None => Ok(()),
    }
}

impl KindRules for Microsoft {
    /// Entra ID v2.0: `iss` is `https://login.microsoftonline.com/{tid}/v2.0`, and `{tid}` must be
    /// the token's own `tid` — otherwise a token from one tenant could claim another's issuer.
    fn check_issuer(&self, issuer: &str, claims: &Claims) -> Result<(), TokenError> {
        let tid = token::string_claim(claims, "tid")?;
        let expected = format!("{HOST}/{tid}/v2.0");
        if issuer != expected {
            return Err(TokenError::WrongIssuer {
                expected,
                found: token::quote_untrusted(issuer),
            });
        }
        match &self.tenants {
            Some(allowed) if !allowed.iter().any(|t| t == tid) => Err(TokenError::WrongClaim {
                code: "wrong_tenant",
                claim: "tid",
                expected: allowed.join(" or "),
                found: token::quote_untrusted(tid),
            }),
            Some(_) | None => Ok(()),
        }
    }

    /// The allowlisted tenants' issuers; `any_tenant` has no list to give.
    fn accepted_issuers(&self) -> Vec<String> {
        let tenants = self.tenants.as_deref().unwrap_or_default();
        tenants.iter().map(|tid| format!("{HOST}/{tid}/v2.0")).collect()
    }

    fn shown_issuer(&self) -> String {
        format!("{HOST}/{}/v2.0", self.authority())
    }

    fn key_home(&self) -> KeyHome {
        KeyHome::Fixed(JWKS)
    }

    fn fixed_endpoints(&self) -> Option<ClientEndpoints> {
        let tenant = self.authority();
        Some(ClientEndpoints {
            issuer: self.shown_issuer(),
            authorization_endpoint: Some(format!("{HOST}/{tenant}/oauth2/v2.0/authorize")),
            token_endpoint: Some(format!("{HOST}/{tenant}/oauth2/v2.0/token")),
            // The v2.0 logout endpoint, as the tenant's discovery document publishes it.
            end_session_endpoint: Some(format!("{HOST}/{tenant}/oauth2/v2.0/logout")),
            public_client: true,
            iss_parameter_supported: false,
        })
    }

    /// Microsoft's `sub` is pairwise per application and `email` is mutable and unverified, so
    /// Entra users are keyed on tenant + object id.
    fn subject(&self, claims: &Claims) -> Result<String, TokenError> {
        let tid = token::string_claim(claims, "tid")?;
        let oid = token::string_claim(claims, "oid")?;
        Ok(format!("{tid}/{oid}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(value: serde_json::Value) -> Claims {
        value.as_object().cloned().unwrap_or_default()
    }

    const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
    const OTHER: &str = "00000000-0000-0000-0000-000000000001";

    fn only(tenant: &str) -> Microsoft {
        Microsoft {
            tenants: Some(vec![tenant.to_string()]),
        }
    }

    #[test]
    fn issuer_must_match_the_tokens_own_tenant() {
        let issuer = format!("{HOST}/{TENANT}/v2.0");
        assert!(
            only(TENANT)
                .check_issuer(&issuer, &claims(json!({"tid": TENANT})))
                .is_ok()
        );
        let any = Microsoft { tenants: None };
        let lying = any
            .check_issuer(&issuer, &claims(json!({"tid": OTHER})))
            .unwrap_err();
        assert_eq!(lying.code(), "wrong_issuer");
    }

    #[test]
    fn tenant_outside_the_allowlist_is_refused() {
        let issuer = format!("{HOST}/{OTHER}/v2.0");
        let error = only(TENANT)
            .check_issuer(&issuer, &claims(json!({"tid": OTHER})))
            .unwrap_err();
        assert_eq!(error.code(), "wrong_tenant");
        let any = Microsoft { tenants: None };
        assert!(any.check_issuer(&issuer, &claims(json!({"tid": OTHER}))).is_ok());
    }

    #[test]
    fn without_tid_is_refused() {
        let issuer = format!("{HOST}/{TENANT}/v2.0");
        let error = only(TENANT)
            .check_issuer(&issuer, &claims(json!({})))
            .unwrap_err();
        assert_eq!(error.code(), "missing_claim");
    }

    #[test]
    fn one_tenant_signs_in_at_its_tenant_several_at_organizations() {
        assert!(only(TENANT).shown_issuer().contains(TENANT));
        let two = Microsoft {
            tenants: Some(vec![TENANT.to_string(), OTHER.to_string()]),
        };
        assert_eq!(two.shown_issuer(), format!("{HOST}/organizations/v2.0"));
        assert_eq!(two.accepted_issuers().len(), 2);
        assert!(Microsoft { tenants: None }.accepted_issuers().is_empty());
    }

    #[test]
    fn subject_is_tenant_and_object_id() {
        let subject = only(TENANT).subject(&claims(json!({"tid": TENANT, "oid": "o1", "sub": "s"})));
        assert_eq!(subject.unwrap(), format!("{TENANT}/o1"));
    }
}
