//! `hopguard check CONFIG`: the filter's own configuration parser, and exactly its log line.

use super::args::{Parsed, Spec};
use super::input::{config_documents, read_source};
use super::{json_line, summary, Format, Outcome, EXIT_FAIL, EXIT_OK};
use hopguard::config::Config;
use serde_json::{json, Value};

pub const SPECS: &[Spec] = &[];

/// What the filter logs (after its `hopguard: ` prefix) when it refuses a configuration.
pub fn refusal_log(e: &hopguard::config::ConfigError) -> String {
    format!("configuration refused: {e}")
}

pub fn run(parsed: &Parsed, format: Format) -> Outcome {
    let [source] = parsed.positionals.as_slice() else {
        return Outcome::usage("check needs exactly one CONFIG (a file, or - for stdin)", Some("check"));
    };
    let (label, bytes) = match read_source(source) {
        Ok(x) => x,
        Err(e) => return Outcome::trouble(&e),
    };
    let docs = match config_documents(&label, &bytes) {
        Ok(d) => d,
        Err(e) => {
            return match format {
                Format::Json => Outcome {
                    code: EXIT_FAIL,
                    stdout: json_line(&json!({"valid": false, "documents": [], "error": e})),
                    stderr: String::new(),
                },
                Format::Text => Outcome {
                    code: EXIT_FAIL,
                    stdout: String::new(),
                    stderr: format!("hopguard: {e}\n"),
                },
            }
        }
    };
    let single = docs.len() == 1 && docs.first().is_some_and(|d| d.label == label);
    let mut all_valid = true;
    let mut text = String::new();
    let mut results: Vec<Value> = Vec::new();
    for doc in &docs {
        let prefix = if single {
            String::new()
        } else {
            format!("{}: ", doc.label)
        };
        for w in &doc.warnings {
            text.push_str(&format!("{prefix}warning: {w}\n"));
        }
        match Config::parse(&doc.bytes) {
            Ok(cfg) => {
                text.push_str(&format!(
                    "{prefix}ok: configuration accepted ({} provider{})\n",
                    cfg.providers.len(),
                    if cfg.providers.len() == 1 { "" } else { "s" }
                ));
                text.push_str(&summary::to_text(&cfg));
                for note in &cfg.notes {
                    text.push_str(&format!("  note: {note}\n"));
                }
                results.push(json!({
                    "source": doc.label,
                    "warnings": doc.warnings,
                    "valid": true,
                    "error": null,
                    "log": null,
                    "summary": summary::to_json(&cfg),
                    "notes": cfg.notes,
                }));
            }
            Err(e) => {
                all_valid = false;
                let log = refusal_log(&e);
                text.push_str(&format!("{prefix}{log}\n"));
                results.push(json!({
                    "source": doc.label,
                    "warnings": doc.warnings,
                    "valid": false,
                    "error": {"path": e.path, "message": e.message},
                    "log": log,
                    "summary": null,
                    "notes": [],
                }));
            }
        }
    }
    let code = if all_valid { EXIT_OK } else { EXIT_FAIL };
    let stdout = match format {
        Format::Json => json_line(&json!({"valid": all_valid, "documents": results})),
        Format::Text => text,
    };
    Outcome {
        code,
        stdout,
        stderr: String::new(),
    }
}
