//! OpenID Connect Discovery 1.0: the provider metadata document, fetched lazily and cached.
//!
//! OWNER: helper "token+jwks". Contract (keep these signatures).

use std::sync::Arc;

use url::Url;

use crate::jwks::{JwksPolicy, KeyError};

/// The parts of a provider's metadata credbroker uses.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProviderMetadata {
    /// `issuer`; equal to the URL discovery was made for (Discovery §4.3).
    pub issuer: String,
    /// `jwks_uri`.
    pub jwks_uri: Url,
    /// `authorization_endpoint`.
    pub authorization_endpoint: Option<Url>,
    /// `token_endpoint`.
    pub token_endpoint: Option<Url>,
}

/// The metadata of one issuer, fetched at first use and kept; a failed fetch is retried no
/// sooner than the policy's cooldown, so a down IdP is not hammered.
#[derive(Debug)]
pub struct MetadataCache {
    _todo: (),
}

impl MetadataCache {
    /// A cache for `issuer`'s `/.well-known/openid-configuration`.
    pub fn new(_client: reqwest::Client, _issuer: Url, _policy: JwksPolicy) -> MetadataCache {
        todo!()
    }

    /// The metadata, fetching it when not yet known.
    pub async fn get(&self) -> Result<Arc<ProviderMetadata>, KeyError> {
        todo!()
    }
}
