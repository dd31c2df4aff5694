//! The bearer authorizer Lambda: an API Gateway REQUEST (or TOKEN) authorizer that verifies
//! `Authorization: Bearer <ID token>` with the broker's verifier and answers with an IAM policy
//! built from the `[authorizer]` rules, writing its metrics (allow, deny, unauthorized) as one
//! CloudWatch embedded-metric-format line after each invocation. Configuration comes from
//! `CREDBROKER_CONFIG` (TOML or JSON) or `CREDBROKER_CONFIG_FILE`, the same as the sign-in Lambda's.

use std::sync::Arc;

use credbroker::authorizer::{Authorizer, AuthorizerEvent, AuthorizerResponse};
use credbroker::telemetry::emf::EmfRecorder;
use credbroker::{config::Config, logging, verifier::Verifier};
use lambda_http::lambda_runtime::{Error, LambdaEvent, Runtime, layers::TracingLayer, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    logging::init("info", logging::Destination::Lambda);
    let metrics = EmfRecorder::from_env().install()?;
    // A bad or missing config fails the cold start with the message that names the key and the fix.
    let config = Config::from_env()?;
    let authorizer = Authorizer::new(config.require_authorizer()?);
    // No [identity_pool] needed: the authorizer never calls Cognito Identity.
    let verifier = Verifier::from_config(&config)?;
    let shared = Arc::new((verifier, authorizer));
    let handler = service_fn(move |event: LambdaEvent<AuthorizerEvent>| {
        let shared = shared.clone();
        async move {
            let (verifier, authorizer) = shared.as_ref();
            // A refusal becomes the invocation's error: API Gateway answers 401 for `Unauthorized`.
            Ok::<AuthorizerResponse, Error>(authorizer.answer(verifier, &event.payload).await?)
        }
    });
    Runtime::new(handler)
        .layer(TracingLayer::new())
        .layer(metrics)
        .run()
        .await
}
