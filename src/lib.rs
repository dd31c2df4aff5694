//! # credbroker
//!
//! A credential broker for AWS: a browser user signs in with an OpenID Connect provider (Google,
//! Microsoft Entra ID, Salesforce, a Cognito user pool or any OpenID issuer); credbroker verifies
//! the ID token itself, applies claim rules, and exchanges the token for temporary AWS credentials
//! through a Cognito identity pool (`GetId` + `GetCredentialsForIdentity`).
//!
//! The same [`api::router`] runs in AWS Lambda (`src/bin/credbroker-signin.rs`, through
//! `lambda_http`) and locally (`credbroker serve`, `credbroker dev`).
//!
//! # Layout
//!
//! - [`config`]: the one typed [`config::Config`], parsed and validated once at start-up.
//! - [`provider`]: a configured provider and its checks; one module per kind (`provider/google.rs`,
//!   `microsoft.rs`, `salesforce.rs`, `cognito.rs`, `oidc.rs`) says what that kind means for issuer,
//!   keys, endpoints, audience, subject and Logins key.
//! - [`issuer`]: issuer identifiers kept exactly as written (`iss` = discovery `issuer` =
//!   configured value) and their Cognito `Logins` key.
//! - [`discovery`]: OpenID discovery documents (`/.well-known/openid-configuration`).
//! - [`key`]: algorithms and key material: the accepted `alg`s, public keys from JWKs, key sets
//!   and which key a token's `kid`/`alg` selects.
//! - [`jwks`]: the per-issuer key cache and its fetch policy (cooldown, max-age bounds,
//!   stale-if-error, one fetch in flight); `fetch` holds the bounded HTTP GET it shares with
//!   [`discovery`].
//! - [`token`]: strict ID-token parsing, the signature check and the standard claim checks.
//! - [`untrusted`]: attacker-supplied text made safe to quote in errors and logs.
//! - [`rules`]: claim rules in mod_auth_openidc's `claim:value` / `claim~regex` form, read
//!   against the token's real claim names (`cognito:groups:admins`, `address.country:US`).
//! - [`tags`]: principal (session) tags from claims, within Cognito's and STS's bounds.
//! - [`pool`]: the [`pool::IdentityPool`] trait and its Cognito implementation.
//! - [`verifier`]: the configured providers; finds a token's provider by name or issuer.
//! - [`broker`]: one sign-in, start to end: verify, apply rules, exchange.
//! - [`authorizer`]: the bearer authorizer's IAM policies (`src/bin/credbroker-authorizer.rs`).
//! - [`identity`]: the identity assertion the broker signs for the apps behind the API;
//!   `identity::kms`, its signing key in AWS (a KMS key); `identity::extract`, the axum
//!   extractor Rust apps verify it with.
//! - [`api`] and [`error`]: the HTTP API and the only place that turns errors into statuses.
//! - [`assets`]: the browser client (`web/`) embedded in the binary, served under `/web/` by the
//!   API and at `/` by the dev stack, with its security headers.
//! - [`telemetry`]: every metric's name and labels, recorded through the `metrics` facade;
//!   `telemetry::emf`, CloudWatch embedded metric format for the Lambdas;
//!   `telemetry::prometheus`, Prometheus text (and the recorder's upkeep) for `serve` and `dev`.
//! - [`health`]: `/healthz`, `/readyz` and `/metrics` of `credbroker serve` and `dev`.
//! - [`cli`]: the `credbroker` command line (`src/main.rs` only parses and calls it).
//! - [`logging`]: log set-up for the binaries (keeps credentials out of every log line).
//! - [`local`]: the dev stack behind `credbroker dev`; nothing in it is reachable from the Lambda
//!   binaries or `serve`. `local::idp` (+ `idp/`), the dev OpenID provider (authorize, token,
//!   users, its pages) and the `oidc` provider the broker trusts it through;
//!   `local::signing_key`, the dev provider's signing keys (also the tests' and the benchmark's
//!   token minter); `local::pool`, the local identity pool (Cognito Identity
//!   protocol, quotas, developer identities); `local::gateway` (+ `gateway/`), the
//!   SigV4-verifying gateway (stage prefix, demo whoami, upstream proxy, sign-in redirect page);
//!   `local::html`, HTML helpers the dev pages share.
#![warn(missing_docs)]

pub mod api;
pub mod assets;
pub mod authorizer;
pub mod broker;
pub mod cli;
pub mod config;
pub mod discovery;
pub mod error;
pub(crate) mod fetch;
pub mod health;
pub mod identity;
pub mod issuer;
pub mod jwks;
pub mod key;
pub mod local;
pub mod logging;
pub mod pool;
pub mod provider;
pub mod rules;
pub mod tags;
pub mod telemetry;
pub mod token;
pub mod untrusted;
pub mod verifier;
