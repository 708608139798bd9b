//! TLS to the database and to Redis, as beside a managed PostgreSQL: a cluster with
//! `ssl=on` that accepts only `hostssl` connections, and a Redis that speaks only TLS, both
//! with certificates from a throwaway CA made here. The real binary connects to them.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::json;

use crate::helpers::{free_port, http_client, webhookd_command, Receiver, Service, ADMIN_TOKEN};
use webhookd::embedded_postgres::{ClusterOptions, EmbeddedPostgres};

/// A CA, a certificate it signed for 127.0.0.1 and localhost, and an unrelated second CA.
pub struct TestCertificates {
    pub ca: PathBuf,
    pub other_ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

fn openssl(directory: &Path, args: &[&str]) {
    let output = Command::new("openssl").args(args).current_dir(directory).output().expect("openssl runs");
    assert!(output.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
}

fn make_ca(directory: &Path, name: &str) {
    openssl(directory, &[
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", &format!("{name}.key"), "-out", &format!("{name}.pem"), "-days", "2",
        "-subj", &format!("/CN={name}"),
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    ]);
}

/// Made once per test run, in a directory the `postgres` user can read.
pub fn certificates() -> &'static TestCertificates {
    static CERTIFICATES: OnceLock<TestCertificates> = OnceLock::new();
    CERTIFICATES.get_or_init(|| {
        let directory = std::env::temp_dir().join("webhookd-tests").join(format!("{}-tls", std::process::id()));
        let _ = std::fs::remove_dir_all(&directory);
        std::fs::create_dir_all(&directory).unwrap();
        make_ca(&directory, "test-ca");
        make_ca(&directory, "other-ca");
        std::fs::write(
            directory.join("server.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
             keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        openssl(&directory, &[
            "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost",
        ]);
        openssl(&directory, &[
            "x509", "-req", "-in", "server.csr", "-CA", "test-ca.pem", "-CAkey", "test-ca.key",
            "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "server.ext",
        ]);
        // PostgreSQL insists that its key belongs to the user it runs as, readable by no one else.
        if unsafe { libc::geteuid() } == 0 {
            let status = Command::new("chown").args(["-R", "postgres:postgres"]).arg(&directory).status().unwrap();
            assert!(status.success());
        }
        std::fs::set_permissions(directory.join("server.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::set_permissions(&directory, std::fs::Permissions::from_mode(0o755)).unwrap();
        TestCertificates {
            ca: directory.join("test-ca.pem"),
            other_ca: directory.join("other-ca.pem"),
            server_cert: directory.join("server.pem"),
            server_key: directory.join("server.key"),
        }
    })
}

/// `postgres://…@127.0.0.1:port/` of a cluster that refuses connections without TLS.
fn tls_cluster() -> &'static str {
    static BASE: OnceLock<String> = OnceLock::new();
    BASE.get_or_init(|| {
        let certificates = certificates();
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let root = std::env::temp_dir().join("webhookd-tests").join(format!("{}-tls-cluster", std::process::id()));
            let _ = std::fs::remove_dir_all(&root);
            std::fs::create_dir_all(&root).unwrap();
            let hba = root.join("pg_hba.conf");
            std::fs::write(&hba, "hostssl all all 127.0.0.1/32 scram-sha-256\n").unwrap();
            let path = |p: &Path| p.display().to_string();
            let settings = [
                ("ssl", "on".to_owned()),
                ("ssl_cert_file", path(&certificates.server_cert)),
                ("ssl_key_file", path(&certificates.server_key)),
                ("hba_file", path(&hba)),
                ("fsync", "off".to_owned()),
                // Each line names its database, so a test can pick out its own sessions.
                ("log_line_prefix", "%m [%p] db=%d ".to_owned()),
            ];
            let options = ClusterOptions {
                directory: root.join("postgres"),
                server_settings: settings.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
                port: None,
            };
            let cluster = EmbeddedPostgres::start(&options).expect("TLS PostgreSQL starts");
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime
                .block_on(webhookd::embedded_postgres::create_database_if_missing(
                    &format!("{}?sslmode=require", cluster.url_for("postgres")),
                    "webhookd",
                ))
                .expect("database created over TLS");
            sender.send(cluster.url_for("webhookd")).unwrap();
            let _cluster = cluster;
            loop {
                std::thread::park();
            }
        });
        receiver.recv().expect("cluster thread reports")
    })
}

/// The TLS cluster's server log.
fn tls_cluster_log() -> String {
    tls_cluster();
    let root = std::env::temp_dir().join("webhookd-tests").join(format!("{}-tls-cluster", std::process::id()));
    std::fs::read_to_string(root.join("postgres.log")).unwrap()
}

/// `webhookd migrate` against `url`, with extra environment: exit code and stderr.
fn migrate(url: &str, environment: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut command = webhookd_command();
    command.arg("migrate").env("DATABASE_URL", url);
    for (name, value) in environment {
        command.env(name, value);
    }
    let output = command.output().unwrap();
    (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn the_test_server_refuses_plaintext_so_the_tests_below_prove_tls() {
    let (code, stderr) = migrate(&format!("{}?sslmode=disable", tls_cluster()), &[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("no encryption") || stderr.contains("pg_hba.conf"), "{stderr}");
}

#[test]
fn verify_full_with_the_right_ca_migrates_and_a_wrong_ca_fails_with_one_clear_line() {
    let certificates = certificates();
    let url = |ca: &Path| format!("{}?sslmode=verify-full&sslrootcert={}", tls_cluster(), ca.display());

    let (code, stderr) = migrate(&url(&certificates.ca), &[]);
    assert_eq!(code, Some(0), "{stderr}");

    let (code, stderr) = migrate(&url(&certificates.other_ca), &[]);
    assert_eq!(code, Some(1), "{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    assert!(lines[0].contains("not trusted") && lines[0].contains("sslrootcert="), "says how to pass a CA: {stderr}");
    assert_eq!(lines[0].matches("UnknownIssuer").count(), 1, "each cause once: {stderr}");
    assert!(!lines[0].contains("panicked"), "{stderr}");
}

/// As in libpq, `require` with a root CA checks the server's certificate against it (as
/// `verify-ca`): the setting many managed databases' guides give. sqlx alone took any
/// certificate then.
#[test]
fn sslmode_require_with_a_root_certificate_checks_the_server_against_it() {
    let certificates = certificates();
    let url = |ca: &Path| format!("{}?sslmode=require&sslrootcert={}", tls_cluster(), ca.display());
    let (code, stderr) = migrate(&url(&certificates.ca), &[]);
    assert_eq!(code, Some(0), "{stderr}");
    let (code, stderr) = migrate(&url(&certificates.other_ca), &[]);
    assert_eq!(code, Some(1), "a certificate from another CA is refused: {stderr}");
}

#[test]
fn the_ca_can_also_come_from_ssl_cert_file() {
    let certificates = certificates();
    let url = format!("{}?sslmode=verify-full", tls_cluster());
    let (code, stderr) = migrate(&url, &[("SSL_CERT_FILE", certificates.ca.to_str().unwrap())]);
    assert_eq!(code, Some(0), "{stderr}");
    let (code, stderr) = migrate(&url, &[("SSL_CERT_FILE", certificates.other_ca.to_str().unwrap())]);
    assert_eq!(code, Some(1), "{stderr}");
}

#[tokio::test]
async fn serve_refuses_to_start_against_an_untrusted_database_even_without_migrations() {
    let url = format!("{}?sslmode=verify-full&sslrootcert={}", tls_cluster(), certificates().other_ca.display());
    let (code, stderr) =
        crate::helpers::run_to_exit(&[("DATABASE_URL", &url), ("WEBHOOKD_ADMIN_TOKEN", ADMIN_TOKEN), ("WEBHOOKD_AUTO_MIGRATE", "false")])
            .await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("not trusted"), "{stderr}");
}

/// A Redis that speaks only TLS, with the test CA's server certificate.
struct TlsRedis {
    port: u16,
    child: std::process::Child,
}

impl TlsRedis {
    fn start() -> Self {
        let certificates = certificates();
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--port", "0", "--tls-port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--tls-cert-file").arg(&certificates.server_cert)
            .arg("--tls-key-file").arg(&certificates.server_key)
            .arg("--tls-ca-cert-file").arg(&certificates.ca)
            .args(["--tls-auth-clients", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server runs (.ci/run installs it)");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "redis-server did not start with TLS");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { port, child }
    }

    /// The keys Redis holds, read over TLS with redis-cli.
    fn keys(&self) -> String {
        let output = Command::new("redis-cli")
            .args(["--tls", "--cacert"])
            .arg(&certificates().ca)
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "--scan"])
            .output()
            .expect("redis-cli runs");
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn sslmode_require_and_rediss_deliver_end_to_end_over_tls_only() {
    let certificates = certificates();
    let redis = TlsRedis::start();
    let database_url = format!("{}?sslmode=require", tls_cluster());
    let service = Service::start(&database_url, &[
        ("REDIS_URL", &format!("rediss://127.0.0.1:{}", redis.port)),
        ("SSL_CERT_FILE", certificates.ca.to_str().unwrap()),
    ])
    .await;
    let receiver = Receiver::answering(200).await;
    let client = http_client();
    let subscription = service.create_subscription(&client, &receiver.url).await;
    let (status, delivery) = service.ingest(&client, subscription, json!({"over": "tls"}).to_string()).await;
    assert_eq!(status, 202);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while receiver.received().is_empty() {
        assert!(std::time::Instant::now() < deadline, "not delivered; logs:\n{}", service.logs());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(receiver.received()[0].body, br#"{"over":"tls"}"#);
    assert!(delivery.is_some());

    // Every connection webhookd holds to the database is encrypted.
    let pool = sqlx::PgPool::connect(&database_url).await.unwrap();
    let (connections, encrypted): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE s.ssl) FROM pg_stat_activity AS a
         JOIN pg_stat_ssl AS s USING (pid) WHERE a.application_name = 'webhookd'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(connections > 0);
    assert_eq!(encrypted, connections);

    // The shared cache was used over rediss://.
    assert!(redis.keys().contains(&format!("webhookd:subscription:{subscription}")), "{}", service.logs());
    assert!(!service.logs().contains("Redis unavailable"), "{}", service.logs());
}

/// An HTTPS receiver on 127.0.0.1 with the test CA's certificate: answers 200 to any
/// request and counts them.
async fn https_receiver() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    webhookd::delivery::install_tls_provider();
    let certificates = certificates();
    let chain = CertificateDer::pem_file_iter(&certificates.server_cert).unwrap().collect::<Result<Vec<_>, _>>().unwrap();
    let key = PrivateKeyDer::from_pem_file(&certificates.server_key).unwrap();
    let config = rustls::ServerConfig::builder().with_no_client_auth().with_single_cert(chain, key).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://127.0.0.1:{}/hook", listener.local_addr().unwrap().port());
    let received = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = received.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let (acceptor, counter) = (acceptor.clone(), counter.clone());
            tokio::spawn(async move {
                let Ok(mut stream) = acceptor.accept(stream).await else { return };
                let mut request = Vec::new();
                let mut buffer = [0u8; 4096];
                // Headers, then as many body bytes as Content-Length says.
                while let Ok(n) = stream.read(&mut buffer).await {
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&buffer[..n]);
                    let text = String::from_utf8_lossy(&request).to_ascii_lowercase();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length = text
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if request.len() >= end + 4 + length {
                            break;
                        }
                    }
                }
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok").await;
                let _ = stream.shutdown().await;
            });
        }
    });
    (url, received)
}

#[tokio::test]
async fn https_receivers_are_verified_against_ssl_cert_file() {
    let (url, received) = https_receiver().await;
    let trusting = Service::start(&crate::helpers::fresh_database().await, &[
        ("SSL_CERT_FILE", certificates().ca.to_str().unwrap()),
    ])
    .await;
    let untrusting = Service::start(&crate::helpers::fresh_database().await, &[("WEBHOOKD_RETRY_SCHEDULE", "")]).await;
    let client = http_client();
    let mut ids = Vec::new();
    for service in [&trusting, &untrusting] {
        let subscription = service.create_subscription(&client, &url).await;
        let (status, id) = service.ingest(&client, subscription, "{}".into()).await;
        assert_eq!(status, 202);
        ids.push(id.unwrap());
    }
    let finished = |service: &Service, id: uuid::Uuid| {
        let (client, url) = (client.clone(), format!("{}/deliveries/{id}", service.base));
        async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            loop {
                let response = client.get(&url).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
                let delivery: serde_json::Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
                if delivery["status"] == "succeeded" || delivery["status"] == "failed" {
                    return delivery;
                }
                assert!(std::time::Instant::now() < deadline, "{delivery}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    assert_eq!(finished(&trusting, ids[0]).await["status"], "succeeded");
    let refused = finished(&untrusting, ids[1]).await;
    assert_eq!(refused["status"], "failed", "{refused}");
    assert!(refused["last_error"].as_str().unwrap_or_default().contains("certificate"), "{refused}");
    assert_eq!(received.load(std::sync::atomic::Ordering::SeqCst), 1, "only the trusting instance delivered");
}

/// A database of its own on the TLS cluster, whose log lines then name only this test's
/// sessions; `admin` is connected to the cluster's first database.
struct TlsDatabase {
    name: String,
    url: String,
    admin: sqlx::PgPool,
}

impl TlsDatabase {
    async fn create(prefix: &str) -> Self {
        let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
        let admin = sqlx::PgPool::connect(&format!("{}?sslmode=require", tls_cluster())).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&admin).await.unwrap();
        let (base, _) = tls_cluster().rsplit_once('/').unwrap();
        let url = format!("{base}/{name}?sslmode=require");
        Self { name, url, admin }
    }
}

/// A managed PostgreSQL requires TLS, and over TLS the server logs each session whose
/// client just went away ("could not receive data from client: Connection reset by
/// peer"). Stopped with SIGTERM, and after `migrate`, webhookd ends every session it
/// opened (its pools, the writer loops', the claim loop's, LISTEN) with a goodbye instead.
#[tokio::test]
async fn a_stopped_service_ends_its_database_sessions_without_a_complaint_in_the_server_log() {
    let TlsDatabase { name, url: database_url, admin } = TlsDatabase::create("goodbye").await;
    let (code, stderr) = migrate(&database_url, &[]);
    assert_eq!(code, Some(0), "{stderr}");

    let mut service = Service::start(&database_url, &[]).await;
    let receiver = Receiver::answering(200).await;
    let client = http_client();
    let subscription = service.create_subscription(&client, &receiver.url).await;
    let (status, _) = service.ingest(&client, subscription, "{}".into()).await;
    assert_eq!(status, 202);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while receiver.received().is_empty() {
        assert!(std::time::Instant::now() < deadline, "not delivered; logs:\n{}", service.logs());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let sessions = "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND backend_type = 'client backend'";
    let opened: i64 = sqlx::query_scalar(sessions).bind(&name).fetch_one(&admin).await.unwrap();
    assert!(opened >= 4, "API pool, writers' pool, claim loop and LISTEN: {opened} sessions");

    assert_eq!(service.terminate(Duration::from_secs(20)).await, Some(0), "{}", service.logs());
    // Each backend logs before it exits: once none is left, the log says all there is.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while sqlx::query_scalar::<_, i64>(sessions).bind(&name).fetch_one(&admin).await.unwrap() > 0 {
        assert!(std::time::Instant::now() < deadline, "webhookd's sessions outlived it");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let complaints = session_complaints(&name);
    assert!(complaints.is_empty(), "the server logged webhookd's sessions ending:\n{}", complaints.join("\n"));
    admin.close().await;
}

/// What the TLS cluster logged of sessions of database `name` that ended without a
/// goodbye.
fn session_complaints(name: &str) -> Vec<String> {
    let ours = format!("db={name} ");
    let vanished = |line: &&str| line.contains("could not receive data") || line.contains("unexpected EOF");
    tls_cluster_log().lines().filter(|line| line.contains(&ours)).filter(vanished).map(str::to_owned).collect()
}

#[tokio::test]
async fn closing_a_pool_with_a_connection_still_in_use_ends_the_idle_sessions_at_once() {
    let TlsDatabase { name, url, admin } = TlsDatabase::create("closing").await;
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(3).connect(&url).await.unwrap();
    let mut connections = Vec::new();
    for _ in 0..3 {
        connections.push(pool.acquire().await.unwrap());
    }
    let in_use = connections.pop().unwrap();
    drop(connections);
    let sessions = "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND backend_type = 'client backend'";
    let count = async || sqlx::query_scalar::<_, i64>(sessions).bind(&name).fetch_one(&admin).await.unwrap();
    assert_eq!(count().await, 3);

    // As at a stop with one request still running: the limit passes with it held.
    webhookd::db::close(&pool).await;
    let sessions_become = async |expected: i64, why: &str| {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while count().await != expected {
            assert!(std::time::Instant::now() < deadline, "{why}: {} sessions", count().await);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    sessions_become(1, "the idle sessions outlived the close").await;
    // Given back after the close, it ends its session too.
    drop(in_use);
    sessions_become(0, "the connection given back after the close kept its session").await;
    let complaints = session_complaints(&name);
    assert!(complaints.is_empty(), "the server logged the sessions ending:\n{}", complaints.join("\n"));
    admin.close().await;
}
