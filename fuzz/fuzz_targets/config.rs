//! Configuration parsing: `Config::from_toml` of arbitrary text of at most 64 KiB.
//!
//! Checked: no panic, a non-empty message for every refusal, and for every accepted
//! configuration the guarantees the README's configuration table makes (bounds, provider
//! names, required per-kind keys, acceptable URLs, claims that are never exposed).
#![no_main]

use credbroker::config::{Config, ProviderConfig, ProviderKind, is_acceptable_url};
use credbroker::issuer::Issuer;
use libfuzzer_sys::fuzz_target;

/// Real configuration files are a few KiB; this bounds the time one input can take.
const MAX_CONFIG_BYTES: usize = 64 * 1024;
const NEVER_EXPOSED_CLAIMS: [&str; 5] = ["nonce", "at_hash", "c_hash", "s_hash", "sid"];

fuzz_target!(|data: &[u8]| {
    if data.len() > MAX_CONFIG_BYTES {
        return;
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::from_toml(text) {
        Ok(config) => check_accepted(&config),
        Err(error) => assert!(!error.to_string().is_empty(), "an empty config error"),
    }
});

fn check_accepted(config: &Config) {
    let limits = &config.limits;
    assert!(
        (512..=1024 * 1024).contains(&limits.max_token_bytes),
        "max_token_bytes"
    );
    assert!(
        limits.max_body_bytes >= limits.max_token_bytes + 64,
        "max_body_bytes"
    );
    assert!(
        (1..=30).contains(&config.jwks.timeout_seconds),
        "jwks.timeout_seconds"
    );
    assert!(
        config.jwks.min_max_age_seconds <= config.jwks.max_max_age_seconds,
        "jwks max-age bounds"
    );
    // [identity_pool] is optional (the authorizer never calls Cognito Identity); when present
    // it must be within bounds.
    if let Some(pool) = &config.identity_pool {
        assert!(!pool.region().is_empty(), "identity pool region");
        assert!(
            (1..=10).contains(&pool.max_attempts),
            "identity_pool.max_attempts"
        );
        assert!(
            (1..=30).contains(&pool.attempt_timeout_seconds),
            "attempt timeout"
        );
        assert!(
            pool.endpoint.as_ref().is_none_or(is_acceptable_url),
            "pool endpoint"
        );
    }
    for origin in &config.allowed_origins {
        let parsed = url::Url::parse(origin).map(|u| u.origin().ascii_serialization());
        assert_eq!(parsed.as_deref(), Ok(origin.as_str()), "allowed origin");
    }
    for (name, provider) in &config.providers {
        check_provider(name, provider);
    }
}

fn check_provider(name: &str, provider: &ProviderConfig) {
    let name_ok = !name.is_empty()
        && name.len() <= 64
        && name != "dev"
        && !name.starts_with(['-', '_'])
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    assert!(name_ok, "provider name {name:?}");
    assert!(!provider.audiences.is_empty(), "providers.{name}.audiences");
    assert!(
        !provider
            .claims
            .iter()
            .any(|c| NEVER_EXPOSED_CLAIMS.contains(&c.as_str())),
        "providers.{name}.claims exposes session material"
    );
    let urls = provider
        .jwks_uri
        .iter()
        .chain(provider.issuer.iter().map(Issuer::url))
        .chain(provider.issuers.iter().map(Issuer::url));
    for url in urls {
        assert!(is_acceptable_url(url), "providers.{name}: {url}");
    }
    let kind = provider.kind;
    assert_eq!(
        provider.issuer.is_some(),
        kind == ProviderKind::Oidc,
        "issuer only for oidc"
    );
    if !provider.hosted_domains.is_empty() {
        assert_eq!(kind, ProviderKind::Google, "hosted_domains only for google");
    }
    if !provider.issuers.is_empty() {
        assert_eq!(kind, ProviderKind::Salesforce, "issuers only for salesforce");
    }
    assert_eq!(
        provider.user_pool_id.is_some(),
        kind == ProviderKind::Cognito,
        "user_pool_id exactly for cognito"
    );
    if kind == ProviderKind::Microsoft {
        // Exactly one of a tenant allowlist and `any_tenant = true`.
        assert_eq!(
            provider.tenants.is_empty(),
            provider.any_tenant,
            "tenants xor any_tenant"
        );
    } else {
        assert!(
            provider.tenants.is_empty() && !provider.any_tenant,
            "tenants only for microsoft"
        );
    }
}
