//! `vane` — the command-line entry point: serve MCP over stdio, initialise a
//! workspace, and mirror the useful tools for people (`status`, `next`,
//! `task update`, `critics run`, `roadmap import/export/show`) with readable
//! tables and `--json` for machines. Every subcommand goes through the same
//! tool pipeline as MCP clients, so people and agents see the same rules.
#![forbid(unsafe_code)]

mod cli;
mod demo;
mod dispatch_cli;
mod render;
mod store_cli;
mod upgrade;

use std::process::ExitCode;

fn main() -> ExitCode {
    vane_dispatch::install_tls();
    vane_tools::failpoints_setup();
    cli::main()
}
