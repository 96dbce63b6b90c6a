//! The `wsloop` command-line tool: `serve` runs an echo (or broadcast, discard or chat) server with a live
//! dashboard, `bench` is a load generator built on in-loop client connections (with an HTML report),
//! `client` is an interactive client for a terminal or a pipe, and `autobahn-client` runs the
//! Autobahn|Testsuite client cases.

mod autobahn;
mod bench;
mod chat;
mod client;
mod dashboard;
mod limits;
mod pages;
mod serve;
mod util;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "wsloop", version, about = "A per-core reactor WebSocket engine: server, client and tools")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a WebSocket server (echo by default) with a live dashboard, until SIGINT or SIGTERM.
    Serve(Box<serve::ServeArgs>),
    /// Measure an echo server: many connections, closed-loop, latency percentiles.
    Bench(bench::BenchArgs),
    /// Interactive client: stdin lines become messages, received messages are printed.
    Client(client::ClientArgs),
    /// Run the Autobahn|Testsuite client cases against a fuzzing server (`wstest -m fuzzingserver`).
    AutobahnClient(autobahn::AutobahnClientArgs),
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    match Cli::parse().command {
        Command::Serve(args) => serve::run(*args),
        Command::Bench(args) => bench::run(args),
        Command::Client(args) => client::run(args),
        Command::AutobahnClient(args) => autobahn::run(args),
    }
}
