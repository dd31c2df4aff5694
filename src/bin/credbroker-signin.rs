//! The sign-in Lambda: the broker's router behind API Gateway, through `lambda_http`.
//! Configuration comes from `CREDBROKER_CONFIG` (TOML or JSON text) or `CREDBROKER_CONFIG_FILE`.

use std::sync::Arc;

use credbroker::{api, broker::Broker, config::Config, logging};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    logging::init("info", logging::Destination::Lambda);
    // A bad config fails the cold start with the message that names the key and the fix.
    let config = Config::from_env()?;
    let broker = Broker::from_config(&config).await?;
    lambda_http::run(api::router(Arc::new(broker))).await
}
