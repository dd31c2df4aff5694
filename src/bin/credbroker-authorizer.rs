//! The bearer authorizer Lambda: an API Gateway REQUEST (or TOKEN) authorizer that verifies
//! `Authorization: Bearer <ID token>` with the broker's verifier and answers with an IAM policy
//! built from the `[authorizer]` rules. Configuration comes from `CREDBROKER_CONFIG` (TOML or JSON)
//! or `CREDBROKER_CONFIG_FILE`, the same as the sign-in Lambda's.

use credbroker::authorizer::{Authorizer, AuthorizerEvent, AuthorizerResponse};
use credbroker::{config::Config, logging, verifier::Verifier};
use lambda_http::lambda_runtime::{self, Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    logging::init("info", logging::Destination::Lambda);
    // A bad or missing config fails the cold start with the message that names the key and the fix.
    let config = Config::from_env()?;
    let authorizer = Authorizer::new(config.require_authorizer()?);
    // No [identity_pool] needed: the authorizer never calls Cognito Identity.
    let verifier = Verifier::from_config(&config)?;
    let (verifier, authorizer) = (&verifier, &authorizer);
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<AuthorizerEvent>| async move {
            // A refusal becomes the invocation's error: API Gateway answers 401 for `Unauthorized`.
            Ok::<AuthorizerResponse, Error>(authorizer.authorize(verifier, &event.payload).await?)
        },
    ))
    .await
}
