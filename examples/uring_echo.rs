//! EXPERIMENTAL: the io_uring echo server (`wsloop::server::uring::run_echo`, feature `io-uring`), one
//! thread, for measuring it against `wsloop serve --threads 1` (docs/benchmarks.md, issue 18).
//!
//! ```text
//! cargo build --release --features io-uring --example uring_echo
//! target/release/examples/uring_echo serve --addr 127.0.0.1:9001 --threads 1
//! ```
//!
//! It takes `wsloop serve`'s form of command line (`serve`, `--addr`, `--threads 1`) and prints the
//! same first line, so the benchmark scripts start it like `wsloop serve`. SIGINT or SIGTERM stops it;
//! it then prints its counters (messages, `io_uring_enter` calls) on stderr. Under valgrind, where
//! signals do not reach it, `--exit-when-idle` makes it stop once its last connection closed
//! (`scripts/callgrind-echo.sh BINARY -- --exit-when-idle`).

use std::net::TcpListener;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use wsloop::server::uring::{run_echo, UringEchoConfig};

fn main() {
    let mut addr = "127.0.0.1:9001".to_owned();
    let mut config = UringEchoConfig::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "serve" => {}
            "--addr" => addr = args.next().unwrap_or_else(|| usage("--addr wants HOST:PORT")),
            "--threads" => {
                if args.next().as_deref() != Some("1") {
                    usage("the io_uring prototype runs one thread: --threads 1");
                }
            }
            "--exit-when-idle" => config.exit_when_idle = true,
            "--buffers" => config.ring.buffers = number(args.next()),
            "--buffer-size" => config.ring.buffer_size = number(args.next()),
            other => usage(&format!("unknown argument {other}")),
        }
    }
    let listener = TcpListener::bind(&addr).unwrap_or_else(|e| {
        eprintln!("uring_echo: cannot listen on {addr}: {e}");
        std::process::exit(1)
    });
    let local = listener.local_addr().expect("local address");
    let stop = Arc::new(AtomicBool::new(false));
    // A thread that waits for the signals (rather than a flag set in the handler): under valgrind a
    // signal's handler does not run while the loop thread sits in io_uring_enter.
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM])
        .expect("signal handler");
    let flag = Arc::clone(&stop);
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            flag.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    });
    println!("wsloop serving on ws://{local} (io_uring prototype, 1 thread)");
    match run_echo(listener, config, &stop) {
        Ok(stats) => eprintln!("uring_echo: {stats:?}"),
        Err(e) => {
            eprintln!("uring_echo: {e}");
            std::process::exit(1)
        }
    }
}

fn number<T: std::str::FromStr>(arg: Option<String>) -> T {
    arg.and_then(|a| a.parse().ok()).unwrap_or_else(|| usage("--buffers and --buffer-size want a number"))
}

fn usage(why: &str) -> ! {
    eprintln!("uring_echo: {why}\nusage: uring_echo [serve] [--addr HOST:PORT] [--threads 1] [--exit-when-idle]\n       [--buffers N (a power of two, default 1024)] [--buffer-size BYTES (default 8192)]");
    std::process::exit(2)
}
