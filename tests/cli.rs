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
    let server = Running::start(&[
        "serve",
        "--config",
        config.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    let base = server.announced_url();

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
