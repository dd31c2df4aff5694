//! The `credbroker` binary as a user runs it: `serve` with a good and a bad config, `dev` with
//! extra providers from `--config`, a clean exit on Ctrl-C (SIGINT), and a copy of the binary
//! run from another folder serving the browser client built into it.

#[allow(dead_code)]
mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use credbroker::local::idp::DevIdp;
use serde_json::{Map, Value, json};
use url::Url;

/// A `credbroker` child process whose stdout is read line by line.
struct Running {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Running {
    fn start(args: &[&str]) -> Running {
        Running::start_in(
            std::path::Path::new(env!("CARGO_BIN_EXE_credbroker")),
            &std::env::current_dir().unwrap(),
            args,
        )
    }

    /// Runs `program` with `cwd` as its working directory.
    fn start_in(program: &std::path::Path, cwd: &std::path::Path, args: &[&str]) -> Running {
        let mut child = Command::new(program)
            .current_dir(cwd)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the credbroker binary runs");
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Running { child, lines }
    }

    /// The first `http://` URL the command prints (where it listens).
    fn announced_url(&self) -> String {
        let url = regex::Regex::new(r"http://127\.0\.0\.1:\d+").unwrap();
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(30))
                .expect("the command announces its URL");
            if let Some(found) = url.find(&line) {
                return found.as_str().to_string();
            }
        }
    }

    /// Sends SIGINT, as Ctrl-C does, and waits (bounded) for the exit status.
    fn interrupt(mut self) -> std::process::ExitStatus {
        let sent = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success());
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait works") {
                return status;
            }
            assert!(Instant::now() < deadline, "no exit within 15 s of Ctrl-C");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Only matters when a test failed before interrupting it.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_config(name: &str, text: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("credbroker-{name}-{}.toml", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_the_api_alone_and_stops_on_ctrl_c() {
    let config = write_config(
        "serve",
        "allowed_origins = [\"https://app.example.com\"]\n\
         [identity_pool]\nid = \"eu-west-1:00000000-0000-0000-0000-000000000000\"\n\
         [providers.gws]\nkind = \"google\"\naudiences = [\"g-app\"]\n",
    );
    // Port 0: the announced URL must carry the port actually bound.
    let (server, base) = start_serve(&config, &[]);

    let config_doc: Value = reqwest::get(format!("{base}/auth/config"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(config_doc["region"], "eu-west-1");
    let names: Vec<&str> = config_doc["providers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["gws"], "serve has no dev provider");
    // The dev stack's parts do not exist here.
    for path in ["dev-idp/.well-known/openid-configuration", "api/whoami"] {
        let status = reqwest::get(format!("{base}/{path}")).await.unwrap().status();
        assert_eq!(status, 404, "{path}");
    }
    let signin = reqwest::Client::new()
        .post(format!("{base}/auth/signin/dev"))
        .json(&json!({"id_token": "a.b.c"}))
        .send()
        .await
        .unwrap();
    assert_eq!(signin.status(), 404, "no `dev` provider under serve");

    assert!(server.interrupt().success());
    std::fs::remove_file(config).ok();
}

#[test]
fn an_invalid_config_stops_start_up_with_the_key_and_the_fix() {
    let config = write_config(
        "invalid",
        "[identity_pool]\nid = \"us-east-1:00000000-0000-0000-0000-000000000000\"\n\
         [providers.corp]\nkind = \"microsoft\"\naudiences = [\"a\"]\ntenants = [\"contoso.com\"]\n",
    );
    let output = Command::new(env!("CARGO_BIN_EXE_credbroker"))
        .args([
            "serve",
            "--config",
            config.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    std::fs::remove_file(config).ok();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("providers.corp.tenants") && stderr.contains("fix:"),
        "{stderr}"
    );
}

// Multi-threaded: the corp IdP must answer while this test blocks reading the child's output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_trusts_providers_from_config_end_to_end() {
    // A second OpenID provider standing in for the company's IdP.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = Url::parse(&format!("http://{}/corp-idp", listener.local_addr().unwrap())).unwrap();
    let corp = DevIdp::new(issuer.clone());
    let app = axum::Router::new().nest("/corp-idp", corp.clone().router());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let config = write_config(
        "dev",
        &format!(
            "[identity_pool]\nid = \"us-east-1:00000000-0000-0000-0000-000000000000\"\n\
             [providers.corp]\nkind = \"oidc\"\nissuer = \"{issuer}\"\naudiences = [\"credbroker-dev\"]\n\
             require = [\"groups:staff\"]\n"
        ),
    );
    let dev = Running::start(&[
        "dev",
        "--listen",
        "127.0.0.1:0",
        "--config",
        config.to_str().unwrap(),
    ]);
    let base = dev.announced_url();
    let sign_in = |claims: Value| {
        let token = corp.mint("zoe", claims.as_object().cloned().unwrap_or_else(Map::new));
        let url = format!("{base}/auth/signin/corp");
        async move {
            let response = reqwest::Client::new()
                .post(url)
                .json(&json!({ "id_token": token }))
                .send()
                .await
                .unwrap();
            (response.status(), response.json::<Value>().await.unwrap())
        }
    };

    // Through the broker and then the local pool, which verifies the corp token again.
    let (status, body) = sign_in(json!({"groups": ["staff"]})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["provider"], "corp");
    assert_eq!(body["subject"], "zoe");
    let (status, body) = sign_in(json!({"groups": ["guests"]})).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["code"], "claim_rule_denied");

    let status = dev.interrupt();
    assert!(status.success(), "{status}");
    std::fs::remove_file(config).ok();
}

/// A `serve` config: the `corp` OpenID provider at `issuer`, the identity pool at `pool`.
fn serve_config(name: &str, issuer: &str, pool: &str) -> std::path::PathBuf {
    write_config(
        name,
        &format!(
            "[identity_pool]\nid = \"us-east-1:00000000-0000-0000-0000-000000000000\"\n\
             endpoint = \"{pool}\"\nattempt_timeout_seconds = 2\nmax_attempts = 1\n\
             [providers.corp]\nkind = \"oidc\"\nissuer = \"{issuer}\"\naudiences = [\"corp-app\"]\n"
        ),
    )
}

/// `serve` with `config` and `extra` arguments on a free port; returns it with its base URL.
fn start_serve(config: &std::path::Path, extra: &[&str]) -> (Running, String) {
    let mut args = vec![
        "serve",
        "--config",
        config.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ];
    args.extend(extra);
    let server = Running::start(&args);
    let base = server.announced_url();
    (server, base)
}

/// `serve` with `config`, readiness re-probed at most every [`READINESS_INTERVAL`].
fn start_serve_probing(config: &std::path::Path) -> (Running, String) {
    let interval = READINESS_INTERVAL.as_secs().to_string();
    start_serve(config, &["--readiness-interval", &interval])
}

async fn readyz(base: &str) -> (u16, Value) {
    let response = reqwest::get(format!("{base}/readyz")).await.unwrap();
    assert_eq!(response.headers()["cache-control"], "no-store");
    (response.status().as_u16(), response.json().await.unwrap())
}

fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|check| check["name"] == name)
        .unwrap_or_else(|| panic!("no {name} check in {report}"))
}

/// How long `serve` reuses a readiness report in these tests.
const READINESS_INTERVAL: Duration = Duration::from_secs(2);

/// Waits out the readiness interval, so the next /readyz probes again.
async fn next_readiness_probe() {
    tokio::time::sleep(READINESS_INTERVAL + Duration::from_millis(100)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_the_idp_down_and_back_and_never_hammers_it() {
    let (_key, issuer) = support::issuer_with_rsa_key().await;
    let pool =
        support::StubCognito::answering(400, support::cognito_error("NotAuthorizedException", "no")).await;
    let config = serve_config("ready", &issuer.url, &pool.endpoint);
    let (server, base) = start_serve_probing(&config);

    let live = reqwest::get(format!("{base}/healthz")).await.unwrap();
    assert_eq!(live.status(), 200);
    assert_eq!(live.json::<Value>().await.unwrap(), json!({"status": "ok"}));

    let (status, report) = readyz(&base).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["status"], "ready");
    assert_eq!(check(&report, "provider:corp")["ready"], true);
    assert_eq!(check(&report, "identity_pool")["ready"], true);
    // Asked again and again within the interval: the IdP sees no further fetch.
    let fetched = issuer.hits();
    for _ in 0..5 {
        assert_eq!(readyz(&base).await.0, 200);
    }
    assert_eq!(
        issuer.hits(),
        fetched,
        "readyz must reuse its report within the interval"
    );
    assert!(
        pool.requests().len() <= 1,
        "one pool probe at most: {}",
        pool.requests().len()
    );

    issuer.down.store(true, std::sync::atomic::Ordering::SeqCst);
    next_readiness_probe().await;
    let (status, report) = readyz(&base).await;
    assert_eq!(status, 503, "{report}");
    assert_eq!(report["status"], "not_ready");
    let corp = check(&report, "provider:corp");
    assert_eq!(corp["ready"], false);
    assert!(corp["reason"].as_str().unwrap().contains("503"), "{corp}");
    assert_eq!(check(&report, "identity_pool")["ready"], true);

    issuer.down.store(false, std::sync::atomic::Ordering::SeqCst);
    next_readiness_probe().await;
    let (status, report) = readyz(&base).await;
    assert_eq!(status, 200, "{report}");
    assert!(server.interrupt().success());
    std::fs::remove_file(config).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_names_an_unreachable_identity_pool() {
    let (_key, issuer) = support::issuer_with_rsa_key().await;
    let closed = format!("http://127.0.0.1:{}", support::free_port());
    let config = serve_config("pool-down", &issuer.url, &closed);
    let (server, base) = start_serve_probing(&config);
    let (status, report) = readyz(&base).await;
    assert_eq!(status, 503, "{report}");
    assert_eq!(check(&report, "provider:corp")["ready"], true);
    let pool = check(&report, "identity_pool");
    assert_eq!(pool["ready"], false);
    assert!(
        pool["reason"].as_str().unwrap().contains("cannot connect"),
        "{pool}"
    );
    assert!(server.interrupt().success());
    std::fs::remove_file(config).ok();
}

/// Parses Prometheus text with the Prometheus project's own Python client parser, run by
/// `$CREDBROKER_PROMETHEUS_PYTHON` (tests/run points it at the virtualenv it installs the client
/// into) or `python3`; returns the families as `[{name, type, samples: [{name, labels, value}]}]`.
fn parse_prometheus(text: &str) -> Vec<Value> {
    const PARSE: &str = "import json, sys\n\
        from prometheus_client.parser import text_string_to_metric_families\n\
        print(json.dumps([{'name': f.name, 'type': f.type, 'samples': [\n\
            {'name': s.name, 'labels': s.labels, 'value': s.value} for s in f.samples]}\n\
            for f in text_string_to_metric_families(sys.stdin.read())]))\n";
    let python = std::env::var("CREDBROKER_PROMETHEUS_PYTHON").unwrap_or_else(|_| "python3".into());
    let mut child = Command::new(python)
        .args(["-c", PARSE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "the Prometheus parser refused the exposition (or prometheus_client is missing: tests/run \
         installs it): {}\n{text}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// The value of the sample `name` whose labels include `labels`.
fn sample(families: &[Value], name: &str, labels: Value) -> Option<f64> {
    let wanted = labels.as_object().unwrap();
    families
        .iter()
        .flat_map(|family| family["samples"].as_array().unwrap())
        .find(|s| s["name"] == name && wanted.iter().all(|(k, v)| &s["labels"][k] == v))
        .map(|s| s["value"].as_f64().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_prometheus_text_a_real_parser_reads() {
    let (key, issuer) = support::issuer_with_rsa_key().await;
    let (secret, session) = (
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "FwoGZXIvYXdzEXAMPLESESSIONTOKEN0123456789",
    );
    let pool = support::StubCognito::answering(200, support::cognito_success(secret, session)).await;
    let config = serve_config("metrics", &issuer.url, &pool.endpoint);
    let (server, base) = start_serve_probing(&config);
    let good = key.sign_jwt(&json!({
        "iss": issuer.url, "aud": "corp-app", "sub": "user-1", "email": "ann@example.com",
        "iat": support::unix_now(), "exp": support::unix_now() + 600,
    }));
    let expired = key.sign_jwt(&json!({
        "iss": issuer.url, "aud": "corp-app", "sub": "user-1",
        "iat": support::unix_now() - 7200, "exp": support::unix_now() - 3600,
    }));
    assert_eq!(support::sign_in(&base, "corp", &good).await.status, 200);
    assert_eq!(support::sign_in(&base, "corp", &expired).await.status, 401);
    assert_eq!(support::sign_in(&base, "corp", &good).await.status, 200);

    let response = reqwest::get(format!("{base}/metrics")).await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4"),
        "{:?}",
        response.headers()
    );
    let text = response.text().await.unwrap();
    for secret in [
        good.as_str(),
        expired.as_str(),
        secret,
        session,
        "ann@example.com",
        "user-1",
    ] {
        assert!(
            !text.contains(secret),
            "a secret or claim value is in /metrics:\n{text}"
        );
    }
    let families = parse_prometheus(&text);
    let signins = json!({"provider": "corp", "code": "ok", "outcome": "success"});
    assert_eq!(
        sample(&families, "credbroker_signins_total", signins),
        Some(2.0),
        "{text}"
    );
    let expired_labels = json!({"provider": "corp", "code": "token_expired", "outcome": "refused"});
    assert_eq!(
        sample(&families, "credbroker_signins_total", expired_labels),
        Some(1.0)
    );
    let durations = json!({"provider": "corp", "outcome": "success"});
    assert_eq!(
        sample(
            &families,
            "credbroker_signin_duration_seconds_count",
            durations.clone()
        ),
        Some(2.0)
    );
    let all = json!({"provider": "corp", "outcome": "success", "le": "+Inf"});
    assert_eq!(
        sample(&families, "credbroker_signin_duration_seconds_bucket", all),
        Some(2.0)
    );
    for operation in ["GetId", "GetCredentialsForIdentity"] {
        let labels = json!({ "operation": operation });
        assert_eq!(
            sample(
                &families,
                "credbroker_cognito_call_duration_seconds_count",
                labels
            ),
            Some(2.0)
        );
    }
    assert_eq!(
        sample(
            &families,
            "credbroker_jwks_fetches_total",
            json!({"provider": "corp"})
        ),
        Some(1.0)
    );
    let kinds: Vec<(&str, &str)> = families
        .iter()
        .map(|f| (f["name"].as_str().unwrap(), f["type"].as_str().unwrap()))
        .collect();
    assert!(kinds.contains(&("credbroker_signins", "counter")), "{kinds:?}");
    assert!(
        kinds.contains(&("credbroker_signin_duration_seconds", "histogram")),
        "{kinds:?}"
    );
    assert!(server.interrupt().success());
    std::fs::remove_file(config).ok();
}

/// The client's files as the repository holds them (what the binary must serve byte for byte).
fn web_files() -> Vec<(String, Vec<u8>)> {
    let web = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&web)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name != "README.md")
        .map(|name| (name.clone(), std::fs::read(web.join(&name)).unwrap()))
        .collect();
    files.sort();
    files
}

async fn fetched(url: &str) -> Vec<u8> {
    let response = reqwest::get(url).await.unwrap();
    assert_eq!(response.status(), 200, "{url}");
    assert_eq!(response.headers()["x-content-type-options"], "nosniff", "{url}");
    response.bytes().await.unwrap().to_vec()
}

/// One file runs anywhere: a copy of the binary alone in an empty folder, run from there (no
/// source tree beside it or in its working directory), serves the client built into it at `/`
/// (`dev`) and under `/web/` (`serve`, as the Lambda function does), byte for byte `web/`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copied_binary_serves_the_embedded_client_from_any_folder() {
    let folder = std::env::temp_dir().join(format!("credbroker-anywhere-{}", std::process::id()));
    std::fs::create_dir_all(&folder).unwrap();
    let binary = folder.join("credbroker");
    std::fs::copy(env!("CARGO_BIN_EXE_credbroker"), &binary).unwrap();
    std::fs::write(
        folder.join("config.json"),
        r#"{"identity_pool":{"id":"eu-west-1:00000000-0000-0000-0000-000000000000"}}"#,
    )
    .unwrap();
    let files = web_files();
    assert!(files.iter().any(|(name, _)| name == "index.html"));

    let dev = Running::start_in(&binary, &folder, &["dev", "--listen", "127.0.0.1:0"]);
    let base = dev.announced_url();
    assert_eq!(
        fetched(&format!("{base}/")).await,
        files.iter().find(|f| f.0 == "index.html").unwrap().1
    );
    for (name, bytes) in &files {
        assert!(fetched(&format!("{base}/{name}")).await == *bytes, "dev /{name}");
    }
    assert!(dev.interrupt().success());

    let serve = Running::start_in(
        &binary,
        &folder,
        &["serve", "--config", "config.json", "--listen", "127.0.0.1:0"],
    );
    let base = serve.announced_url();
    assert_eq!(
        fetched(&format!("{base}/web/")).await,
        files.iter().find(|f| f.0 == "index.html").unwrap().1
    );
    for (name, bytes) in &files {
        assert!(
            fetched(&format!("{base}/web/{name}")).await == *bytes,
            "serve /web/{name}"
        );
    }
    assert!(serve.interrupt().success());
    std::fs::remove_dir_all(folder).ok();
}
