//! `apono`: request just-in-time access, approve it and use it. Wiring only: the commands
//! are in `commands`, the HTTP client in the `apono-client` crate.

mod cli;
mod commands;
mod context;
mod interactive;
mod output;
mod sso;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use crate::context::{Context, Failure};

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    if cli.verbose {
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_max_level(tracing::Level::DEBUG)
            .init();
    }
    let ctx = Context {
        profile: cli.profile,
        verbose: cli.verbose,
    };
    let interactive = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    if cli.command.is_none() && !interactive {
        let _ = cli::Cli::command().write_help(&mut std::io::stderr());
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return report(&ctx, &anyhow::anyhow!("cannot start: {e}")),
    };
    let result = runtime.block_on(async {
        match cli.command {
            Some(command) => commands::run(&ctx, command).await,
            None => interactive::run(&ctx).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => report(&ctx, &e),
    }
}

/// Prints the error once: one line, or the whole chain with `--verbose`. Exit status 2 for
/// usage errors, 1 otherwise.
fn report(ctx: &Context, e: &anyhow::Error) -> ExitCode {
    // The one place the binary reports an error.
    #[allow(clippy::print_stderr)]
    if ctx.verbose {
        eprintln!("error: {e:#}");
    } else {
        eprintln!("error: {e}");
    }
    match e.downcast_ref::<Failure>() {
        Some(f) if f.usage => ExitCode::from(2),
        _ => ExitCode::FAILURE,
    }
}
