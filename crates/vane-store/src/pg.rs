//! PostgreSQL behind [`Sql`]: one database shared by fronts on several hosts.
//!
//! Client: `tokio-postgres` (the maintained, pure-Rust PostgreSQL client of
//! the `rust-postgres` project). Why its async API and not the sync
//! `postgres` wrapper: the store is called inline from tokio worker threads,
//! where the wrapper's private runtime refuses to start. Here the connections
//! live on one small background runtime of their own, and a call hands its
//! request to its connection and waits for the answer on the calling thread
//! (`futures_executor::block_on`) — the store's API stays synchronous, so a
//! transaction still cannot be held across an `await`.
//!
//! Pooling: `r2d2` (the long-standing generic sync pool). Each pooled
//! connection caches its prepared statements by SQL text.
//!
//! What it guarantees (see ARCHITECTURE.md, "The store seam"): every write
//! transaction first updates the `revision` row, so concurrent writers on any
//! host queue on that row lock and run one after another, each seeing every
//! earlier commit (READ COMMITTED takes a fresh snapshot per statement); a
//! lost connection or a database that is down is `store_unavailable`
//! (retryable) within the connect timeout, never a hang or a panic.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::BytesMut;
use futures_executor::block_on;
use serde_json::json;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{to_sql_checked, FromSql, IsNull, ToSql, Type};
use tokio_postgres::{Client, Config, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;
use vane_core::{ErrorCode, VaneError};

use crate::sql::{dollar_params, Engine, Row, Sql, Val};
use crate::store::Result;

/// How long a call waits for a connection before it reports the database
/// unavailable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The channel a flag change is announced on (payload: the flags revision).
pub(crate) const FLAGS_CHANNEL: &str = "vane_flags";
/// The channel a change of exported state is announced on (payload: the
/// store revision), so every checkout refreshes its exports.
pub(crate) const STORE_CHANNEL: &str = "vane_store";

/// What the listener last heard; -1 while it is not listening.
struct Heard {
    flags: AtomicI64,
    store: AtomicI64,
}

/// The background runtime every PostgreSQL connection of the process runs
/// on (one worker: it only shuttles bytes).
fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("vane-pg")
            .enable_all()
            .build()
            .expect("a tokio runtime for PostgreSQL connections")
    })
}

/// Where to connect, and the text to show for it (never the password).
///
/// TLS: rustls, verifying the server's certificate and name against the
/// system's roots plus `[store] ca_file`. The URL's `sslmode` decides
/// whether it is used: `prefer` (the default: TLS when the server offers it),
/// `require` (never in the clear), `disable`.
#[derive(Clone)]
pub struct PgTarget {
    config: Config,
    shown: String,
    max_connections: u32,
    tls: MakeRustlsConnect,
}

/// The system's trusted roots, read once per process.
fn system_roots() -> &'static [rustls::pki_types::CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<rustls::pki_types::CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| rustls_native_certs::load_native_certs().certs)
}

fn tls(extra: &[rustls::pki_types::CertificateDer<'static>]) -> Result<MakeRustlsConnect> {
    let mut roots = rustls::RootCertStore::empty();
    // a system root rustls cannot parse is skipped, as every TLS client does
    let _ = roots.add_parsable_certificates(system_roots().iter().cloned());
    for c in extra {
        roots.add(c.clone()).map_err(|e| {
            VaneError::new(
                ErrorCode::ConfigInvalid,
                format!("store.ca_file: a certificate rustls cannot use: {e}"),
            )
        })?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| VaneError::new(ErrorCode::Internal, format!("TLS setup: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

impl PartialEq for PgTarget {
    fn eq(&self, o: &PgTarget) -> bool {
        self.shown == o.shown && self.config.get_password() == o.config.get_password()
    }
}
impl Eq for PgTarget {}

impl std::fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

impl PgTarget {
    /// Parses a `postgres://` URL (or a `key=value` connection string);
    /// `password`, when given, replaces any in the URL (it comes from the
    /// environment or a file, so the URL in vane.toml need not hold one).
    pub fn parse(url: &str, password: Option<&str>) -> Result<PgTarget> {
        let mut config: Config = url.parse().map_err(|e| {
            VaneError::new(
                ErrorCode::ConfigInvalid,
                format!("the store URL is not a PostgreSQL connection string: {e}"),
            )
        })?;
        if let Some(p) = password {
            config.password(p);
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        config.keepalives_idle(Duration::from_secs(30));
        config.application_name("vane");
        let shown = shown(&config);
        Ok(PgTarget {
            config,
            shown,
            max_connections: 8,
            tls: tls(&[])?,
        })
    }

    /// Also trusts the CA certificates of the PEM file `path` (a private
    /// CA, a self-signed server).
    pub fn with_ca_file(mut self, path: &std::path::Path) -> Result<PgTarget> {
        use rustls::pki_types::pem::PemObject;
        let bad = |e: String| {
            VaneError::new(
                ErrorCode::ConfigInvalid,
                format!("store.ca_file {}: {e}", path.display()),
            )
        };
        let certs = rustls::pki_types::CertificateDer::pem_file_iter(path)
            .map_err(|e| bad(e.to_string()))?
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| bad(e.to_string()))?;
        if certs.is_empty() {
            return Err(bad("no certificate in it".into()));
        }
        self.tls = tls(&certs)?;
        Ok(self)
    }

    /// At most `n` connections per process (the pool's size).
    pub fn with_max_connections(mut self, n: u32) -> PgTarget {
        self.max_connections = n.max(1);
        self
    }

    /// The same database, every transaction read-only (a dry-run canary).
    pub(crate) fn read_only(&self) -> PgTarget {
        let mut t = self.clone();
        t.config.options("-c default_transaction_read_only=on");
        t
    }

    /// `postgres://user@host:port/db`, without the password.
    pub fn shown(&self) -> &str {
        &self.shown
    }
}

fn shown(c: &Config) -> String {
    let host = c
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(s) => s.clone(),
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = c.get_ports().first().copied().unwrap_or(5432);
    format!(
        "postgres://{}@{host}:{port}/{}",
        c.get_user().unwrap_or(""),
        c.get_dbname().unwrap_or("")
    )
}

/// A database error as a vane error: connection trouble is
/// `store_unavailable` (retryable), everything else `store_error`.
pub(crate) fn pg_err(e: tokio_postgres::Error) -> VaneError {
    if let Some(db) = e.as_db_error() {
        let code = db.code();
        let class = &code.code()[..2];
        if class == "08" || class == "57" || class == "53" {
            return unavailable(db.message());
        }
        if *code == SqlState::T_R_SERIALIZATION_FAILURE || *code == SqlState::T_R_DEADLOCK_DETECTED
        {
            return VaneError::new(
                ErrorCode::StoreError,
                format!("store: {}; retry", db.message()),
            )
            .with_details(json!({ "retryable": true }));
        }
        return VaneError::new(ErrorCode::StoreError, format!("store: {}", db.message()))
            .with_details(json!({ "sqlstate": code.code() }));
    }
    let text = chain(&e);
    if e.is_closed() || e.source().is_some_and(|s| s.is::<std::io::Error>()) {
        return unavailable(&text);
    }
    if text.contains("connect") || text.contains("timed out") {
        return unavailable(&text);
    }
    VaneError::new(ErrorCode::StoreError, format!("store: {text}"))
}

pub(crate) fn unavailable(why: &str) -> VaneError {
    let lower = why.to_lowercase();
    let hint = if lower.contains("tls") || lower.contains("certificate") || lower.contains("ssl") {
        "TLS to the database failed: check the URL's sslmode and that [store] ca_file holds the CA of the server's certificate (issued for the host in the URL)"
    } else if lower.contains("password") || lower.contains("authentication") {
        "the database refused the login: check the URL's user and VANE_STORE_PASSWORD or [store] password_file"
    } else {
        "the PostgreSQL server is down, restarting or unreachable; vane keeps serving and reconnects by itself once it is back (`vane preflight` checks it)"
    };
    VaneError::new(
        ErrorCode::StoreUnavailable,
        format!("the store's database is unavailable ({why}); nothing was changed by this call unless it says otherwise — retry shortly"),
    )
    .with_details(json!({ "retryable": true, "hint": hint }))
}

/// An error with its causes: `error performing TLS handshake: invalid peer
/// certificate: UnknownIssuer`.
fn chain(e: &dyn StdError) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

/// One pooled connection and its prepared statements.
pub(crate) struct PgConn {
    client: Client,
    stmts: HashMap<String, Statement>,
    /// inside a transaction vane opened and has not ended: a connection
    /// given back in this state (a panic mid-transaction, a failed COMMIT)
    /// is discarded by the pool, never handed to the next caller
    in_tx: bool,
}

impl PgConn {
    fn statement(&mut self, sql: &str) -> Result<Statement> {
        if let Some(s) = self.stmts.get(sql) {
            return Ok(s.clone());
        }
        let st = block_on(self.client.prepare(&dollar_params(sql))).map_err(pg_err)?;
        self.stmts.insert(sql.to_string(), st.clone());
        Ok(st)
    }

    /// Runs `run` on the prepared statement; a statement prepared before a
    /// migration changed its tables is prepared again once.
    fn with_statement<T>(
        &mut self,
        sql: &str,
        run: impl Fn(&Client, &Statement) -> std::result::Result<T, tokio_postgres::Error>,
    ) -> Result<T> {
        let st = self.statement(sql)?;
        match run(&self.client, &st) {
            Err(e) if e.code() == Some(&SqlState::FEATURE_NOT_SUPPORTED) => {
                self.stmts.clear();
                let st = self.statement(sql)?;
                run(&self.client, &st).map_err(pg_err)
            }
            r => r.map_err(pg_err),
        }
    }
}

fn refs(params: &[Val]) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|v| v as &(dyn ToSql + Sync)).collect()
}

impl Sql for PgConn {
    fn engine(&self) -> Engine {
        Engine::Postgres
    }

    fn exec(&mut self, sql: &str, params: &[Val]) -> Result<u64> {
        self.with_statement(sql, |c, st| block_on(c.execute(st, &refs(params))))
    }

    fn query(&mut self, sql: &str, params: &[Val]) -> Result<Vec<Row>> {
        let rows = self.with_statement(sql, |c, st| block_on(c.query(st, &refs(params))))?;
        rows.iter()
            .map(|r| {
                (0..r.len())
                    .map(|i| {
                        r.try_get::<_, Val>(i).map_err(|e| {
                            VaneError::new(ErrorCode::StoreError, format!("store: column {i}: {e}"))
                        })
                    })
                    .collect::<Result<Vec<Val>>>()
                    .map(Row)
            })
            .collect()
    }

    fn batch(&mut self, sql: &str) -> Result<()> {
        block_on(self.client.batch_execute(sql)).map_err(pg_err)
    }

    fn query_each(
        &mut self,
        sql: &str,
        params: &[Val],
        each: &mut dyn FnMut(&Row) -> Result<()>,
    ) -> Result<()> {
        use futures_util::StreamExt;
        let stream = self.with_statement(sql, |c, st| {
            block_on(c.query_raw(st, params.iter().map(|v| v as &(dyn ToSql + Sync))))
        })?;
        let mut stream = std::pin::pin!(stream);
        let mut row = Row(Vec::new());
        while let Some(r) = block_on(stream.next()) {
            let r = r.map_err(pg_err)?;
            row.0.clear();
            for i in 0..r.len() {
                row.0.push(r.try_get::<_, Val>(i).map_err(|e| {
                    VaneError::new(ErrorCode::StoreError, format!("store: column {i}: {e}"))
                })?);
            }
            each(&row)?;
        }
        Ok(())
    }
}

impl ToSql for Val {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn StdError + Sync + Send>> {
        match self {
            Val::Null => Ok(IsNull::Yes),
            Val::Int(i) => match *ty {
                Type::INT8 => i.to_sql(ty, out),
                Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*i)?.to_sql(ty, out),
                Type::BOOL => (*i != 0).to_sql(ty, out),
                Type::FLOAT8 => (*i as f64).to_sql(ty, out),
                Type::FLOAT4 => (*i as f32).to_sql(ty, out),
                Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
                    i.to_string().as_str().to_sql(ty, out)
                }
                _ => Err(format!("an integer cannot be sent as {ty}").into()),
            },
            Val::Real(f) => match *ty {
                Type::FLOAT8 => f.to_sql(ty, out),
                Type::FLOAT4 => (*f as f32).to_sql(ty, out),
                _ => Err(format!("a real cannot be sent as {ty}").into()),
            },
            Val::Text(s) => match *ty {
                Type::INT8 => s.parse::<i64>()?.to_sql(ty, out),
                _ => s.as_str().to_sql(ty, out),
            },
            Val::Blob(b) => b.as_slice().to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

impl<'a> FromSql<'a> for Val {
    fn from_sql(
        ty: &Type,
        raw: &'a [u8],
    ) -> std::result::Result<Val, Box<dyn StdError + Sync + Send>> {
        Ok(match *ty {
            Type::INT8 => Val::Int(i64::from_sql(ty, raw)?),
            Type::INT4 => Val::Int(i64::from(i32::from_sql(ty, raw)?)),
            Type::INT2 => Val::Int(i64::from(i16::from_sql(ty, raw)?)),
            Type::BOOL => Val::Int(i64::from(bool::from_sql(ty, raw)?)),
            Type::FLOAT8 => Val::Real(f64::from_sql(ty, raw)?),
            Type::FLOAT4 => Val::Real(f64::from(f32::from_sql(ty, raw)?)),
            Type::BYTEA => Val::Blob(Vec::<u8>::from_sql(ty, raw)?),
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
                Val::Text(String::from_sql(ty, raw)?)
            }
            _ => return Err(format!("a column of type {ty} (cast it in the query)").into()),
        })
    }

    fn from_sql_null(_: &Type) -> std::result::Result<Val, Box<dyn StdError + Sync + Send>> {
        Ok(Val::Null)
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// Opens connections for the pool.
pub(crate) struct Manager {
    target: PgTarget,
}

/// r2d2 wants its own error type.
#[derive(Debug)]
pub(crate) struct ConnectError(String);

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl StdError for ConnectError {}

fn connect(target: &PgTarget) -> std::result::Result<Client, tokio_postgres::Error> {
    let config = target.config.clone();
    let tls = target.tls.clone();
    let task = runtime().spawn(async move {
        let (client, conn) = config.connect(tls).await?;
        tokio::spawn(async move {
            // ends when the server or the client closes the connection
            let _ = conn.await;
        });
        Ok::<_, tokio_postgres::Error>(client)
    });
    match block_on(task) {
        Ok(r) => r,
        Err(join) => std::panic::resume_unwind(join.into_panic()),
    }
}

impl r2d2::ManageConnection for Manager {
    type Connection = PgConn;
    type Error = ConnectError;

    fn connect(&self) -> std::result::Result<PgConn, ConnectError> {
        let client = connect(&self.target).map_err(|e| ConnectError(chain(&e)))?;
        Ok(PgConn {
            client,
            stmts: HashMap::new(),
            in_tx: false,
        })
    }

    fn is_valid(&self, c: &mut PgConn) -> std::result::Result<(), ConnectError> {
        block_on(c.client.simple_query(""))
            .map(drop)
            .map_err(|e| ConnectError(e.to_string()))
    }

    fn has_broken(&self, c: &mut PgConn) -> bool {
        c.in_tx || c.client.is_closed()
    }
}

/// r2d2 logs connection failures through `log`; vane reports them as
/// `store_unavailable` to the caller instead, and traces them once here.
#[derive(Debug)]
struct TraceErrors;

impl r2d2::HandleError<ConnectError> for TraceErrors {
    fn handle_error(&self, error: ConnectError) {
        tracing::debug!(error = %error, "PostgreSQL connection attempt failed");
    }
}

/// One PostgreSQL database: its pool, and what the listener last heard.
/// Clones share both.
#[derive(Clone)]
pub(crate) struct Pg {
    pool: r2d2::Pool<Manager>,
    target: PgTarget,
    /// the flags and store revisions the listener last heard, or -1 while
    /// it is not listening (then readers ask the database)
    heard: Arc<Heard>,
}

pub(crate) type Pooled = r2d2::PooledConnection<Manager>;

impl Pg {
    pub(crate) fn open(target: &PgTarget) -> Pg {
        let pool = r2d2::Pool::builder()
            .max_size(target.max_connections)
            .min_idle(Some(0))
            .test_on_check_out(false)
            .connection_timeout(CONNECT_TIMEOUT)
            .error_handler(Box::new(TraceErrors))
            .build_unchecked(Manager {
                target: target.clone(),
            });
        Pg {
            pool,
            target: target.clone(),
            heard: Arc::new(Heard {
                flags: AtomicI64::new(-1),
                store: AtomicI64::new(-1),
            }),
        }
    }

    pub(crate) fn target(&self) -> &PgTarget {
        &self.target
    }

    /// A connection from the pool, or `store_unavailable`.
    pub(crate) fn conn(&self) -> Result<Pooled> {
        self.pool.get().map_err(|e| {
            let why = e.to_string();
            match why.split_once(": ") {
                // r2d2 names the last connection error, if there was one
                Some((_, cause)) => unavailable(cause),
                // none: the database answers, every pooled connection is busy
                None => VaneError::new(
                    ErrorCode::StoreUnavailable,
                    format!(
                        "all {} connections of this process to the store are busy (waited {} s); retry shortly",
                        self.target.max_connections,
                        CONNECT_TIMEOUT.as_secs()
                    ),
                )
                .with_details(json!({
                    "retryable": true,
                    "hint": "raise [store] max_connections in vane.toml (and PostgreSQL's max_connections to match) if this happens under normal load",
                })),
            }
        })
    }

    /// Runs `f` in a transaction opened with `begin`: committed when it
    /// succeeds, rolled back when it fails.
    pub(crate) fn transaction<T>(
        &self,
        begin: &str,
        f: impl FnOnce(&mut dyn Sql) -> Result<T>,
    ) -> Result<T> {
        self.transaction_ending(begin, true, f)
    }

    /// [`Pg::transaction`], or with `commit` false rolled back even when
    /// `f` succeeds (a rehearsal).
    pub(crate) fn transaction_ending<T>(
        &self,
        begin: &str,
        commit: bool,
        f: impl FnOnce(&mut dyn Sql) -> Result<T>,
    ) -> Result<T> {
        let mut c = self.conn()?;
        c.in_tx = true;
        c.batch(begin)?;
        match f(&mut *c) {
            Ok(v) => {
                c.batch(if commit { "COMMIT" } else { "ROLLBACK" })?;
                c.in_tx = false;
                Ok(v)
            }
            Err(e) => {
                // a broken connection rolls back by itself (and is dropped)
                if c.batch("ROLLBACK").is_ok() {
                    c.in_tx = false;
                }
                Err(e)
            }
        }
    }

    /// The flags revision as the listener last heard it, if it is listening.
    pub(crate) fn heard_flags_revision(&self) -> Option<i64> {
        let v = self.heard.flags.load(Ordering::Acquire);
        (v >= 0).then_some(v)
    }

    /// The store revision of the last exported change the listener heard of.
    pub(crate) fn heard_store_revision(&self) -> Option<i64> {
        let v = self.heard.store.load(Ordering::Acquire);
        (v >= 0).then_some(v)
    }

    /// A flag change this process made (the notification may come later).
    pub(crate) fn saw_flags_revision(&self, rev: i64) {
        let _ = self
            .heard
            .flags
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                (v >= 0).then_some(v.max(rev))
            });
    }

    /// Starts the task that keeps [`Pg::heard_flags_revision`] and
    /// [`Pg::heard_store_revision`] current with `LISTEN`, reconnecting
    /// after a lost connection (meanwhile readers ask the database: the
    /// polling fallback). It ends once every clone of this `Pg` is dropped.
    pub(crate) fn start_listener(&self) {
        let target = self.target.clone();
        let heard = Arc::downgrade(&self.heard);
        runtime().spawn(listen(target, heard));
    }
}

async fn listen(target: PgTarget, heard: std::sync::Weak<Heard>) {
    use futures_util::StreamExt;
    let set = |flags: i64, store: i64| {
        if let Some(h) = heard.upgrade() {
            h.flags.store(flags, Ordering::Release);
            h.store.store(store, Ordering::Release);
        }
    };
    while heard.strong_count() > 0 {
        let attempt = async {
            let mut config = target.config.clone();
            config.application_name("vane-listener");
            let (client, mut conn) = config.connect(target.tls.clone()).await?;
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            // the connection is driven here; it ends (and so does `rx`)
            // when the server goes away
            let forward = tokio::spawn(async move {
                let mut stream = std::pin::pin!(futures_util::stream::poll_fn(
                    move |cx| conn.poll_message(cx)
                ));
                while let Some(Ok(m)) = stream.next().await {
                    if let tokio_postgres::AsyncMessage::Notification(n) = m {
                        let _ = tx.send((n.channel().to_string(), n.payload().to_string()));
                    }
                }
            });
            client
                .batch_execute(&format!("LISTEN {FLAGS_CHANNEL}; LISTEN {STORE_CHANNEL}"))
                .await?;
            // what changed before we listened
            let flags = client
                .query_one("SELECT value FROM meta WHERE key = 'rev_flags'", &[])
                .await?
                .get::<_, i64>(0);
            let store = client
                .query_one("SELECT value FROM meta WHERE key = 'revision'", &[])
                .await?
                .get::<_, i64>(0);
            set(flags, store);
            loop {
                match tokio::time::timeout(Duration::from_secs(2), rx.recv()).await {
                    Ok(Some((channel, payload))) => {
                        if let (Ok(v), Some(h)) = (payload.parse::<i64>(), heard.upgrade()) {
                            let cell = if channel == FLAGS_CHANNEL {
                                &h.flags
                            } else {
                                &h.store
                            };
                            cell.fetch_max(v, Ordering::AcqRel);
                        }
                    }
                    Ok(None) => break,
                    Err(_) if heard.strong_count() == 0 => break,
                    Err(_) => {}
                }
            }
            forward.abort();
            Ok::<_, tokio_postgres::Error>(())
        };
        let r = attempt.await;
        set(-1, -1);
        if let Err(e) = r {
            tracing::debug!(error = %e, "store listener lost its connection; readers poll until it is back");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
