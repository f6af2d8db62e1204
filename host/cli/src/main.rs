//! `imageai`: the command-line face of ImageAI. Parses arguments, opens the core, runs one
//! command, and maps failures to exit codes and messages that say what to do next.

mod args;
mod commands;
mod exit;
mod output;

use clap::Parser;

use crate::args::{Cli, Command};
use crate::exit::Failure;

fn main() {
    // Decided before parsing so that even a usage error comes back as JSON when asked for.
    let json = std::env::args().any(|arg| arg == "--json");
    let cli = Cli::parse();
    init_tracing(cli.global.verbose);
    let code = match run(cli) {
        Ok(()) => 0,
        Err(failure) => {
            output::error(&failure, json);
            failure.code
        }
    };
    std::process::exit(code);
}

fn run(cli: Cli) -> Result<(), Failure> {
    if cli.command.is_some() && cli.legacy != args::Legacy::default() {
        return Err(Failure::usage(
            "put generation flags after the subcommand (`imageai generate -p …`), or use them without one (`imageai -p …`)",
        ));
    }
    match cli.command {
        Some(Command::Generate(args)) => commands::generate::run(args),
        Some(Command::Upscale(args)) => commands::generate::upscale(args),
        Some(Command::Providers(args)) => commands::providers::run(args),
        Some(Command::Keys { action }) => commands::keys::run(action),
        Some(Command::History { action }) => commands::history::run(action),
        Some(Command::Templates { action }) => commands::templates::run(action),
        Some(Command::Plugin { action }) => commands::plugin::run(action),
        Some(Command::Models { action }) => commands::models::run(action),
        None => commands::legacy(cli.legacy),
    }
}

fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("IMAGEAI_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
