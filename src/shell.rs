//! The proxy-wasm shell: reads what the core needs from Envoy, applies the core's
//! answer. No decisions are made here.

use crate::config::Config;
use crate::decision::{self, Decision, Verdict};
use crate::request::{Mutation, Request};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use std::rc::Rc;
use std::time::UNIX_EPOCH;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    std::panic::set_hook(Box::new(|info| {
        let _ = proxy_wasm::hostcalls::log(LogLevel::Critical, &format!("hopguard: panic: {info}"));
    }));
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root { config: None }) });
}}

struct Root {
    config: Option<Rc<Config>>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = self.get_plugin_configuration().unwrap_or_default();
        match Config::parse(&bytes) {
            Ok(cfg) => {
                for note in &cfg.notes {
                    log::warn!("hopguard: {note}");
                }
                log::info!(
                    "hopguard: configured {} provider(s), requirement {:?}",
                    cfg.providers.len(),
                    cfg.requirement
                );
                self.config = Some(Rc::new(cfg));
                true
            }
            Err(e) => {
                log::error!("hopguard: configuration refused: {e}");
                self.config = None;
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http {
            config: self.config.clone(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Http {
    config: Option<Rc<Config>>,
}

impl Context for Http {}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        // The bytes variant: header values may carry obs-text that is not UTF-8, and the
        // SDK's String variant would panic on it.
        let headers = self
            .get_http_request_headers_bytes()
            .into_iter()
            .map(|(name, value)| (name, String::from_utf8_lossy(&value).into_owned()))
            .collect();
        let req = Request::new(headers);
        let now = self
            .get_current_time()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let decision = match &self.config {
            Some(cfg) => decision::decide(cfg, &req, now),
            None => decision::unconfigured(&req),
        };
        self.apply(decision)
    }
}

impl Http {
    fn apply(&self, d: Decision) -> Action {
        let record = d.record.to_json();
        match d.verdict {
            Verdict::Allow => {
                log::debug!("hopguard: decision {record}");
                for m in &d.mutations {
                    match m {
                        Mutation::Remove(name) => self.set_http_request_header(name, None),
                        Mutation::Add(name, value) => self.add_http_request_header(name, value),
                        Mutation::Set(name, value) => self.set_http_request_header(name, Some(value)),
                    }
                }
                Action::Continue
            }
            Verdict::Deny(denial) => {
                log::info!("hopguard: decision {record}");
                let headers: Vec<(&str, &str)> = denial.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
                self.send_http_response(u32::from(denial.status), headers, Some(denial.body.as_bytes()));
                Action::Pause
            }
        }
    }
}
