//! The sign-in Lambda: the broker's router behind API Gateway, through `lambda_http`, with its
//! CloudWatch embedded-metric-format lines of metrics written after each invocation.
//! Configuration comes from `CREDBROKER_CONFIG` (TOML or JSON text) or `CREDBROKER_CONFIG_FILE`.

use std::sync::Arc;

use credbroker::telemetry::emf::EmfRecorder;
use credbroker::{api, broker::Broker, config::Config, logging};
use lambda_http::lambda_runtime::{Runtime, layers::TracingLayer};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    logging::init("info", logging::Destination::Lambda);
    let metrics = EmfRecorder::from_env().install()?;
    // A bad config fails the cold start with the message that names the key and the fix.
    let config = Config::from_env()?;
    let broker = Broker::from_config(&config).await?;
    let handler = lambda_http::Adapter::from(api::router(Arc::new(broker)));
    Runtime::new(handler)
        .layer(TracingLayer::new())
        .layer(metrics)
        .run()
        .await
}
