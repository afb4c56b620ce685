//! The `hopguard` command-line tool: argument handling, help, and dispatch to the commands.
//!
//! Every command is a function from its parsed arguments to an [`Outcome`] (exit code, stdout,
//! stderr); only [`run`] touches the process's streams.
//!
//! Exit codes: 0 ok / allowed, 1 invalid / denied, 2 usage error or unreadable input.

mod args;
mod check;
mod explain;
mod input;
mod oci;
mod summary;
mod time;
mod translate;

use std::ffi::OsString;
use std::io::Write;

pub const EXIT_OK: i32 = 0;
pub const EXIT_FAIL: i32 = 1;
pub const EXIT_USAGE: i32 = 2;

/// Text for people, or one JSON document for programs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

/// What a command produced.
#[derive(Debug, Default)]
pub struct Outcome {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    pub fn usage(message: &str, command: Option<&str>) -> Outcome {
        let hint = match command {
            Some(c) => format!("run 'hopguard {c} --help' for usage"),
            None => "run 'hopguard --help' for usage".to_owned(),
        };
        Outcome {
            code: EXIT_USAGE,
            stdout: String::new(),
            stderr: format!("hopguard: {message}\n{hint}\n"),
        }
    }

    /// A failure to even do the job (unreadable input, unwritable output): exit 2.
    pub fn trouble(message: &str) -> Outcome {
        Outcome {
            code: EXIT_USAGE,
            stdout: String::new(),
            stderr: format!("hopguard: {message}\n"),
        }
    }

    fn text(code: i32, stdout: String) -> Outcome {
        Outcome {
            code,
            stdout,
            stderr: String::new(),
        }
    }
}

const VERSION: &str = env!("CARGO_PKG_VERSION");

const HELP: &str = "\
hopguard - operator's tool for the hopguard token filter (JWT validation in Envoy and Istio)

Usage: hopguard <COMMAND> [OPTIONS]

Commands:
  check      Check a plugin configuration exactly as the filter would (JSON, or the
             pluginConfig of an Istio WasmPlugin, or the hopguard filter in an Envoy config)
  explain    Show what the filter decides for a token and request, and why
  translate  Turn Istio RequestAuthentication and AuthorizationPolicy resources into a hopguard
             plugin configuration
  oci-image  Build a reproducible OCI image (layout and tarball) of the filter for Istio
  reasons    List every refusal reason: code, HTTP status, title and description
  help       Show help for a command

Options:
  -o, --output <text|json>  Output format (default: text)
  -h, --help                Show help
  -V, --version             Show the version

Exit codes:
  0  ok: the configuration is valid, the request is allowed, the command succeeded
  1  not ok: the configuration is refused, the request is denied, the translation is incomplete
  2  usage error, or an input that cannot be read

Run 'hopguard help <COMMAND>' for a command's options.
";

const CHECK_HELP: &str = "\
Check a plugin configuration exactly as the filter would.

Usage: hopguard check [OPTIONS] <CONFIG>

Arguments:
  <CONFIG>  A file, or - for stdin. Either the plugin configuration JSON (what Envoy's
            `configuration` or Istio's `pluginConfig` delivers), or YAML holding Istio
            WasmPlugin resources (their spec.pluginConfig is checked), EnvoyFilter resources
            or Envoy configs embedding the hopguard Wasm filter (its configuration is checked),
            or the plugin configuration written as YAML.

Prints what the filter would log when it refuses a configuration
(`configuration refused: <JSON path>: <message>`), or a summary of an accepted one.

Options:
  -o, --output <text|json>  Output format (default: text)
  -h, --help                Show this help

Exit codes: 0 every configuration is accepted, 1 one is refused, 2 usage error.
";

const EXPLAIN_HELP: &str = "\
Show what the filter decides for a request, and why.

Usage: hopguard explain --config <CONFIG> [--token <TOKEN>] [OPTIONS]

Runs the filter's own decision function on the request described by the options, arriving over
the connection they describe, and prints the verdict, the reason code, the policy rule that
decided, the response the client would get (status, WWW-Authenticate, problem body), the
provider and key id, the token's header and claims, and the changes made to the request before
it goes upstream. The token itself and its signature are never printed; its fingerprint is (the
same one the filter logs).

Options:
      --config <CONFIG>      The configuration, as for 'hopguard check' (a file or -)
      --token <TOKEN>        The token: the value itself, @FILE to read it from a file, or - for
                             stdin. Without it, the request carries no token (unless --header
                             adds one)
      --token-in <LOCATION>  Where to put the token: header:NAME, param:NAME or cookie:NAME
                             (default: the first location of the provider for the token's iss)
      --method <METHOD>      Request method (default: GET)
      --path <PATH>          Request path and query (default: /)
      --host <HOST>          Request authority (default: localhost)
      --header <'NAME: VALUE'>  A request header; repeat for more
      --at <TIME>            The time of the request: Unix seconds or YYYY-MM-DDTHH:MM:SSZ
                             (default: now)
      --jwks <ISSUER=FILE>   Use the JWK Set in FILE as the keys of the provider with this
                             issuer (or name), instead of fetching them (jwksUri, OIDC);
                             repeat for more providers
      --peer <SPIFFE-ID>     The calling workload's mTLS identity, the peer certificate's URI
                             SAN (spiffe://cluster.local/ns/NS/sa/SA; the scheme may be left
                             out), for policies on principals, namespaces and workload binding
                             (default: no mTLS peer)
      --peer-cert-sha256 <HEX>  The SHA-256 of the peer's certificate (64 hex digits, colons
                             allowed), for certificate-bound tokens (cnf x5t#S256)
  -o, --output <text|json>   Output format (default: text)
  -h, --help                 Show this help

Exit codes: 0 allowed, 1 denied (or the configuration is refused), 2 usage error.
";

const TRANSLATE_HELP: &str = "\
Translate Istio RequestAuthentication and AuthorizationPolicy resources into a hopguard plugin
configuration.

Usage: hopguard translate [OPTIONS] <FILE.yaml>

Reads security.istio.io/v1 and v1beta1 resources (a file, or - for stdin) into one
configuration. Each jwtRule becomes a provider (issuer, audiences, jwks, fromHeaders,
fromParams, fromCookies, forwardOriginalToken, outputPayloadToHeader, outputClaimToHeaders).
Each AuthorizationPolicy becomes a policy of the authorization section, in the same vocabulary
(action ALLOW, DENY or AUDIT; rules with from.source, to.operation and when); the
istio.io/dry-run annotation becomes dryRun. A missing token passes Istio's
RequestAuthentication and is refused by a policy that needs a request principal, so the
configuration says requirement allowMissing and such a request gets 403, as in Istio.
What hopguard does not support is dropped the way Istio treats attributes it cannot evaluate:
an ALLOW or AUDIT rule is skipped, a DENY rule loses the field or condition; CUSTOM policies
are skipped. Selectors and targetRefs belong on the WasmPlugin. Everything that cannot be
expressed gets a note.

Prints the configuration JSON on stdout and the notes on stderr (text), or one JSON document
{config, valid, error, notes} (json). The configuration is checked with the filter's parser.

Options:
      --wasmplugin <URL>    Print a WasmPlugin manifest (YAML) for the url instead of the bare
                            configuration, with the selector and namespace of the input
  -o, --output <text|json>  Output format (default: text)
  -h, --help                Show this help

Exit codes: 0 translated into a valid configuration, 1 the result is not yet a valid
configuration (see the notes) or the input holds no RequestAuthentication (a configuration
needs a provider), 2 usage error.
";

const OCI_HELP: &str = "\
Build an OCI image of the filter in Istio's Wasm image format, with no network.

Usage: hopguard oci-image --wasm <PATH> --out <DIR> [OPTIONS]

Writes an OCI image layout to DIR (oci-layout, index.json, blobs/sha256/) and a tarball of it.
The output depends only on the wasm bytes and the options: fixed timestamps, owners and
modes, sorted entries, so two builds give the same digests.

Variants (both load in Istio's WasmPlugin; see pkg/wasm/imagefetcher.go in istio/istio):
  oci     (default) two layers: application/vnd.module.wasm.config.v1+json (runtime-config.json)
          and application/vnd.module.wasm.content.layer.v1+wasm (the module, byte for byte);
          the manifest config is the runtime config (application/vnd.module.wasm.config.v1+json)
  compat  one application/vnd.oci.image.layer.v1.tar+gzip layer holding plugin.wasm, with a
          standard image config: for registries and tools that refuse custom media types

Prints the manifest digest (the WasmPlugin spec.sha256 for an oci:// url) and the wasm's
SHA-256 (spec.sha256 for http(s):// and file:// urls, and Envoy's vm_config code sha256).

Options:
      --wasm <PATH>          The filter (target/hopguard.wasm, built by scripts/setup)
      --out <DIR>            The OCI layout directory (created; an existing layout is replaced)
      --tag <TAG>            The tag recorded in index.json (default: the crate version)
      --variant <oci|compat> Image variant (default: oci)
      --tarball <PATH>       Where to write the tarball (default: DIR.tar)
  -o, --output <text|json>   Output format (default: text)
  -h, --help                 Show this help

Exit codes: 0 written, 1 the input is not a WebAssembly module, 2 usage or I/O error.
";

const REASONS_HELP: &str = "\
List every refusal reason of the filter.

Usage: hopguard reasons [OPTIONS]

Options:
  -o, --output <text|json>  Output format (default: text)
  -h, --help                Show this help
";

fn help_for(command: &str) -> Option<&'static str> {
    match command {
        "check" => Some(CHECK_HELP),
        "explain" => Some(EXPLAIN_HELP),
        "translate" => Some(TRANSLATE_HELP),
        "oci-image" => Some(OCI_HELP),
        "reasons" => Some(REASONS_HELP),
        _ => None,
    }
}

/// Runs the tool on `args` (without the program name), writes its output, returns the exit code.
pub fn run(args: &[OsString]) -> i32 {
    let outcome = dispatch(args);
    let mut ok = true;
    if !outcome.stdout.is_empty() {
        let mut out = std::io::stdout().lock();
        ok &= out
            .write_all(outcome.stdout.as_bytes())
            .and_then(|_| out.flush())
            .is_ok();
    }
    if !outcome.stderr.is_empty() {
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(outcome.stderr.as_bytes());
    }
    if ok {
        outcome.code
    } else {
        EXIT_USAGE
    }
}

fn dispatch(args: &[OsString]) -> Outcome {
    let Some((first, rest)) = args.split_first() else {
        return Outcome::usage("no command given", None);
    };
    let Some(command) = first.to_str() else {
        return Outcome::usage("the command is not valid UTF-8", None);
    };
    match command {
        "-h" | "--help" => return Outcome::text(EXIT_OK, HELP.to_owned()),
        "-V" | "--version" => return Outcome::text(EXIT_OK, format!("hopguard {VERSION}\n")),
        "help" => {
            return match rest.first().and_then(|c| c.to_str()) {
                None => Outcome::text(EXIT_OK, HELP.to_owned()),
                Some(c) => match help_for(c) {
                    Some(h) => Outcome::text(EXIT_OK, h.to_owned()),
                    None => Outcome::usage(&format!("unknown command {c:?}"), None),
                },
            }
        }
        _ => {}
    }
    let Some(help) = help_for(command) else {
        return Outcome::usage(&format!("unknown command {command:?}"), None);
    };
    let specs: &[args::Spec] = match command {
        "check" => check::SPECS,
        "explain" => explain::SPECS,
        "translate" => translate::SPECS,
        "oci-image" => oci::SPECS,
        _ => &[],
    };
    let parsed = match args::parse(rest, specs) {
        Ok(p) => p,
        Err(e) => return Outcome::usage(&e, Some(command)),
    };
    if parsed.flag("help") {
        return Outcome::text(EXIT_OK, help.to_owned());
    }
    if parsed.flag("version") {
        return Outcome::text(EXIT_OK, format!("hopguard {VERSION}\n"));
    }
    let format = match parsed.value("output") {
        None | Some("text") => Format::Text,
        Some("json") => Format::Json,
        Some(other) => return Outcome::usage(&format!("--output must be text or json, not {other:?}"), Some(command)),
    };
    match command {
        "check" => check::run(&parsed, format),
        "explain" => explain::run(&parsed, format),
        "translate" => translate::run(&parsed, format),
        "oci-image" => oci::run(&parsed, format),
        _ => reasons(&parsed, format),
    }
}

/// `hopguard reasons`: the reason table, for troubleshooting by code.
fn reasons(parsed: &args::Parsed, format: Format) -> Outcome {
    if !parsed.positionals.is_empty() {
        return Outcome::usage("reasons takes no arguments", Some("reasons"));
    }
    let rows: Vec<hopguard::reason::Spec> = hopguard::reason::Reason::ALL.iter().map(|r| r.spec()).collect();
    let stdout = match format {
        Format::Json => {
            let list: Vec<serde_json::Value> = rows
                .iter()
                .map(|s| {
                    serde_json::json!({
                        "code": s.code,
                        "status": s.status,
                        "bearerError": s.bearer_error.map(|e| e.as_str()),
                        "title": s.title,
                        "description": s.description,
                    })
                })
                .collect();
            json_line(&serde_json::json!({ "reasons": list }))
        }
        Format::Text => {
            let mut out = String::new();
            for s in &rows {
                let bearer = s.bearer_error.map(|e| e.as_str()).unwrap_or("-");
                out.push_str(&format!(
                    "{:<20} {}  {:<18} {}: {}\n",
                    s.code, s.status, bearer, s.title, s.description
                ));
            }
            out
        }
    };
    Outcome::text(EXIT_OK, stdout)
}

/// Pretty JSON followed by a newline.
pub fn json_line(v: &serde_json::Value) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_else(|_| "null".to_owned());
    s.push('\n');
    s
}
