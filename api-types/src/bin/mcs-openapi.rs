//! Writes the OpenAPI document derived from the wire types: to the path given, or to
//! standard output. `cargo xtask openapi` runs it for `docs/openapi.yaml`.

use std::process::ExitCode;

fn main() -> ExitCode {
    let yaml = mcs_api::openapi::yaml();
    match std::env::args_os().nth(1) {
        None => {
            print!("{yaml}");
            ExitCode::SUCCESS
        }
        Some(path) => match std::fs::write(&path, yaml) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {}: {e}", path.to_string_lossy());
                ExitCode::FAILURE
            }
        },
    }
}
