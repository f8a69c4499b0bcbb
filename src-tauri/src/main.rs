// Without a console window on Windows release builds.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

use std::process::ExitCode;

fn main() -> ExitCode {
    keyport_desktop::init_tracing();
    match keyport_desktop::app::run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "Keyport could not start");
            ExitCode::FAILURE
        }
    }
}
