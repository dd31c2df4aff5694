//! No secret in any log line, at the most verbose level: every ID token (and its signature
//! segment), secret access key and session token seen by the tests is searched for in
//! everything logged while they ran.
//!
//! - In process: a global `tracing` subscriber at TRACE for every target (credbroker, hyper,
//!   reqwest, h2, rustls, aws_smithy_*, aws_sdk_*; `log` records bridged) writes into memory
//!   while the dev stack runs end to end (dev tokens, sign-in through the local pool via the
//!   AWS SDK, signed gateway calls, refusals), a broker signs in at moto and meets Cognito errors
//!   from a stub, and hostile tokens are refused. The subscriber uses the binaries' own filter
//!   (`credbroker::logging::filter`), which caps the two dependencies that print credentials at
//!   TRACE (aws-smithy-runtime: Cognito outputs and raw response bodies; aws-sigv4: the signed
//!   request's security token); with it, no target may print a secret.
//! - The `credbroker dev` binary with `RUST_LOG=trace`, its stderr captured, through a full
//!   sign-in and signed calls: what a user running it sees, where no target may print a secret,
//!   so the binary has to keep those dependency targets below TRACE.

#[allow(dead_code)]
mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use credbroker::cli::SigningCredentials;
use support::{
    Answer, DevClient, StubCognito, broker_at, broker_with_moto, cognito_error, cognito_success, corp_claims,
    issuer_with_rsa_key, sign_in, signing_credentials,
};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use url::Url;

/// Secrets shorter than this are too generic to search for.
const MIN_SECRET_CHARS: usize = 16;
/// How much of a leaking line a failure shows (the secret itself masked).
const SHOWN_CHARS: usize = 3000;
/// How long the binary may take to announce its URL.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Everything the in-process subscriber wrote.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Buffer {
    type Writer = Buffer;

    fn make_writer(&'a self) -> Buffer {
        self.clone()
    }
}

impl Buffer {
    fn lines(&self) -> Vec<String> {
        let bytes = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        String::from_utf8_lossy(&bytes)
            .lines()
            .map(str::to_string)
            .collect()
    }
}

/// The process-wide subscriber, installed once: the binaries' filter at TRACE (every target, the
/// credential-printing dependencies capped), span fields included, no colours, into memory.
fn captured_logs() -> &'static Buffer {
    static BUFFER: OnceLock<Buffer> = OnceLock::new();
    BUFFER.get_or_init(|| {
        let buffer = Buffer::default();
        let lines = tracing_subscriber::fmt::layer()
            .with_writer(buffer.clone())
            .with_ansi(false)
            .with_filter(credbroker::logging::filter("trace"));
        tracing_subscriber::registry()
            .with(lines)
            .try_init()
            .expect("no other subscriber in this test binary");
        buffer
    })
}

/// The secrets seen so far.
#[derive(Default)]
struct Secrets(Vec<String>);

impl Secrets {
    /// An ID token: the whole of it and its signature segment.
    fn id_token(&mut self, token: &str) {
        self.add(token);
        self.add(token.rsplit('.').next().unwrap_or_default());
    }

    /// The secret key and session token of a sign-in answer (when it succeeded).
    fn sign_in_answer(&mut self, answer: &Answer) {
        let credentials = &answer.body["credentials"];
        for field in ["secretAccessKey", "sessionToken"] {
            self.add(credentials[field].as_str().unwrap_or_default());
        }
    }

    fn add(&mut self, secret: &str) {
        if secret.len() >= MIN_SECRET_CHARS {
            self.0.push(secret.to_string());
        }
    }

    /// Lines holding a secret (the secret masked), with their target.
    fn leaks(&self, lines: &[String]) -> Vec<Leak> {
        let mut leaks = Vec::new();
        for line in lines {
            for secret in self.0.iter().filter(|secret| line.contains(secret.as_str())) {
                leaks.push(Leak {
                    target: target_of(line),
                    line: line
                        .replace(secret.as_str(), "<SECRET>")
                        .chars()
                        .take(SHOWN_CHARS)
                        .collect(),
                });
            }
        }
        leaks
    }
}

/// A log line holding a secret.
struct Leak {
    /// The `tracing` target that wrote it (`?` when the line has none).
    target: String,
    /// The line, the secret masked, cut to [`SHOWN_CHARS`].
    line: String,
}

/// The target of a `tracing_subscriber::fmt` line: the first `path::like: ` word after a space
/// (spans before it are joined by `:` without spaces).
fn target_of(line: &str) -> String {
    static TARGET: OnceLock<regex::Regex> = OnceLock::new();
    let target = TARGET.get_or_init(|| {
        regex::Regex::new(r"\s([a-z_][a-z0-9_]*(?:::[a-z0-9_]+)*): ").expect("a valid regex")
    });
    target
        .captures(line)
        .and_then(|found| found.get(1))
        .map_or_else(|| "?".to_string(), |found| found.as_str().to_string())
}

/// Leaks, one per line, each with its target.
fn report<'a>(leaks: impl IntoIterator<Item = &'a Leak>) -> String {
    leaks
        .into_iter()
        .map(|leak| format!("[{}] {}", leak.target, leak.line))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Signs in at `stack` as `sub` and makes signed gateway calls, good and bad; records secrets.
async fn exercise_dev_stack(stack: &DevClient, sub: &str, secrets: &mut Secrets) {
    let token = stack.mint(sub).await;
    secrets.id_token(&token);
    let answer = stack.sign_in("dev", &token).await;
    assert_eq!(answer.status.as_u16(), 200, "{}", answer.text);
    secrets.sign_in_answer(&answer);
    let credentials = signing_credentials(&answer.body);

    let now = SystemTime::now();
    let whoami = stack.signed_request("GET", "api/whoami", &[], b"", &credentials, now);
    assert_eq!(stack.send(whoami).await.status.as_u16(), 200);
    let echo = stack.signed_request(
        "POST",
        "api/echo",
        &[("content-type", "application/json")],
        b"{}",
        &credentials,
        now,
    );
    assert_eq!(stack.send(echo).await.status.as_u16(), 200);

    // Refusals: a stale signature, a wrong secret, no session token, a tampered ID token.
    let stale = stack.signed_request(
        "GET",
        "api/whoami",
        &[],
        b"",
        &credentials,
        now - Duration::from_secs(900),
    );
    assert_eq!(stack.send(stale).await.status.as_u16(), 403);
    let wrong_secret = SigningCredentials {
        access_key_id: credentials.access_key_id.clone(),
        secret_access_key: format!("{}x", credentials.secret_access_key),
        session_token: credentials.session_token.clone(),
    };
    let forged = stack.signed_request("GET", "api/whoami", &[], b"", &wrong_secret, now);
    assert_eq!(stack.send(forged).await.status.as_u16(), 403);
    let tokenless = SigningCredentials {
        session_token: None,
        ..wrong_secret
    };
    let request = stack.signed_request("GET", "api/whoami", &[], b"", &tokenless, now);
    assert_eq!(stack.send(request).await.status.as_u16(), 403);
    let tampered = format!("{token}A");
    assert_eq!(stack.sign_in("dev", &tampered).await.status.as_u16(), 401);
}

/// A broker over moto and over stub pools answering errors (one echoing the token back),
/// plus hostile tokens; records secrets.
async fn exercise_broker(secrets: &mut Secrets) {
    let (rsa, issuer) = issuer_with_rsa_key().await;
    let token = rsa.sign_jwt(&corp_claims(&issuer));
    secrets.id_token(&token);

    let (moto_broker, _moto) = broker_with_moto(&issuer, "").await;
    let answer = sign_in(&moto_broker, "corp", &token).await;
    assert_eq!(answer.status.as_u16(), 200, "{}", answer.text);
    secrets.sign_in_answer(&answer);

    let stub_secret = "leak-check-secret-access-key-0123456789";
    let stub_session = "leak-check-session-token-ABCDEFGHIJKLMNOP";
    secrets.add(stub_secret);
    secrets.add(stub_session);
    let answers = [
        (200, cognito_success(stub_secret, stub_session), 200),
        (
            400,
            cognito_error("NotAuthorizedException", &format!("Invalid login token {token}")),
            403,
        ),
        (
            400,
            cognito_error("ResourceNotFoundException", "IdentityPool not found"),
            502,
        ),
        (
            400,
            cognito_error("TooManyRequestsException", "Rate exceeded"),
            429,
        ),
        (500, cognito_error("InternalErrorException", "internal"), 502),
        (200, "{not json".to_string(), 502),
    ];
    for (stub_status, body, status) in answers {
        let stub = StubCognito::answering(stub_status, body).await;
        let broker = broker_at(&issuer, &stub.endpoint, "").await;
        let answer = sign_in(&broker, "corp", &token).await;
        assert_eq!(answer.status.as_u16(), status, "{}", answer.text);
    }

    let hostile = [
        format!("{token}x"),
        rsa.sign_jwt(&serde_json::json!({"iss": "https://evil.example\nforged line", "exp": 1})),
        rsa.sign_jwt_with_header(
            &serde_json::json!({"alg": "RS256", "kid": "rsa-1\nforged"}),
            &corp_claims(&issuer),
        ),
    ];
    let broker = broker_at(&issuer, "http://127.0.0.1:9", "").await;
    for token in hostile {
        secrets.id_token(&token);
        assert_eq!(sign_in(&broker, "corp", &token).await.status.as_u16(), 401);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_logged_at_trace_level_holds_a_secret() {
    let logs = captured_logs();
    let mut secrets = Secrets::default();
    let stack = DevClient::start_stack(Duration::from_secs(3600)).await;
    exercise_dev_stack(&stack, "leak-check", &mut secrets).await;
    exercise_broker(&mut secrets).await;

    let lines = logs.lines();
    // The capture must really hold the dependencies' trace output, or the check is empty.
    for target in ["credbroker", "hyper", "reqwest", "aws_smithy_runtime"] {
        assert!(
            lines.iter().any(|line| line.contains(&format!(" {target}"))),
            "nothing logged by {target}; {} lines captured",
            lines.len()
        );
    }
    let leaks = secrets.leaks(&lines);
    assert!(
        leaks.is_empty(),
        "{} of {} lines hold a secret:\n{}",
        leaks.len(),
        lines.len(),
        report(&leaks)
    );
    println!("{} lines, {} secrets, no leak", lines.len(), secrets.0.len());
}

/// `credbroker dev --listen 127.0.0.1:0` with `RUST_LOG=trace`: its base URL and stderr lines
/// (collected until it exits).
struct TracedBinary {
    child: std::process::Child,
    base: Url,
    stderr: std::thread::JoinHandle<Vec<String>>,
}

impl TracedBinary {
    fn start() -> TracedBinary {
        let mut child = Command::new(env!("CARGO_BIN_EXE_credbroker"))
            .args(["dev", "--listen", "127.0.0.1:0"])
            .env("RUST_LOG", "trace")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the credbroker binary runs");
        let stderr = child.stderr.take().expect("piped stderr");
        let stderr = std::thread::spawn(move || {
            // The binary colours its log lines; the checks read them as plain text.
            let colour = regex::Regex::new("\x1b\\[[0-9;]*m").expect("a valid regex");
            BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
                .map(|line| colour.replace_all(&line, "").into_owned())
                .collect()
        });
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let url = regex::Regex::new(r"http://127\.0\.0\.1:\d+/").expect("a valid regex");
            // Read to the end: a closed pipe would make the binary's next print fail.
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(found) = url.find(&line) {
                    // The test may have given up waiting; nothing else to do then.
                    let _ = sender.send(found.as_str().to_string());
                }
            }
        });
        let base = receiver
            .recv_timeout(START_TIMEOUT)
            .expect("credbroker dev announces its URL");
        TracedBinary {
            child,
            base: Url::parse(&base).expect("an announced URL"),
            stderr,
        }
    }

    /// Stops the process and returns everything it wrote to stderr.
    fn stop(mut self) -> Vec<String> {
        // Errors only mean it already exited.
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.stderr
            .join()
            .expect("the stderr reader ends with the process")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dev_binary_at_rust_log_trace_logs_no_secret() {
    let binary = TracedBinary::start();
    let stack = DevClient::new(binary.base.clone());
    let mut secrets = Secrets::default();
    exercise_dev_stack(&stack, "binary-leak-check", &mut secrets).await;
    let lines = binary.stop();
    assert!(
        lines.iter().any(|line| line.contains("TRACE")),
        "RUST_LOG=trace gave no trace lines: {} lines",
        lines.len()
    );
    let leaks = secrets.leaks(&lines);
    assert!(
        leaks.is_empty(),
        "{} of {} stderr lines hold a secret:\n{}",
        leaks.len(),
        lines.len(),
        report(&leaks)
    );
    println!(
        "credbroker dev: {} stderr lines, {} secrets, no leak",
        lines.len(),
        secrets.0.len()
    );
}
