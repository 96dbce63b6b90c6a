//! `wsloop client`: an interactive client in the manner of websocat. Every stdin line becomes a message;
//! every received message is printed on stdout; EOF on stdin closes with 1000 and waits for the server's
//! answer.
//!
//! Exit status: 0 after a normal close (1000 or 1001, or a close frame without a code: 1005); 1 when
//! no connection was made (bad URL, header or proxy, TCP, proxy or handshake failure); 2 when an open
//! connection ended otherwise (another close code, a protocol error, a reset, a pong timeout).

use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use wsloop::client::{self, ClientOptions, ClientSender, Error as ClientError, Message};
use wsloop::proto::CloseCode;

use crate::util::{duration, header, ProxyArgs};

const AFTER_HELP: &str = "\
Output: text messages are printed as they are, one per line; binary messages as lowercase hex, one \
per line (or as raw bytes with --raw). Errors and, with -v, connection events go to stderr.

Proxy: --proxy URL, else (unless --no-proxy) the environment as curl reads it: ws_proxy, http_proxy \
(lowercase only), all_proxy for ws://; wss_proxy, https_proxy, all_proxy for wss://; no_proxy lists \
hosts, domains, addresses and CIDR ranges to reach directly (* for all).

Exit status: 0 after a normal close (1000 normal closure, 1001 going away, or 1005 a close frame \
without a code); 1 when no connection was made (bad URL, header or proxy, TCP, proxy or handshake \
failure); 2 when \
the connection ended any other way (another close code, a protocol error, a reset, a pong timeout). \
Command-line mistakes other than the URL and -H (an unknown flag, a bad duration) are reported by the \
argument parser with status 2 before anything is attempted.";

#[derive(Args)]
#[command(after_help = AFTER_HELP)]
pub(crate) struct ClientArgs {
    /// The server's URL, e.g. ws://127.0.0.1:9001/chat.
    url: String,
    /// Send stdin lines as binary messages (default: text).
    #[arg(long)]
    binary: bool,
    /// Print received binary messages as raw bytes (default: hex), without adding a newline.
    #[arg(long)]
    raw: bool,
    /// Subprotocol to offer (repeatable, most preferred first).
    #[arg(long = "protocol")]
    protocols: Vec<String>,
    /// Extra request header 'Name: value' (repeatable).
    #[arg(short = 'H', long = "header")]
    headers: Vec<String>,
    /// Send a ping after this long without traffic (e.g. 20s); the connection is dropped when the
    /// pong does not come within --pong-timeout.
    #[arg(long, value_parser = duration)]
    ping_interval: Option<Duration>,
    /// Time allowed for the pong answering a keepalive ping.
    #[arg(long, value_parser = duration, default_value = "10s")]
    pong_timeout: Duration,
    /// Time allowed for TCP connect, and again for the handshake.
    #[arg(long, value_parser = duration, default_value = "10s")]
    connect_timeout: Duration,
    /// Time allowed for the server to answer our close.
    #[arg(long, value_parser = duration, default_value = "5s")]
    close_timeout: Duration,
    /// Largest message accepted, in bytes.
    #[arg(long, default_value_t = 64 << 20)]
    max_message_size: usize,
    /// For wss:// URLs: trust only the CA certificate(s) in this PEM file (default: the Mozilla root
    /// CAs).
    #[arg(long, value_name = "PEM")]
    ca: Option<std::path::PathBuf>,
    /// Report the connection, the chosen subprotocol and the close on stderr.
    #[arg(short = 'v', long)]
    verbose: bool,
    #[command(flatten)]
    proxy: ProxyArgs,
    #[command(flatten)]
    deflate: crate::util::DeflateArgs,
}

/// Exit status for "no connection was made".
const EXIT_CONNECT: u8 = 1;
/// Exit status for "the connection ended abnormally".
const EXIT_ABNORMAL: u8 = 2;

fn print_message(message: &Message, raw: bool) {
    let mut out = std::io::stdout().lock();
    let result = match message {
        Message::Text(text) => writeln!(out, "{text}"),
        Message::Binary(data) if raw => out.write_all(data),
        Message::Binary(data) => {
            let mut hex = String::with_capacity(data.len() * 2 + 1);
            for b in data {
                hex.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
                hex.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
            }
            writeln!(out, "{hex}")
        }
    };
    if result.and_then(|()| out.flush()).is_err() {
        // stdout is gone (a closed pipe): nothing more to show.
        std::process::exit(i32::from(EXIT_ABNORMAL));
    }
}

/// Sends stdin lines until EOF, then starts the closing handshake.
fn pump_stdin(sender: &ClientSender, binary: bool) {
    let stdin = std::io::stdin();
    let mut stdin = stdin.lock();
    let mut line = Vec::new();
    loop {
        line.clear();
        match stdin.read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                eprintln!("wsloop client: reading stdin: {e}");
                break;
            }
        }
        if line.last() == Some(&b'\n') {
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
        }
        let sent = if binary {
            sender.send_binary(&line)
        } else {
            match std::str::from_utf8(&line) {
                Ok(text) => sender.send_text(text),
                Err(_) => {
                    eprintln!("wsloop client: skipped a line that is not UTF-8 (use --binary)");
                    continue;
                }
            }
        };
        match sent {
            Ok(()) => {}
            Err(ClientError::Closed { .. }) => return,
            Err(e) => {
                eprintln!("wsloop client: send failed: {e}");
                return;
            }
        }
    }
    match sender.close(CloseCode::NORMAL, "") {
        Ok(()) | Err(ClientError::Closed { .. }) => {}
        Err(e) => eprintln!("wsloop client: close failed: {e}"),
    }
}

pub(crate) fn run(args: ClientArgs) -> ExitCode {
    let raw = args.raw;
    let mut options = ClientOptions::default()
        .connect_timeout(args.connect_timeout)
        .handshake_timeout(args.connect_timeout)
        .close_timeout(args.close_timeout)
        .pong_timeout(args.pong_timeout)
        .max_message_size(args.max_message_size)
        .max_frame_size(args.max_message_size)
        .on_message(move |_, message| print_message(&message, raw));
    if let Some(ca) = &args.ca {
        match wsloop::client::ClientTls::with_ca_file(ca) {
            Ok(tls) => options = options.tls(tls),
            Err(e) => {
                eprintln!("wsloop: --ca: {e}");
                return ExitCode::from(EXIT_CONNECT);
            }
        }
    }
    match args.deflate.config(wsloop::proto::deflate::DeflateMode::Off) {
        Ok(deflate) => options = options.deflate(deflate),
        Err(e) => {
            eprintln!("wsloop client: {e}");
            return ExitCode::from(2);
        }
    }
    if let Some(interval) = args.ping_interval {
        options = options.ping_interval(interval);
    }
    for protocol in &args.protocols {
        options = options.subprotocol(protocol.clone());
    }
    // Parsed here rather than by clap, so that a bad header exits 1 (no connection) and not with
    // clap's usage status 2 (which means an abnormal close here).
    for raw in &args.headers {
        match header(raw) {
            Ok((name, value)) => options = options.header(name, value),
            Err(e) => {
                eprintln!("wsloop client: -H {e}");
                return ExitCode::from(EXIT_CONNECT);
            }
        }
    }
    match args.proxy.proxy_for(&args.url) {
        Ok(Some(proxy)) => {
            if args.verbose {
                eprintln!("wsloop client: through proxy {proxy}");
            }
            options = options.proxy(proxy);
        }
        Ok(None) => {}
        Err(e) => {
            eprintln!("wsloop client: {e}");
            return ExitCode::from(EXIT_CONNECT);
        }
    }
    let client = match client::connect_with_callback(&args.url, options) {
        Ok(client) => client,
        Err(e) => {
            eprintln!("wsloop client: {e}");
            return ExitCode::from(EXIT_CONNECT);
        }
    };
    if args.verbose {
        let protocol = client.protocol().map_or_else(String::new, |p| format!(" (subprotocol {p})"));
        eprintln!("wsloop client: connected to {}{protocol}", args.url);
    }
    let sender = client.sender();
    let binary = args.binary;
    // Detached: it may stay blocked on stdin after the server closed; the process exits anyway.
    let _stdin = std::thread::Builder::new().name("stdin".into()).spawn(move || pump_stdin(&sender, binary));
    let status = match client.wait_for_close(None) {
        Ok(info) => {
            let code = info.code.map_or(CloseCode::NO_STATUS.0, |c| c.0);
            if args.verbose || !matches!(code, 1000 | 1001 | 1005) {
                eprintln!("wsloop client: connection closed with {code} {:?}", info.reason);
            }
            if matches!(code, 1000 | 1001 | 1005) {
                0
            } else {
                EXIT_ABNORMAL
            }
        }
        Err(e) => {
            eprintln!("wsloop client: {e}");
            EXIT_ABNORMAL
        }
    };
    let _ = std::io::stdout().flush();
    ExitCode::from(status)
}
