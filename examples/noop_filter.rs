//! A proxy-wasm HTTP filter that decides nothing: the floor any Rust Wasm filter pays in Envoy.
//! scripts/bench measures it next to hopguard, so hopguard's own per-request cost is the
//! difference. wasm32 only; an empty program elsewhere.
//!
//! Three modes, chosen by the plugin configuration:
//! - anything else (e.g. `{}`): nothing per request (a VM call per request and its context
//!   bookkeeping);
//! - `token-floor`: the least any Wasm filter that consumes a bearer token must do: read the
//!   `authorization` header (one value, not the whole map) and remove it, as `jwt_authn` does by
//!   default. Nothing is decided; set against native `jwt_authn` with its cache on, it shows what
//!   a cached token costs a Wasm filter before any work of its own;
//! - `host-calls`: the proxy-wasm host calls hopguard's shell makes for a request answered from
//!   its verified-token cache, in the same order, and nothing else: read the request headers,
//!   read the clock (proxy-wasm wall time and two monotonic readings), add to three counters,
//!   record one histogram sample, remove `authorization`. The gap between this and hopguard on a
//!   cache hit is what hopguard computes; this minus the no-op is what the ABI costs in Envoy.
//!
//! `cargo build --release --target wasm32-wasip1 --example noop_filter`
#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]

#[cfg(target_arch = "wasm32")]
mod filter {
    use proxy_wasm::hostcalls;
    use proxy_wasm::traits::{Context, HttpContext, RootContext};
    use proxy_wasm::types::{Action, BufferType, ContextType, MapType, MetricType};
    use std::hint::black_box;
    use std::rc::Rc;

    proxy_wasm::main! {{
        proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root { mode: Mode::Nothing }) });
    }}

    /// Metric ids of the `host-calls` mode: three counters and a histogram.
    struct Calls {
        counters: [u32; 3],
        histogram: u32,
    }

    /// What the filter does per request.
    #[derive(Clone)]
    enum Mode {
        Nothing,
        TokenFloor,
        HostCalls(Rc<Calls>),
    }

    struct Root {
        mode: Mode,
    }

    impl Context for Root {}

    impl RootContext for Root {
        fn on_configure(&mut self, _size: usize) -> bool {
            let config = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
                .ok()
                .flatten()
                .unwrap_or_default();
            match config.trim_ascii() {
                b"host-calls" => {}
                b"token-floor" => {
                    self.mode = Mode::TokenFloor;
                    return true;
                }
                _ => return true,
            }
            let define = |kind, name: &str| hostcalls::define_metric(kind, name).ok();
            let ids = (
                define(MetricType::Counter, "noop.requests"),
                define(MetricType::Counter, "noop.provider_requests"),
                define(MetricType::Counter, "noop.token_cache"),
                define(MetricType::Histogram, "noop.duration_us"),
            );
            if let (Some(a), Some(b), Some(c), Some(h)) = ids {
                self.mode = Mode::HostCalls(Rc::new(Calls {
                    counters: [a, b, c],
                    histogram: h,
                }));
            }
            true
        }

        fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
            Some(Box::new(Noop {
                mode: self.mode.clone(),
            }))
        }

        fn get_type(&self) -> Option<ContextType> {
            Some(ContextType::HttpContext)
        }
    }

    struct Noop {
        mode: Mode,
    }

    impl Context for Noop {}

    impl HttpContext for Noop {
        fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
            let calls = match &self.mode {
                Mode::Nothing => return Action::Continue,
                Mode::TokenFloor => {
                    black_box(hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, "authorization").ok());
                    let _ = hostcalls::set_map_value_bytes(MapType::HttpRequestHeaders, "authorization", None);
                    return Action::Continue;
                }
                Mode::HostCalls(calls) => calls,
            };
            let started = std::time::Instant::now();
            black_box(
                hostcalls::get_map_bytes(MapType::HttpRequestHeaders)
                    .map(|h| h.len())
                    .ok(),
            );
            black_box(hostcalls::get_current_time().ok());
            for id in calls.counters {
                let _ = hostcalls::increment_metric(id, 1);
            }
            let us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
            let _ = hostcalls::record_metric(calls.histogram, us);
            let _ = hostcalls::set_map_value_bytes(MapType::HttpRequestHeaders, "authorization", None);
            Action::Continue
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn main() {}
