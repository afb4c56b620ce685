//! `hopguard`: the operator's command-line tool, built from the same core as the filter.
//!
//! `check` a plugin configuration, `explain` a decision, `translate` Istio policies, build an
//! `oci-image`. Native only: the wasm32 build of the crate is the filter (`--lib`), and this
//! binary compiles to a stub there.

#[cfg(not(target_arch = "wasm32"))]
#[path = "../cli/mod.rs"]
mod cli;

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let code = cli::run(&args);
    std::process::exit(code);
}

#[cfg(target_arch = "wasm32")]
fn main() {
    // The filter is the library; the command-line tool runs on the operator's machine.
}
