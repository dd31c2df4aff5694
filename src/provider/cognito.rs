//! `kind = "cognito"`: an Amazon Cognito user pool. The issuer follows from `user_pool_id`; ID
//! and access tokens share the pool's keys, so `token_use` is judged, and access tokens
//! (`accept_access_tokens`) are taken only as bearer tokens. `hosted_ui_domain` gives browser
//! clients the hosted UI's endpoints without AWS's discovery document.

use serde_json::Value;

use super::{ClientEndpoints, KeyHome, KindRules, TokenUse, expect_claim, one_of_issuers};
use url::Url;

use crate::config::{ConfigError, ProviderConfig, invalid, is_scope_token, validate_url};
use crate::issuer::Issuer;
use crate::token::{self, Claims, TokenError};

/// A Cognito user-pool provider's own settings.
#[derive(Debug)]
pub(super) struct Cognito {
    /// `https://cognito-idp.{region}.amazonaws.com/{user_pool_id}`.
    issuer: String,
    /// The scopes a bearer access token must carry, when access tokens are accepted at all
    /// (`None`: ID tokens only).
    access_token_scopes: Option<Vec<String>>,
    /// The hosted UI's origin (`https://DOMAIN`), whose `/oauth2/*` endpoints browser clients
    /// use without fetching AWS's discovery document.
    hosted_ui: Option<String>,
}

impl Cognito {
    pub(super) fn from_config(config: &ProviderConfig) -> Cognito {
        let pool = config.user_pool_id.as_deref().unwrap_or_default();
        let region = pool.split('_').next().unwrap_or_default();
        Cognito {
            issuer: format!("https://cognito-idp.{region}.amazonaws.com/{pool}"),
            access_token_scopes: config
                .accept_access_tokens
                .then(|| config.access_token_scopes.clone()),
            hosted_ui: config.hosted_ui_domain.as_deref().map(hosted_ui_origin),
        }
    }
}

/// `https://DOMAIN` for a configured hosted UI domain, written bare (`auth.example.com`) or as an
/// origin (`https://auth.example.com`; `http://` only on loopback, for tests).
pub fn hosted_ui_origin(domain: &str) -> String {
    let origin = if domain.contains("://") {
        domain.to_string()
    } else {
        format!("https://{domain}")
    };
    origin.trim_end_matches('/').to_string()
}

/// `user_pool_id` (required), the access-token settings and `hosted_ui_domain`.
pub(crate) fn validate(name: &str, provider: &ProviderConfig) -> Result<(), ConfigError> {
    validate_user_pool(name, provider)?;
    validate_extras(name, provider)
}

fn validate_user_pool(name: &str, provider: &ProviderConfig) -> Result<(), ConfigError> {
    let key = format!("providers.{name}.user_pool_id");
    let pool = regex_lite::Regex::new(r"^[a-z]{2}(-[a-z]+)+-\d_[0-9A-Za-z]+$").expect("static regex");
    match &provider.user_pool_id {
        Some(id) if pool.is_match(id) => Ok(()),
        Some(id) => Err(invalid(
            key,
            format!("`{id}` is not a user pool id"),
            "write REGION_ID, e.g. eu-west-1_AbCdEf123",
        )),
        None => Err(invalid(
            key,
            "is required for kind = \"cognito\"",
            "set user_pool_id = \"REGION_ID\"",
        )),
    }
}

fn validate_extras(name: &str, provider: &ProviderConfig) -> Result<(), ConfigError> {
    let key = |field: &str| format!("providers.{name}.{field}");
    if !provider.access_token_scopes.is_empty() && !provider.accept_access_tokens {
        return Err(invalid(
            key("access_token_scopes"),
            "is set but access tokens are not accepted",
            "set accept_access_tokens = true, or remove access_token_scopes",
        ));
    }
    if let Some(scope) = provider.access_token_scopes.iter().find(|s| !is_scope_token(s)) {
        return Err(invalid(
            key("access_token_scopes"),
            format!("`{scope}` is not a scope"),
            "list scopes as Cognito names them, e.g. \"https://api.example.com/read\" or \"openid\"",
        ));
    }
    if let Some(domain) = &provider.hosted_ui_domain {
        let origin = hosted_ui_origin(domain);
        let fix = "write the domain, e.g. myapp.auth.eu-west-1.amazoncognito.com or auth.example.com";
        let url = Url::parse(&origin)
            .map_err(|e| invalid(key("hosted_ui_domain"), format!("`{domain}`: {e}"), fix))?;
        if url.origin().ascii_serialization() != origin {
            return Err(invalid(
                key("hosted_ui_domain"),
                format!("`{domain}` is not a bare domain"),
                fix,
            ));
        }
        validate_url(&key("hosted_ui_domain"), &url)?;
    }
    Ok(())
}

impl KindRules for Cognito {
    fn check_issuer(&self, issuer: &str, _claims: &Claims) -> Result<(), TokenError> {
        one_of_issuers(std::slice::from_ref(&self.issuer), issuer)
    }

    fn accepted_issuers(&self) -> Vec<String> {
        vec![self.issuer.clone()]
    }

    fn shown_issuer(&self) -> String {
        self.issuer.clone()
    }

    fn key_home(&self) -> KeyHome {
        KeyHome::PerIssuer("/.well-known/jwks.json")
    }

    fn discovery(&self) -> Option<Issuer> {
        Issuer::parse(&self.issuer).ok()
    }

    /// The hosted UI's endpoints when its domain is configured; discovery otherwise.
    fn fixed_endpoints(&self) -> Option<ClientEndpoints> {
        let domain = self.hosted_ui.as_ref()?;
        Some(ClientEndpoints {
            issuer: self.shown_issuer(),
            authorization_endpoint: Some(format!("{domain}/oauth2/authorize")),
            token_endpoint: Some(format!("{domain}/oauth2/token")),
            public_client: true,
            // The hosted UI's `/logout` takes `client_id` and `logout_uri`, not RP-Initiated
            // Logout's parameters, so it is not offered as an end-session endpoint.
            end_session_endpoint: None,
            iss_parameter_supported: false,
        })
    }

    /// User pools sign ID and access tokens with the same keys; `token_use` is judged first,
    /// because an access token has no `aud` and `wrong_token_use` says what is wrong where
    /// `missing_claim` would not. Access tokens are accepted only as bearer tokens, only when
    /// configured, and name their app client in `client_id` instead of `aud`.
    fn check_recipient(
        &self,
        claims: &Claims,
        audiences: &[String],
        token_use: TokenUse,
    ) -> Result<(), TokenError> {
        let scopes = self
            .access_token_scopes
            .as_ref()
            .filter(|_| token_use == TokenUse::Bearer);
        let accepted: &[&str] = if scopes.is_some() {
            &["id", "access"]
        } else {
            &["id"]
        };
        expect_claim(claims, "token_use", "wrong_token_use", accepted)?;
        match scopes {
            Some(scopes) if claims.get("token_use") == Some(&Value::from("access")) => {
                let clients: Vec<&str> = audiences.iter().map(String::as_str).collect();
                expect_claim(claims, "client_id", "wrong_audience", &clients)?;
                check_scopes(claims, scopes)
            }
            Some(_) | None => token::check_audience(claims, audiences),
        }
    }
}

/// Every configured scope must be one of the space-separated values of the access token's `scope`
/// (RFC 6749 §3.3).
fn check_scopes(claims: &Claims, required: &[String]) -> Result<(), TokenError> {
    let granted: Vec<&str> = claims
        .get("scope")
        .and_then(Value::as_str)
        .map(|scope| scope.split(' ').collect())
        .unwrap_or_default();
    match required.iter().find(|scope| !granted.contains(&scope.as_str())) {
        None => Ok(()),
        Some(missing) => Err(TokenError::WrongClaim {
            code: "insufficient_scope",
            claim: "scope",
            expected: format!("a scope list containing {missing}"),
            found: token::quote_untrusted(&granted.join(" ")),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(value: Value) -> Claims {
        value.as_object().cloned().unwrap_or_default()
    }

    fn pool(scopes: Option<Vec<String>>) -> Cognito {
        Cognito {
            issuer: "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Ab1".to_string(),
            access_token_scopes: scopes,
            hosted_ui: None,
        }
    }

    const AUDIENCES: &[String] = &[];

    #[test]
    fn access_tokens_only_as_configured_bearer_tokens() {
        let audiences = vec!["app".to_string()];
        let access = claims(json!({"token_use": "access", "client_id": "app", "scope": "openid read"}));
        let accepting = pool(Some(vec!["read".to_string()]));
        assert!(
            accepting
                .check_recipient(&access, &audiences, TokenUse::Bearer)
                .is_ok()
        );
        let at_signin = accepting.check_recipient(&access, &audiences, TokenUse::SignIn);
        assert_eq!(at_signin.unwrap_err().code(), "wrong_token_use");
        let refusing = pool(None).check_recipient(&access, &audiences, TokenUse::Bearer);
        assert_eq!(refusing.unwrap_err().code(), "wrong_token_use");
        let other_client = claims(json!({"token_use": "access", "client_id": "x", "scope": "read"}));
        let error = accepting.check_recipient(&other_client, &audiences, TokenUse::Bearer);
        assert_eq!(error.unwrap_err().code(), "wrong_audience");
    }

    #[test]
    fn missing_scope_is_insufficient() {
        let audiences = vec!["app".to_string()];
        let access = claims(json!({"token_use": "access", "client_id": "app", "scope": "openid"}));
        let error = pool(Some(vec!["read".to_string()]))
            .check_recipient(&access, &audiences, TokenUse::Bearer)
            .unwrap_err();
        assert_eq!(error.code(), "insufficient_scope");
    }

    #[test]
    fn token_use_is_judged_before_the_audience() {
        let error = pool(None)
            .check_recipient(
                &claims(json!({"token_use": "access"})),
                AUDIENCES,
                TokenUse::SignIn,
            )
            .unwrap_err();
        assert_eq!(error.code(), "wrong_token_use");
    }

    #[test]
    fn hosted_ui_domain_gives_its_endpoints() {
        assert_eq!(hosted_ui_origin("auth.example.com/"), "https://auth.example.com");
        let mut cognito = pool(None);
        assert!(cognito.fixed_endpoints().is_none(), "discovery without a domain");
        cognito.hosted_ui = Some(hosted_ui_origin("auth.example.com"));
        let endpoints = cognito.fixed_endpoints().expect("hosted UI endpoints");
        assert_eq!(
            endpoints.token_endpoint.as_deref(),
            Some("https://auth.example.com/oauth2/token")
        );
    }
}
