//! The embedded default database: a private PostgreSQL cluster that webhookd creates with
//! `initdb` under the data directory, starts as a child process, and stops on exit.
//! Used when `DATABASE_URL` is unset, and by the test harness.
//!
//! PostgreSQL refuses to run as root. When webhookd runs as root it hands the cluster's
//! directory to the unprivileged `postgres` user and runs the server binaries as that user.

use std::fs;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// Database and role created in the cluster.
const DATABASE: &str = "webhookd";
const ROLE: &str = "webhookd";

/// How to run the cluster.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Cluster directory (`<data dir>/postgres`).
    pub directory: PathBuf,
    /// Extra `-c name=value` server settings.
    pub server_settings: Vec<(String, String)>,
    /// Port to listen on; `None` picks a free one.
    pub port: Option<u16>,
}

/// A running cluster; stopped (fast shutdown) when dropped.
#[derive(Debug)]
pub struct EmbeddedPostgres {
    child: Child,
    port: u16,
    password: String,
}

/// An unprivileged account to run PostgreSQL as, when we are root.
#[derive(Debug, Clone, Copy)]
struct RunAs {
    uid: u32,
    gid: u32,
}

impl EmbeddedPostgres {
    /// Creates the cluster if needed, starts it on a free loopback port and waits until it
    /// accepts connections. Must be called from a thread that outlives the cluster: the
    /// server is told to shut down when that thread ends (so it never outlives webhookd).
    pub fn start(options: &ClusterOptions) -> anyhow::Result<Self> {
        let bin_dir = find_server_binaries().context(
            "no PostgreSQL server binaries (initdb, postgres) found on PATH, via pg_config, \
             in /usr/lib/postgresql/*/bin or Homebrew's prefix. Install PostgreSQL \
             (Debian/Ubuntu: apt-get install postgresql; macOS: brew install postgresql@16), \
             or set DATABASE_URL to use an existing server",
        )?;
        let run_as = unprivileged_user()?;
        let directory = absolute(&options.directory)?;
        let password = prepare_cluster(&bin_dir, &directory, run_as)?;
        let port = match options.port {
            Some(port) => port,
            None => free_port()?,
        };
        let child = spawn_server(&bin_dir, &directory, port, &options.server_settings, run_as)?;
        let mut cluster = Self { child, port, password };
        cluster.wait_until_ready(Duration::from_secs(60))?;
        Ok(cluster)
    }

    /// URL of the `webhookd` database in this cluster.
    pub fn database_url(&self) -> String {
        self.url_for(DATABASE)
    }

    /// URL of database `name` in this cluster.
    pub fn url_for(&self, name: &str) -> String {
        format!("postgres://{ROLE}:{}@127.0.0.1:{}/{name}", self.password, self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    fn wait_until_ready(&mut self, limit: Duration) -> anyhow::Result<()> {
        let started = Instant::now();
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("PostgreSQL exited during start-up ({status}); see postgres.log beside its directory");
            }
            // Accepting TCP is not enough during recovery; the caller's pool retries, and
            // the first real query fails fast with a clear error if it is not ready.
            if TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if started.elapsed() > limit {
                bail!("PostgreSQL did not accept connections within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Asks the server for a fast shutdown and waits for it to exit.
    pub fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        // SIGINT is PostgreSQL's "fast shutdown": disconnect clients, checkpoint, exit.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for EmbeddedPostgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Finds a directory holding both `initdb` and `postgres`.
pub fn find_server_binaries() -> Option<PathBuf> {
    let has_both = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default();
    if let Some(dir) = on_path.into_iter().find(|d| has_both(d)) {
        return Some(dir);
    }
    if let Ok(output) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        if output.status.success() && has_both(&dir) {
            return Some(dir);
        }
    }
    let mut candidates = versioned_dirs("/usr/lib/postgresql", "bin");
    candidates.extend(versioned_dirs("/opt/homebrew/opt", "bin"));
    candidates.extend(versioned_dirs("/usr/local/opt", "bin"));
    candidates.into_iter().find(|d| has_both(d))
}

/// `<root>/<entry>/<suffix>` for each entry, newest version first (e.g. 17 before 15).
fn versioned_dirs(root: &str, suffix: &str) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(root) else { return Vec::new() };
    let mut dirs: Vec<(u32, PathBuf)> = entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(|c: char| c.is_ascii_digit() || c == 'p'))
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let version = name.trim_start_matches(|c: char| !c.is_ascii_digit());
            let major = version.split('.').next().and_then(|v| v.parse().ok()).unwrap_or(0);
            (major, e.path().join(suffix))
        })
        .collect();
    dirs.sort_by_key(|dir| std::cmp::Reverse(dir.0));
    dirs.into_iter().map(|(_, dir)| dir).collect()
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    fs::create_dir_all(path).with_context(|| format!("cannot create {}", path.display()))?;
    Ok(fs::canonicalize(path)?)
}

/// The `postgres` account when running as root; `None` otherwise.
fn unprivileged_user() -> anyhow::Result<Option<RunAs>> {
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let name = c"postgres";
    // getpwnam is not thread-safe; this runs during start-up, before other threads look up users.
    let entry = unsafe { libc::getpwnam(name.as_ptr()) };
    if entry.is_null() {
        bail!(
            "running as root, and PostgreSQL refuses to run as root; no `postgres` user exists to \
             run it as. Create one (useradd --system postgres) or run webhookd as another user"
        );
    }
    let (uid, gid) = unsafe { ((*entry).pw_uid, (*entry).pw_gid) };
    Ok(Some(RunAs { uid, gid }))
}

/// Makes sure the cluster exists (initdb on first use); returns the webhookd role's password.
fn prepare_cluster(bin_dir: &Path, directory: &Path, run_as: Option<RunAs>) -> anyhow::Result<String> {
    let parent = directory.parent().context("cluster directory has no parent")?;
    let password_file = parent.join("postgres.password");
    if let Some(user) = run_as {
        hand_over(directory, user)?;
    }
    if directory.join("PG_VERSION").is_file() {
        return fs::read_to_string(&password_file)
            .map(|p| p.trim().to_owned())
            .with_context(|| format!("cluster exists but {} is unreadable", password_file.display()));
    }
    let password = random_hex(24);
    write_private(&password_file, &password)?;
    // initdb reads the password from a file the server's user can read; removed right after.
    let initdb_password = parent.join(".initdb-password");
    write_private(&initdb_password, &password)?;
    if let Some(user) = run_as {
        std::os::unix::fs::chown(&initdb_password, Some(user.uid), Some(user.gid))?;
    }
    let mut initdb = Command::new(bin_dir.join("initdb"));
    initdb
        .arg("--pgdata")
        .arg(directory)
        .args(["--username", ROLE, "--auth", "scram-sha-256", "--encoding", "UTF8", "--no-locale"])
        .arg(format!("--pwfile={}", initdb_password.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    drop_privileges(&mut initdb, run_as, false);
    let output = initdb.output().context("cannot run initdb")?;
    let _ = fs::remove_file(&initdb_password);
    if !output.status.success() {
        bail!("initdb failed: {}", String::from_utf8_lossy(&output.stderr).trim());
    }
    // initdb makes the `postgres` database only; create ours in single-user-free fashion
    // by letting the first start create it (see create_database_if_missing).
    Ok(password)
}

/// Gives `directory` (created empty if needed) to the unprivileged user, mode 0700.
fn hand_over(directory: &Path, user: RunAs) -> anyhow::Result<()> {
    std::os::unix::fs::chown(directory, Some(user.uid), Some(user.gid))
        .with_context(|| format!("cannot give {} to the postgres user", directory.display()))?;
    fs::set_permissions(directory, fs::Permissions::from_mode(0o700))?;
    // Every parent must be traversable by that user.
    let mut parent = directory.parent();
    while let Some(dir) = parent {
        let mode = fs::metadata(dir)?.permissions().mode();
        if mode & 0o001 == 0 {
            bail!(
                "{} is not traversable by the postgres user (mode {:o}); move WEBHOOKD_DATA_DIR \
                 or run `chmod o+x {}`",
                dir.display(),
                mode & 0o777,
                dir.display()
            );
        }
        parent = dir.parent();
    }
    Ok(())
}

fn spawn_server(
    bin_dir: &Path,
    directory: &Path,
    port: u16,
    settings: &[(String, String)],
    run_as: Option<RunAs>,
) -> anyhow::Result<Child> {
    let log_path = directory.parent().unwrap_or(directory).join("postgres.log");
    let log = fs::OpenOptions::new().create(true).append(true).open(&log_path)?;
    let mut server = Command::new(bin_dir.join("postgres"));
    server
        .arg("-D")
        .arg(directory)
        .args(["-p", &port.to_string()])
        .args(["-c", "listen_addresses=127.0.0.1"])
        // No Unix socket: its default directory may not exist or be writable here.
        .args(["-c", "unix_socket_directories="])
        // Look for tables to vacuum every 10 s rather than every minute: the deliveries
        // queue turns over quickly and its claim index slows down with dead entries.
        .args(["-c", "autovacuum_naptime=10s"]);
    for (name, value) in settings {
        server.arg("-c").arg(format!("{name}={value}"));
    }
    server.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
    drop_privileges(&mut server, run_as, true);
    server.spawn().context("cannot start postgres")
}

/// In the child, before exec: become the unprivileged user and, for the server, ask the
/// kernel to send SIGINT (fast shutdown) when the spawning thread dies, so a killed
/// webhookd never leaves an orphaned cluster behind.
fn drop_privileges(command: &mut Command, run_as: Option<RunAs>, die_with_parent: bool) {
    unsafe {
        command.pre_exec(move || {
            if let Some(user) = run_as
                && (libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setgid(user.gid) != 0
                    || libc::setuid(user.uid) != 0)
            {
                return Err(io::Error::last_os_error());
            }
            // After setuid: changing credentials clears the parent-death signal.
            if die_with_parent && libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGINT) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()?.port())
}

fn write_private(path: &Path, contents: &str) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = fs::OpenOptions::new().create(true).write(true).truncate(true).mode(0o600).open(path)?;
    io::Write::write_all(&mut file, contents.as_bytes())
}

/// Random bytes from the OS, hex-encoded.
#[expect(clippy::expect_used, reason = "without the OS random source no password can be made")]
pub fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    getrandom::fill(&mut buffer).expect("the OS random source works");
    buffer.iter().map(|b| format!("{b:02x}")).collect()
}

/// Creates the `webhookd` database if it does not exist yet (first start).
pub async fn create_database_if_missing(cluster_url_for_postgres: &str, name: &str) -> anyhow::Result<()> {
    use sqlx::Connection;
    let mut connection = connect_with_retry(cluster_url_for_postgres).await?;
    if !crate::db::cluster::database_exists(&mut connection, name).await? {
        crate::db::cluster::create_database(&mut connection, name).await?;
    }
    connection.close().await?;
    Ok(())
}

/// Connects, retrying while the server finishes starting up.
async fn connect_with_retry(url: &str) -> anyhow::Result<sqlx::PgConnection> {
    use sqlx::Connection;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match sqlx::PgConnection::connect(url).await {
            Ok(connection) => return Ok(connection),
            Err(error) if Instant::now() < deadline => {
                tracing::debug!(%error, "embedded PostgreSQL not ready yet");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => return Err(error).context("cannot connect to the embedded PostgreSQL"),
        }
    }
}
