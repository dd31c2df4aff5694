//! The servers under test, each its own child process of the release `credbroker` binary so its
//! memory is its own: the dev stack (`credbroker dev`) and the broker alone (`credbroker serve`)
//! using a dev stack as its OpenID provider and identity pool. Children are killed when dropped.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use credbroker::local::DEV_POOL_ID;
use credbroker::local::idp::DEV_CLIENT_ID;

/// Longest wait for a server to start answering.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// Pause between readiness probes.
const PROBE_INTERVAL: Duration = Duration::from_millis(1);

/// Where the release binary is and where its logs go.
#[derive(Debug, Clone)]
pub struct Launcher {
    /// The `credbroker` binary.
    pub binary: PathBuf,
    /// Directory for server logs (stderr) and generated configs.
    pub work_dir: PathBuf,
}

/// A running server process.
pub struct Server {
    child: Child,
    /// Its origin with a trailing slash, e.g. `http://127.0.0.1:41234/`.
    pub base: String,
}

impl Server {
    /// The server's current and peak resident memory.
    pub fn memory(&self) -> Result<Memory, String> {
        Memory::of(self.child.id())
    }

    /// The sign-in URL of `provider`.
    pub fn signin_url(&self, provider: &str) -> String {
        format!("{}auth/signin/{provider}", self.base)
    }
}

impl Launcher {
    /// Starts `credbroker dev` on a free loopback port and returns once it printed its origin
    /// (it prints after binding, so connections are accepted from then on).
    pub async fn dev(&self, name: &str) -> Result<Server, String> {
        self.dev_with(name, &[]).await
    }

    /// [`Launcher::dev`] with extra `credbroker dev` arguments (pool mode, latency, quotas).
    pub async fn dev_with(&self, name: &str, extra: &[&str]) -> Result<Server, String> {
        let mut command = self.command(name)?;
        command.args(["dev", "--listen", "127.0.0.1:0"]).args(extra);
        let mut server = Server {
            child: command
                .stdout(Stdio::piped())
                .spawn()
                .map_err(|e| format!("cannot start {}: {e}", self.binary.display()))?,
            base: String::new(),
        };
        let stdout = server
            .child
            .stdout
            .take()
            .ok_or("the dev stack's stdout is not piped")?;
        let (announce, announced) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || read_banner(stdout, announce));
        // On timeout the server is killed (dropped), which ends the reading thread with EOF.
        server.base = tokio::time::timeout(START_TIMEOUT, announced)
            .await
            .map_err(|_| format!("{name}: no origin printed within {START_TIMEOUT:?}"))?
            .map_err(|_| format!("{name}: exited before printing its origin (see {name}.log)"))?;
        Ok(server)
    }

    /// Starts `credbroker serve` with one `oidc` provider named `bench` whose issuer is the dev
    /// provider of `backend`, and `backend`'s local pool as the identity pool.
    pub async fn broker_alone(&self, name: &str, backend: &Server) -> Result<Server, String> {
        let config = self.work_dir.join(format!("{name}.toml"));
        std::fs::write(&config, broker_config(&backend.base))
            .map_err(|e| format!("cannot write {}: {e}", config.display()))?;
        let port = free_port()?;
        let mut command = self.command(name)?;
        command
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--config"])
            .arg(&config)
            .stdout(Stdio::null());
        let child = command
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.binary.display()))?;
        let server = Server {
            child,
            base: format!("http://127.0.0.1:{port}/"),
        };
        wait_until_answering(&server).await?;
        Ok(server)
    }

    /// The binary with its stderr (the request log, at the default level) in `NAME.log`.
    fn command(&self, name: &str) -> Result<Command, String> {
        let log_path = self.work_dir.join(format!("{name}.log"));
        let log =
            File::create(&log_path).map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
        let mut command = Command::new(&self.binary);
        command
            .stdin(Stdio::null())
            .stderr(Stdio::from(log))
            .env_remove("RUST_LOG");
        Ok(command)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Killing fails only when the process already exited, which is just as good; waiting
        // reaps it so no zombie outlives the run.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The broker's config for [`Launcher::broker_alone`].
fn broker_config(backend: &str) -> String {
    format!(
        "[identity_pool]\nid = \"{DEV_POOL_ID}\"\nendpoint = \"{backend}cognito-identity\"\n\n\
         [providers.bench]\nkind = \"oidc\"\nissuer = \"{backend}dev-idp\"\naudiences = [\"{DEV_CLIENT_ID}\"]\n"
    )
}

/// Sends the origin the dev banner names (`... Open http://127.0.0.1:PORT/`) as soon as it is
/// printed, then keeps reading until the process exits: a closed pipe would make the server's
/// next `println!` fail, and a failed `println!` aborts it.
fn read_banner(stdout: ChildStdout, announce: tokio::sync::oneshot::Sender<String>) {
    let mut announce = Some(announce);
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        if let Some(origin) = line.split_whitespace().find(|word| word.starts_with("http://"))
            && let Some(sender) = announce.take()
        {
            // The receiver is gone only when the start already timed out.
            let _ = sender.send(origin.to_string());
        }
    }
}

/// A loopback port that was free a moment ago (`serve` prints the port it was given, not the
/// one it got, so port 0 cannot be used there).
fn free_port() -> Result<u16, String> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free loopback port: {e}"))?;
    listener
        .local_addr()
        .map(|addr| addr.port())
        .map_err(|e| format!("no free loopback port: {e}"))
}

/// Polls `GET /auth/config` until it answers 200, for at most [`START_TIMEOUT`].
pub async fn wait_until_answering(server: &Server) -> Result<(), String> {
    let client = crate::load::client()?;
    let url = format!("{}auth/config", server.base);
    let started = Instant::now();
    while started.elapsed() < START_TIMEOUT {
        if let Ok(response) = client.get(&url).send().await
            && response.status() == reqwest::StatusCode::OK
        {
            return Ok(());
        }
        tokio::time::sleep(PROBE_INTERVAL).await;
    }
    Err(format!("{url} did not answer 200 within {START_TIMEOUT:?}"))
}

/// An ID token for `bench-user` from the dev provider of a running dev stack (valid for an hour).
pub async fn mint_token(client: &reqwest::Client, dev: &Server) -> Result<String, String> {
    mint_token_for(client, dev, "bench-user").await
}

/// An ID token for `sub` from the dev provider of a running dev stack (valid for an hour).
pub async fn mint_token_for(client: &reqwest::Client, dev: &Server, sub: &str) -> Result<String, String> {
    let url = format!("{}dev-idp/mint", dev.base);
    let response = client
        .post(&url)
        .json(&json!({"sub": sub, "claims": {}}))
        .send()
        .await
        .map_err(|e| format!("cannot reach {url}: {e}"))?;
    let status = response.status();
    let answer: serde_json::Value = response
        .json()
        .await
        .map_err(|e| format!("{url} answered {status} without JSON: {e}"))?;
    answer["id_token"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("{url} answered {status} without an id_token"))
}

/// Resident memory of a process, from `/proc/PID/status`, in bytes.
#[derive(Debug, Clone, Copy)]
pub struct Memory {
    /// `VmRSS`: resident now.
    pub rss: u64,
    /// `VmHWM`: the peak resident size so far.
    pub peak: u64,
}

impl Memory {
    fn of(pid: u32) -> Result<Memory, String> {
        let path = Path::new("/proc").join(pid.to_string()).join("status");
        let status =
            std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Memory::parse(&status).ok_or_else(|| format!("{} has no VmRSS/VmHWM", path.display()))
    }

    fn parse(status: &str) -> Option<Memory> {
        let kib = |field: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(field))
                .and_then(|rest| rest.trim().strip_suffix("kB"))
                .and_then(|number| number.trim().parse::<u64>().ok())
                .map(|kib| kib * 1024)
        };
        Some(Memory {
            rss: kib("VmRSS:")?,
            peak: kib("VmHWM:")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_comes_from_the_status_fields_in_kib() {
        let status = "Name:\tcredbroker\nVmPeak:\t  999 kB\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\n";
        let memory = Memory::parse(status).expect("both fields present");
        assert_eq!(memory.rss, 10 * 1024 * 1024);
        assert_eq!(memory.peak, 20 * 1024 * 1024);
        assert!(Memory::parse("VmRSS:\t1 kB\n").is_none());
    }

    #[test]
    fn the_broker_config_points_at_the_backend() {
        let config = credbroker::config::Config::from_toml(&broker_config("http://127.0.0.1:9/"))
            .expect("the generated config is valid");
        let pool = config.identity_pool.expect("the generated config has a pool");
        assert_eq!(pool.id, DEV_POOL_ID);
        assert_eq!(
            pool.endpoint.map(|url| url.to_string()),
            Some("http://127.0.0.1:9/cognito-identity".to_string())
        );
    }
}
