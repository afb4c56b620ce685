//! A proxy-wasm HTTP filter that does nothing: the floor any Rust Wasm filter pays in Envoy (a VM
//! call per request and its context bookkeeping). scripts/bench measures it next to hopguard, so
//! hopguard's own per-request cost is the difference. wasm32 only; an empty program elsewhere.
//!
//! `cargo build --release --target wasm32-wasip1 --example noop_filter`
#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]

#[cfg(target_arch = "wasm32")]
mod filter {
    use proxy_wasm::traits::{Context, HttpContext, RootContext};
    use proxy_wasm::types::{Action, ContextType};

    proxy_wasm::main! {{
        proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root) });
    }}

    struct Root;
    impl Context for Root {}
    impl RootContext for Root {
        fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
            Some(Box::new(Noop))
        }
        fn get_type(&self) -> Option<ContextType> {
            Some(ContextType::HttpContext)
        }
    }

    struct Noop;
    impl Context for Noop {}
    impl HttpContext for Noop {
        fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
            Action::Continue
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn main() {}
