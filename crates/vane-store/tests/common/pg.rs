//! A real PostgreSQL server for tests: Debian's `postgresql` binaries,
//! `initdb` + `pg_ctl` in a directory of our own, no containers.
//!
//! One shared cluster serves every test process of a run (nextest runs each
//! test in its own process): the first to come starts it under a file lock,
//! the others find it running; each test gets a database of its own. A test
//! that stops and starts the server makes a private cluster instead.
//!
//! PostgreSQL refuses to run as root, so when tests run as root (CI) the
//! cluster is made and started as the `postgres` user the package creates.
//! Without the binaries a test is skipped with a message — except in CI
//! (`CI=true`), where `.ci/run` installs them and their absence is a failure.

#![allow(dead_code)]

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// The directory holding `initdb`, `pg_ctl` and `psql`, if installed.
pub fn bin_dir() -> Option<PathBuf> {
    if let Ok(d) = std::env::var("VANE_PG_BIN") {
        return Some(PathBuf::from(d));
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|b| b.join("initdb").is_file() && b.join("pg_ctl").is_file())
        .collect();
    versions.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    versions.pop()
}

/// PostgreSQL's binaries, or `None` (after saying so) when a test may be
/// skipped; in CI their absence fails the test.
pub fn available() -> Option<PathBuf> {
    match bin_dir() {
        Some(b) => Some(b),
        None if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("PostgreSQL is required in CI (.ci/run installs Debian's postgresql)")
        }
        None => {
            eprintln!("skipped: PostgreSQL is not installed (apt-get install postgresql)");
            None
        }
    }
}

fn postgres_ids() -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.first() != Some(&"postgres") || f.len() < 4 {
            return None;
        }
        Some((f[2].parse().ok()?, f[3].parse().ok()?))
    })
}

fn euid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(u32::MAX)
}

fn is_root() -> bool {
    euid() == 0
}

/// A command run as the cluster's owner (`postgres` when we are root).
fn as_owner(bin: &Path, name: &str) -> Command {
    let mut c = Command::new(bin.join(name));
    if is_root() {
        let (u, g) = postgres_ids().expect("running as root needs the `postgres` user");
        c.uid(u).gid(g);
    }
    c.stdin(Stdio::null());
    c
}

fn run(mut c: Command, what: &str) {
    let out = c.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One PostgreSQL cluster: a data directory and a server on a port.
pub struct Cluster {
    pub dir: PathBuf,
    pub bin: PathBuf,
    pub port: u16,
    /// a private cluster is stopped and removed when dropped
    private: bool,
    /// more `-c` settings for the server
    options: String,
}

impl Cluster {
    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn init(dir: &Path, bin: &Path) {
        std::fs::create_dir_all(dir).unwrap();
        if is_root() {
            let (u, g) = postgres_ids().unwrap();
            std::os::unix::fs::chown(dir, Some(u), Some(g)).unwrap();
        }
        let mut c = as_owner(bin, "initdb");
        c.args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
            "-D",
        ])
        .arg(dir.join("data"));
        run(c, "initdb");
        // one role must prove its password (the rest is trust): the tests of
        // VANE_STORE_PASSWORD and password_file log in as it
        let hba = dir.join("data/pg_hba.conf");
        let old = std::fs::read_to_string(&hba).unwrap();
        std::fs::write(
            &hba,
            format!("host all {PASSWORD_ROLE} 127.0.0.1/32 scram-sha-256\n{old}"),
        )
        .unwrap();
    }

    /// Starts the server (waiting until it accepts connections).
    pub fn start(&self) {
        let mut c = as_owner(&self.bin, "pg_ctl");
        c.arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.dir.join("log"))
            .arg("-w")
            .arg("-o")
            .arg(format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300 {}",
                self.port,
                self.dir.display(),
                self.options
            ))
            .arg("start");
        run(c, "pg_ctl start");
    }

    /// Stops the server (fast: open connections are ended).
    pub fn stop(&self) {
        let mut c = as_owner(&self.bin, "pg_ctl");
        c.arg("-D")
            .arg(self.data())
            .args(["-m", "fast", "-w", "stop"]);
        run(c, "pg_ctl stop");
    }

    fn running(&self) -> bool {
        let mut c = as_owner(&self.bin, "pg_ctl");
        c.arg("-D")
            .arg(self.data())
            .arg("status")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c.status().is_ok_and(|s| s.success())
    }

    /// The cluster every test process of this run shares, started if needed.
    pub fn shared() -> Option<Cluster> {
        let bin = available()?;
        let uid = euid();
        let dir = std::env::temp_dir().join(format!("vane-test-pg2-{uid}"));
        std::fs::create_dir_all(std::env::temp_dir()).unwrap();
        let lock_path = std::env::temp_dir().join(format!("vane-test-pg2-{uid}.lock"));
        let lock = std::fs::File::create(&lock_path).unwrap();
        fs4::fs_std::FileExt::lock_exclusive(&lock).unwrap();
        let port_file = dir.join("port");
        let existing = std::fs::read_to_string(&port_file)
            .ok()
            .and_then(|p| p.trim().parse::<u16>().ok());
        let cluster = match existing {
            Some(port) if dir.join("data/PG_VERSION").is_file() => {
                let c = Cluster {
                    dir: dir.clone(),
                    bin,
                    port,
                    private: false,
                    options: String::new(),
                };
                if !c.running() {
                    c.start();
                }
                c
            }
            _ => {
                let _ = std::fs::remove_dir_all(&dir);
                Cluster::init(&dir, &bin);
                let c = Cluster {
                    dir: dir.clone(),
                    bin,
                    port: free_port(),
                    private: false,
                    options: String::new(),
                };
                c.start();
                std::fs::write(&port_file, c.port.to_string()).unwrap();
                c
            }
        };
        drop(lock);
        Some(cluster)
    }

    /// A cluster of this test's own (for stopping and restarting it).
    pub fn private() -> Option<Cluster> {
        let bin = available()?;
        let base = std::env::temp_dir().join(format!(
            "vane-test-pg-private-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&base);
        Cluster::init(&base, &bin);
        let c = Cluster {
            dir: base,
            bin,
            port: free_port(),
            private: true,
            options: String::new(),
        };
        c.start();
        Some(c)
    }

    /// Restarts the server with TLS on (a test CA's certificate for
    /// 127.0.0.1) and connections in the clear refused. Returns the CA's
    /// PEM file.
    pub fn enable_tls(&mut self) -> PathBuf {
        let d = &self.dir;
        let ossl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(d)
                .output()
                .expect("openssl");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        ossl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=vane test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ]);
        ossl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ]);
        std::fs::write(
            d.join("server.ext"),
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nkeyUsage=digitalSignature,keyEncipherment\n",
        )
        .unwrap();
        ossl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.crt",
        ]);
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(d.join("server.key"), std::fs::Permissions::from_mode(0o600))
            .unwrap();
        if is_root() {
            let (u, g) = postgres_ids().unwrap();
            for f in ["server.key", "server.crt", "ca.pem"] {
                std::os::unix::fs::chown(d.join(f), Some(u), Some(g)).unwrap();
            }
        }
        let hba = d.join("data/pg_hba.conf");
        let old = std::fs::read_to_string(&hba).unwrap();
        std::fs::write(
            &hba,
            format!("hostnossl all all 127.0.0.1/32 reject\n{old}"),
        )
        .unwrap();
        self.stop();
        self.options = format!(
            "-c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
            d.join("server.crt").display(),
            d.join("server.key").display()
        );
        self.start();
        d.join("ca.pem")
    }

    /// The URL of database `db` on this cluster.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Runs SQL (several statements allowed) on database `db` with psql.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-X",
                "-q",
                "-t",
                "-A",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-p",
            ])
            .arg(self.port.to_string())
            .arg("-d")
            .arg(db)
            .arg("-c")
            .arg(sql)
            .stdin(Stdio::null())
            .output()
            .expect("psql");
        assert!(
            out.status.success(),
            "psql `{sql}`: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Creates [`PASSWORD_ROLE`] with `password`, owning database `db`.
    pub fn password_role(&self, db: &str, password: &str) {
        self.psql(
            "postgres",
            &format!(
                "DO $$BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{PASSWORD_ROLE}') THEN CREATE ROLE {PASSWORD_ROLE} LOGIN; END IF; END$$; ALTER ROLE {PASSWORD_ROLE} PASSWORD '{password}'"
            ),
        );
        self.psql(
            "postgres",
            &format!("ALTER DATABASE {db} OWNER TO {PASSWORD_ROLE}"),
        );
        self.psql(db, &format!("ALTER SCHEMA public OWNER TO {PASSWORD_ROLE}"));
    }

    /// A new, empty database of this test's own.
    pub fn database(&self) -> TestDb {
        let name = format!(
            "vt_{}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos()
        );
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        TestDb {
            url: self.url(&name),
            name,
            port: self.port,
            bin: self.bin.clone(),
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.private {
            let mut c = as_owner(&self.bin, "pg_ctl");
            c.arg("-D")
                .arg(self.data())
                .args(["-m", "immediate", "stop"]);
            let _ = c.output();
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// The role that logs in with a password (see [`Cluster::password_role`]).
pub const PASSWORD_ROLE: &str = "vane_pw";

/// One test's database; dropped (with its connections) when the test ends.
pub struct TestDb {
    pub url: String,
    pub name: String,
    port: u16,
    bin: PathBuf,
}

impl TestDb {
    pub fn psql(&self, sql: &str) -> String {
        Cluster {
            dir: PathBuf::new(),
            bin: self.bin.clone(),
            port: self.port,
            private: false,
            options: String::new(),
        }
        .psql(&self.name, sql)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let _ = Command::new(self.bin.join("psql"))
            .args(["-X", "-q", "-h", "127.0.0.1", "-U", "postgres", "-p"])
            .arg(self.port.to_string())
            .args(["-d", "postgres", "-c"])
            .arg(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
