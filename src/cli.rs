//! The `credbroker` command line: the dev stack (the default), `serve` for the API alone, and
//! three tools for testing without a browser — `token` (a dev ID token), `signin` (credentials,
//! also in the AWS `credential_process` shape) and `curl` (a SigV4-signed request, like awscurl).
//!
//! Every failure is one line on stderr and a non-zero exit.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::{Value, json};
use url::Url;

use crate::assets::WebFiles;
use crate::broker::Broker;
use crate::config::{Config, PoolMode};
use crate::health::{self, Readiness};
use crate::local::pool::{PoolLoad, Quotas};
use crate::local::{DevOptions, DevStack};
use crate::telemetry;

/// Requests the CLI makes never wait longer than this.
const CLI_TIMEOUT: Duration = Duration::from_secs(30);

/// credbroker: verify OpenID ID tokens and exchange them for AWS credentials.
#[derive(Debug, Parser)]
#[command(name = "credbroker", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Options of the default command, `dev`.
    #[command(flatten)]
    dev: DevArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole loop locally: broker, dev OpenID provider, local identity pool, SigV4
    /// gateway and the browser client (the default command).
    Dev(DevArgs),
    /// Run only the sign-in API with a config file (no dev stack, no dev provider).
    Serve(ServeArgs),
    /// Print an ID token from the running dev provider.
    Token(TokenArgs),
    /// Exchange an ID token for credentials at a broker.
    Signin(SigninArgs),
    /// Send a SigV4-signed request (service execute-api by default).
    Curl(CurlArgs),
}

#[derive(Debug, Args)]
struct DevArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8787")]
    listen: SocketAddr,
    /// Extra providers from a config file ([identity_pool] is not needed: the local pool replaces it).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Proxy signed requests under /api/ to this app instead of the demo routes.
    #[arg(long)]
    upstream: Option<Url>,
    /// Serve the browser client from this directory instead of the copy built into the binary
    /// (client development: edit and reload).
    #[arg(long)]
    web: Option<PathBuf>,
    /// Serve the broker, the gateway and the client under this API Gateway stage, as
    /// `sam deploy` does (/prod/auth/config, /prod/api/, /prod/web/index.html); other paths get
    /// API Gateway's 403. The dev provider and pool stay at the root.
    #[arg(long, value_parser = parse_stage)]
    stage: Option<String>,
    /// Lifetime of credentials issued by the local pool, in seconds.
    #[arg(long, default_value_t = 3600, value_parser = clap::value_parser!(u64).range(60..=43200))]
    credential_lifetime: u64,
    /// How the broker exchanges tokens: enhanced (GetId + GetCredentialsForIdentity with the
    /// provider's token) or developer (GetOpenIdTokenForDeveloperIdentity, signed).
    #[arg(long, value_enum, default_value_t = PoolModeArg::Enhanced)]
    pool_mode: PoolModeArg,
    /// Round trip the local pool adds to every answer, in milliseconds (Cognito's is ~20 ms
    /// from inside the Region).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=10_000))]
    pool_latency_ms: u64,
    /// Emulate Cognito's request-rate quotas: bare for the defaults (GetId 25/s,
    /// GetCredentialsForIdentity 200/s, GetOpenIdTokenForDeveloperIdentity 200/s), or
    /// `GetId=N,GetCredentialsForIdentity=N,GetOpenIdTokenForDeveloperIdentity=N`.
    #[arg(long, num_args = 0..=1, default_missing_value = "default", value_parser = parse_quotas)]
    pool_quota: Option<Quotas>,
}

/// `--pool-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum PoolModeArg {
    /// `identity_pool.mode = "enhanced"`.
    Enhanced,
    /// `identity_pool.mode = "developer"`.
    Developer,
}

impl From<PoolModeArg> for PoolMode {
    fn from(mode: PoolModeArg) -> PoolMode {
        match mode {
            PoolModeArg::Enhanced => PoolMode::Enhanced,
            PoolModeArg::Developer => PoolMode::Developer,
        }
    }
}

/// Longest stage name API Gateway accepts.
const MAX_STAGE_CHARS: usize = 128;

/// A stage name as API Gateway accepts it: letters, digits, `-` and `_`, at most 128 characters
/// (CreateStage's `stageName`, AWS::ApiGateway::Stage `StageName`).
fn parse_stage(text: &str) -> Result<String, String> {
    let valid = !text.is_empty()
        && text.len() <= MAX_STAGE_CHARS
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if valid {
        Ok(text.to_string())
    } else {
        Err(format!(
            "a stage name is 1 to {MAX_STAGE_CHARS} letters, digits, '-' or '_'"
        ))
    }
}

/// `--pool-quota`: `default`, or operation=rate pairs over the defaults.
fn parse_quotas(text: &str) -> Result<Quotas, String> {
    let mut quotas = Quotas::default();
    if text == "default" {
        return Ok(quotas);
    }
    for pair in text.split(',') {
        let (operation, rate) = pair
            .split_once('=')
            .ok_or_else(|| format!("`{pair}` is not OPERATION=RATE"))?;
        let rate: u32 = rate
            .trim()
            .parse()
            .ok()
            .filter(|rate| (1..=100_000).contains(rate))
            .ok_or_else(|| format!("`{rate}` is not a rate of 1..=100000 per second"))?;
        match operation.trim() {
            "GetId" => quotas.get_id = rate,
            "GetCredentialsForIdentity" => quotas.get_credentials = rate,
            "GetOpenIdTokenForDeveloperIdentity" => quotas.developer_token = rate,
            other => {
                return Err(format!(
                    "`{other}` is not GetId, GetCredentialsForIdentity or GetOpenIdTokenForDeveloperIdentity"
                ));
            }
        }
    }
    Ok(quotas)
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// The config file (TOML, or JSON as `template.yaml` renders it).
    #[arg(long, env = crate::config::CONFIG_FILE_ENV)]
    config: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Seconds a /readyz report is reused before the providers and the pool are probed again.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=300))]
    readiness_interval: u64,
}

#[derive(Debug, Args)]
struct TokenArgs {
    /// The dev provider's issuer URL.
    #[arg(long, default_value = "http://127.0.0.1:8787/dev-idp")]
    idp: Url,
    /// The token's subject.
    #[arg(long, default_value = "alice")]
    sub: String,
    /// Extra claims as key=value (value parsed as JSON when it is JSON, e.g. groups=["a","b"]).
    #[arg(long = "claim", value_name = "KEY=VALUE")]
    claims: Vec<String>,
}

#[derive(Debug, Args)]
struct SigninArgs {
    /// Provider name, as in POST /auth/signin/{provider}.
    #[arg(long, default_value = "dev")]
    provider: String,
    /// The ID token; `-` reads it from stdin.
    #[arg(long)]
    id_token: String,
    /// The broker's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8787")]
    broker: Url,
    /// Output shape.
    #[arg(long, value_enum, default_value_t = Format::Json)]
    format: Format,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    /// The broker's JSON answer.
    Json,
    /// The AWS CLI `credential_process` shape.
    Process,
}

#[derive(Debug, Args)]
struct CurlArgs {
    /// HTTP method (default GET, or POST with --data).
    #[arg(short = 'X', long = "request")]
    method: Option<String>,
    /// Extra header, `Name: value` (repeatable).
    #[arg(short = 'H', long = "header")]
    headers: Vec<String>,
    /// Request body; `@FILE` reads a file.
    #[arg(short = 'd', long = "data")]
    data: Option<String>,
    /// Signing region.
    #[arg(long, env = "AWS_REGION", default_value = "us-east-1")]
    region: String,
    /// Signing service.
    #[arg(long, default_value = "execute-api")]
    service: String,
    /// Credentials file: the JSON `credbroker signin` prints (either format). Without it,
    /// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN are used.
    #[arg(long)]
    credentials: Option<PathBuf>,
    /// The URL.
    url: Url,
}

/// What went wrong, as the one line the CLI prints.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CliError(String);

fn fail(message: impl std::fmt::Display) -> CliError {
    CliError(message.to_string())
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        None => dev(cli.dev).await,
        Some(Command::Dev(args)) => dev(args).await,
        Some(Command::Serve(args)) => serve(args).await,
        Some(Command::Token(args)) => token(args).await,
        Some(Command::Signin(args)) => signin(args).await,
        Some(Command::Curl(args)) => curl(args).await,
    }
}

/// Whether the command is a long-running server (which logs) rather than a one-shot tool.
pub fn is_server(cli: &Cli) -> bool {
    matches!(
        cli.command,
        None | Some(Command::Dev(_)) | Some(Command::Serve(_))
    )
}

async fn dev(args: DevArgs) -> Result<(), CliError> {
    let config = match &args.config {
        Some(path) => Some(Config::from_file(&path.to_string_lossy()).map_err(fail)?),
        None => None,
    };
    let options = DevOptions {
        listen: args.listen,
        config,
        upstream: args.upstream,
        web: args.web.map_or(WebFiles::Embedded, WebFiles::Dir),
        credential_lifetime: Duration::from_secs(args.credential_lifetime),
        pool_mode: args.pool_mode.into(),
        pool_load: PoolLoad {
            latency: Duration::from_millis(args.pool_latency_ms),
            quotas: args.pool_quota,
        },
        stage: args.stage,
    };
    telemetry::prometheus::install();
    let stack = DevStack::bind(options).await.map_err(fail)?;
    print_dev_banner(&stack.base_url, &stack.app_url);
    stack.serve(ctrl_c()).await.map_err(fail)?;
    eprintln!("credbroker dev stopped");
    Ok(())
}

/// `base`: the stack's origin (provider, pool); `app`: where the broker, the gateway and the
/// client are (the origin, or its `{stage}/`).
fn print_dev_banner(base: &Url, app: &Url) {
    // Under a stage the client is at {stage}/web/, as deployed; at the root otherwise.
    let client = if app == base {
        base.clone()
    } else {
        app.join("web/").expect("static path")
    };
    println!("credbroker dev stack is running. Open {client}");
    println!("  broker API      {app}auth/config");
    println!("  dev provider    {base}dev-idp/.well-known/openid-configuration");
    println!("  identity pool   {base}cognito-identity/ (Cognito Identity protocol)");
    println!("  SigV4 gateway   {app}api/whoami");
    let me = command_name();
    println!(
        "Try: {me} curl {app}api/whoami --credentials <({me} signin --broker {app} \
         --id-token \"$({me} token --idp {base}dev-idp)\")"
    );
    println!("Ctrl-C stops it.");
}

/// How to call this program again from a shell: `credbroker` when that is what the PATH finds,
/// else its full path (`cargo run` leaves it in `target/`, off the PATH), so the printed hint
/// works as written.
fn command_name() -> String {
    let Ok(me) = std::env::current_exe().and_then(std::fs::canonicalize) else {
        return "credbroker".to_string();
    };
    let on_path = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path)
            .any(|dir| std::fs::canonicalize(dir.join("credbroker")).is_ok_and(|found| found == me))
    });
    let shown = me.to_string_lossy().into_owned();
    if on_path {
        "credbroker".to_string()
    } else if shown.contains(|c: char| c.is_whitespace() || "'\"$`\\".contains(c)) {
        format!("'{}'", shown.replace('\'', "'\\''"))
    } else {
        shown
    }
}

async fn serve(args: ServeArgs) -> Result<(), CliError> {
    let config = Config::from_file(&args.config.to_string_lossy()).map_err(fail)?;
    telemetry::prometheus::install();
    let broker = Arc::new(Broker::from_config(&config).await.map_err(fail)?);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| fail(format!("cannot listen on {}: {e}", args.listen)))?;
    // The bound address, not the requested one: `--listen 127.0.0.1:0` picks a free port.
    let bound = listener.local_addr().map_err(fail)?;
    println!("credbroker API on http://{bound}/auth/config");
    let readiness = Readiness::new(broker.clone(), Duration::from_secs(args.readiness_interval));
    let app = crate::api::router(broker).merge(health::routes(Arc::new(readiness)));
    axum::serve(listener, app)
        .with_graceful_shutdown(ctrl_c())
        .await
        .map_err(fail)
}

async fn ctrl_c() {
    // If the signal handler cannot be installed the server simply runs until killed.
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

fn http_client() -> Result<reqwest::Client, CliError> {
    reqwest::Client::builder()
        .timeout(CLI_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(fail)
}

async fn token(args: TokenArgs) -> Result<(), CliError> {
    let claims = args
        .claims
        .iter()
        .map(|pair| parse_claim(pair))
        .collect::<Result<serde_json::Map<_, _>, _>>()?;
    let url = format!("{}/mint", args.idp.as_str().trim_end_matches('/'));
    let answer = post_json(&url, &json!({"sub": args.sub, "claims": claims})).await?;
    let token = answer["id_token"]
        .as_str()
        .ok_or_else(|| fail(format!("{url} answered without an id_token")))?;
    println!("{token}");
    Ok(())
}

/// `key=value`, the value taken as JSON when it parses as JSON and as a string otherwise.
fn parse_claim(pair: &str) -> Result<(String, Value), CliError> {
    let (key, value) = pair
        .split_once('=')
        .ok_or_else(|| fail(format!("--claim `{pair}` is not KEY=VALUE")))?;
    if key.is_empty() {
        return Err(fail(format!("--claim `{pair}` has an empty key")));
    }
    let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_string()));
    Ok((key.to_string(), value))
}

async fn post_json(url: &str, body: &Value) -> Result<Value, CliError> {
    let response = http_client()?
        .post(url)
        .json(body)
        .send()
        .await
        .map_err(|e| fail(format!("cannot reach {url}: {e}")))?;
    let status = response.status();
    let text = response.text().await.map_err(fail)?;
    let parsed: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    if !status.is_success() {
        let detail = parsed["detail"]
            .as_str()
            .or(parsed["error_description"].as_str())
            .unwrap_or("");
        let code = parsed["code"].as_str().or(parsed["error"].as_str()).unwrap_or("");
        return Err(fail(
            format!("{url} answered {status}: {code} {detail}")
                .trim_end()
                .to_string(),
        ));
    }
    Ok(parsed)
}

async fn signin(args: SigninArgs) -> Result<(), CliError> {
    let id_token = if args.id_token == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text).map_err(fail)?;
        text.trim().to_string()
    } else {
        args.id_token
    };
    let url = args
        .broker
        .join(&format!("auth/signin/{}", args.provider))
        .map_err(fail)?;
    let answer = post_json(url.as_str(), &json!({"id_token": id_token})).await?;
    let output = match args.format {
        Format::Json => answer,
        Format::Process => process_credentials(&answer)?,
    };
    println!("{}", serde_json::to_string_pretty(&output).map_err(fail)?);
    Ok(())
}

/// The `credential_process` shape (Version 1) of a sign-in answer.
fn process_credentials(answer: &Value) -> Result<Value, CliError> {
    let credentials = &answer["credentials"];
    let field = |name: &str| {
        credentials[name]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| fail(format!("the broker's answer has no credentials.{name}")))
    };
    Ok(json!({
        "Version": 1,
        "AccessKeyId": field("accessKeyId")?,
        "SecretAccessKey": field("secretAccessKey")?,
        "SessionToken": field("sessionToken")?,
        "Expiration": field("expiration")?,
    }))
}

/// Credentials for signing a request.
pub struct SigningCredentials {
    /// The access key id.
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: String,
    /// The session token of temporary credentials.
    pub session_token: Option<String>,
}

fn credentials_from(path: Option<&PathBuf>) -> Result<SigningCredentials, CliError> {
    let Some(path) = path else {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        return Ok(SigningCredentials {
            access_key_id: var("AWS_ACCESS_KEY_ID")
                .ok_or_else(|| fail("no --credentials and no AWS_ACCESS_KEY_ID"))?,
            secret_access_key: var("AWS_SECRET_ACCESS_KEY")
                .ok_or_else(|| fail("AWS_SECRET_ACCESS_KEY is not set"))?,
            session_token: var("AWS_SESSION_TOKEN"),
        });
    };
    let text =
        std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read {}: {e}", path.display())))?;
    let value: Value =
        serde_json::from_str(&text).map_err(|e| fail(format!("{} is not JSON: {e}", path.display())))?;
    // Either the broker's answer or the credential_process shape.
    let broker = &value["credentials"];
    let pick = |broker_name: &str, process_name: &str| {
        broker[broker_name]
            .as_str()
            .or(value[process_name].as_str())
            .map(str::to_string)
    };
    Ok(SigningCredentials {
        access_key_id: pick("accessKeyId", "AccessKeyId")
            .ok_or_else(|| fail(format!("{} holds no access key id", path.display())))?,
        secret_access_key: pick("secretAccessKey", "SecretAccessKey")
            .ok_or_else(|| fail(format!("{} holds no secret access key", path.display())))?,
        session_token: pick("sessionToken", "SessionToken"),
    })
}

async fn curl(args: CurlArgs) -> Result<(), CliError> {
    let credentials = credentials_from(args.credentials.as_ref())?;
    let body = match &args.data {
        Some(data) => match data.strip_prefix('@') {
            Some(file) => std::fs::read(file).map_err(|e| fail(format!("cannot read {file}: {e}")))?,
            None => data.clone().into_bytes(),
        },
        None => Vec::new(),
    };
    let method = args
        .method
        .clone()
        .unwrap_or_else(|| if args.data.is_some() { "POST" } else { "GET" }.to_string());
    let mut request = http::Request::builder()
        .method(method.as_str())
        .uri(args.url.as_str())
        .body(body)
        .map_err(|e| fail(format!("bad request: {e}")))?;
    for header in &args.headers {
        let (name, value) = header
            .split_once(':')
            .ok_or_else(|| fail(format!("-H `{header}` is not `Name: value`")))?;
        let name = http::HeaderName::from_bytes(name.trim().as_bytes()).map_err(fail)?;
        let value = http::HeaderValue::from_str(value.trim()).map_err(fail)?;
        request.headers_mut().append(name, value);
    }
    sign_request(
        &mut request,
        &credentials,
        &args.region,
        &args.service,
        SystemTime::now(),
    )?;
    let response = http_client()?
        .execute(reqwest::Request::try_from(request).map_err(fail)?)
        .await
        .map_err(|e| fail(format!("cannot reach {}: {e}", args.url)))?;
    let status = response.status();
    let text = response.text().await.map_err(fail)?;
    println!("{text}");
    if status.is_success() {
        Ok(())
    } else {
        Err(fail(format!("{} answered {status}", args.url)))
    }
}

/// Adds a SigV4 `Authorization` header (and `X-Amz-Date`, `X-Amz-Security-Token`) to `request`.
pub fn sign_request(
    request: &mut http::Request<Vec<u8>>,
    credentials: &SigningCredentials,
    region: &str,
    service: &str,
    now: SystemTime,
) -> Result<(), CliError> {
    let identity = aws_credential_types::Credentials::new(
        credentials.access_key_id.clone(),
        credentials.secret_access_key.clone(),
        credentials.session_token.clone(),
        None,
        "credbroker",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(now)
        .settings(SigningSettings::default())
        .build()
        .map_err(fail)?
        .into();
    let headers: Vec<(&str, &str)> = request
        .headers()
        .iter()
        .map(|(name, value)| Ok((name.as_str(), value.to_str()?)))
        .collect::<Result<_, http::header::ToStrError>>()
        .map_err(fail)?;
    let uri = request.uri().to_string();
    let signable = SignableRequest::new(
        request.method().as_str(),
        &uri,
        headers.into_iter(),
        SignableBody::Bytes(request.body()),
    )
    .map_err(fail)?;
    let (instructions, _signature) = sign(signable, &params).map_err(fail)?.into_parts();
    instructions.apply_to_request_http1x(request);
    Ok(())
}
