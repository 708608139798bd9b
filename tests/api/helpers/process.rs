//! The real `webhookd` binary as a process, for tests of signals, start-up and faults.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use uuid::Uuid;

use super::{http_client, ADMIN_TOKEN};

/// The real `webhookd` binary with a clean environment (only `PATH`, and `RUST_LOG=info`)
/// and no stdin.
pub fn webhookd_command() -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_webhookd"));
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null());
    command
}

pub use webhookd_test_support::free_port;

/// Runs the binary to its exit (listening on a free port, should it serve) with
/// `environment`, off the runtime's threads; returns its exit code and standard error.
pub async fn run_to_exit(environment: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut command = webhookd_command();
    command.env("WEBHOOKD_LISTEN", format!("127.0.0.1:{}", free_port()));
    for (name, value) in environment {
        command.env(name, value);
    }
    let output = tokio::task::spawn_blocking(move || command.output().unwrap()).await.unwrap();
    (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
}

/// The real `webhookd` binary as a running process, its logs captured.
pub struct Service {
    child: std::process::Child,
    pub base: String,
    logs: Arc<Mutex<String>>,
    /// Copies stderr into `logs` until it closes.
    log_reader: std::thread::JoinHandle<()>,
}

impl Service {
    /// Starts the binary (private targets allowed, the test admin token) and waits until
    /// `/health` answers 200.
    pub async fn start(database_url: &str, settings: &[(&str, &str)]) -> Self {
        let port = free_port();
        let data_dir = std::env::temp_dir().join("webhookd-tests").join(format!("{}-svc-{port}", std::process::id()));
        let mut command = webhookd_command();
        command
            .env("DATABASE_URL", database_url)
            .env("WEBHOOKD_DATA_DIR", data_dir)
            .env("WEBHOOKD_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("WEBHOOKD_ALLOW_PRIVATE_TARGETS", "true")
            .env("WEBHOOKD_RETRY_JITTER", "0");
        for (name, value) in settings {
            command.env(name, value);
        }
        Self::spawn(command, port, Duration::from_secs(30)).await
    }

    /// Runs `command` listening on 127.0.0.1:`port`, and waits up to `limit` until
    /// `/health` answers 200.
    pub async fn spawn(mut command: std::process::Command, port: u16, limit: Duration) -> Self {
        use std::io::BufRead;
        command
            .env("WEBHOOKD_LISTEN", format!("127.0.0.1:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        let mut child = command.spawn().unwrap();
        let logs = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = logs.clone();
        let log_reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut logs = sink.lock().unwrap();
                logs.push_str(&line);
                logs.push('\n');
            }
        });
        let mut service = Self { child, base: format!("http://127.0.0.1:{port}"), logs, log_reader };
        service.wait_healthy(limit).await;
        service
    }

    async fn wait_healthy(&mut self, limit: Duration) {
        let child = &mut self.child;
        let still_running = || match child.try_wait().unwrap() {
            Some(status) => Err(status.to_string()),
            None => Ok(()),
        };
        let healthy = webhookd_test_support::wait_healthy(&http_client(), &self.base, limit, still_running).await;
        if let Err(error) = healthy {
            panic!("{error}; logs:\n{}", self.logs());
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    /// kill -9, then waits for the process to be gone (without blocking the runtime, on
    /// which the test's receivers run).
    pub async fn kill(&mut self) {
        unsafe { libc::kill(self.pid(), libc::SIGKILL) };
        while self.child.try_wait().unwrap().is_none() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// SIGTERM, then waits up to `limit` for the exit; returns the exit code.
    pub async fn terminate(&mut self, limit: Duration) -> Option<i32> {
        unsafe { libc::kill(self.pid(), libc::SIGTERM) };
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Let the last lines reach `logs` (a child process still holding stderr
                // open, like an orphaned cluster, must not hang the test).
                let read_until = Instant::now() + Duration::from_secs(2);
                while !self.log_reader.is_finished() && Instant::now() < read_until {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                return status.code();
            }
            assert!(Instant::now() < deadline, "no exit within {limit:?} of SIGTERM; logs:\n{}", self.logs());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// POSTs a webhook; returns the status and the delivery id of a 202.
    pub async fn ingest(&self, client: &reqwest::Client, subscription: Uuid, body: String) -> (u16, Option<Uuid>) {
        ingest_once(client, &self.base, subscription, body).await
    }

    /// Creates a subscription through this instance.
    pub async fn create_subscription(&self, client: &reqwest::Client, target_url: &str) -> Uuid {
        self.create_subscription_with(client, &serde_json::json!({ "target_url": target_url })).await
    }

    /// Creates a subscription with these fields through this instance.
    pub async fn create_subscription_with(&self, client: &reqwest::Client, body: &serde_json::Value) -> Uuid {
        webhookd_test_support::create_subscription(client, &self.base, ADMIN_TOKEN, body).await.unwrap()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// POSTs a webhook to the service at `base`: the status (0 if no answer came within 15 s
/// or the connection failed) and the delivery id of a 202.
pub async fn ingest_once(client: &reqwest::Client, base: &str, subscription: Uuid, body: String) -> (u16, Option<Uuid>) {
    let sent = client
        .post(format!("{base}/ingest/{subscription}"))
        .bearer_auth(ADMIN_TOKEN)
        .timeout(Duration::from_secs(15))
        .body(body)
        .send()
        .await;
    let Ok(response) = sent else { return (0, None) };
    let status = response.status().as_u16();
    let body: Value = serde_json::from_slice(&response.bytes().await.unwrap_or_default()).unwrap_or(Value::Null);
    (status, body["delivery_id"].as_str().and_then(|id| id.parse().ok()))
}
