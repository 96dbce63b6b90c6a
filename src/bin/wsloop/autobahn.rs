//! `wsloop autobahn-client`: runs the Autobahn|Testsuite client cases against a fuzzing server.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use wsloop::client::{self, ClientOptions, CloseInfo, Error as ClientError, Message as ClientMessage};
use wsloop::proto::CloseCode;

use crate::util::secs;

#[derive(Args)]
pub(crate) struct AutobahnClientArgs {
    /// The fuzzing server's URL, e.g. ws://127.0.0.1:9001.
    url: String,
    /// The agent name the results are reported under.
    #[arg(long, default_value = "wsloop")]
    agent: String,
    /// Seconds allowed for each case's closing handshake and each read.
    #[arg(long, value_parser = secs, default_value = "60")]
    case_timeout: Duration,
    /// permessage-deflate is offered by default (dedicated), so cases 12.* and 13.* run; `--deflate off`
    /// leaves them UNIMPLEMENTED.
    #[command(flatten)]
    deflate: crate::util::DeflateArgs,
}

/// Options for the Autobahn cases: limits large enough for the 16 MiB messages of cases 9.*.
fn autobahn_options(timeout: Duration, deflate: wsloop::proto::deflate::DeflateConfig) -> ClientOptions {
    ClientOptions::default()
        .deflate(deflate)
        .max_frame_size(64 << 20)
        .max_message_size(64 << 20)
        .read_timeout(timeout)
        .close_timeout(timeout)
}

/// Runs one case: echoes every message until the connection ends.
fn autobahn_case(url: &str, options: ClientOptions) -> Result<CloseInfo, ClientError> {
    let mut client = client::connect(url, options)?;
    loop {
        let echoed = match client.read_message(None) {
            Ok(ClientMessage::Text(text)) => client.send_text(&text),
            Ok(ClientMessage::Binary(data)) => client.send_binary(&data),
            Err(ClientError::Closed { .. }) => return client.wait_for_close(None),
            Err(e) => return Err(e),
        };
        match echoed {
            Ok(()) => {}
            // The server's close frame is next in the stream: read it.
            Err(ClientError::Closed { .. }) => {}
            Err(e) => return Err(e),
        }
    }
}

pub(crate) fn run(args: AutobahnClientArgs) -> ExitCode {
    let base = args.url.trim_end_matches('/');
    let deflate = match args.deflate.config(wsloop::proto::deflate::DeflateMode::Dedicated) {
        Ok(deflate) => deflate,
        Err(e) => {
            eprintln!("wsloop autobahn-client: {e}");
            return ExitCode::from(2);
        }
    };
    let options = autobahn_options(args.case_timeout, deflate);
    let count = client::with_connection(&format!("{base}/getCaseCount"), options.clone(), |c| c.read_message(None));
    let count: u32 = match count {
        Ok(ClientMessage::Text(n)) => match n.trim().parse() {
            Ok(n) => n,
            Err(_) => {
                eprintln!("wsloop: getCaseCount answered {n:?}, not a number");
                return ExitCode::FAILURE;
            }
        },
        Ok(other) => {
            eprintln!("wsloop: getCaseCount answered {other:?}, not a text message");
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("wsloop: getCaseCount failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("wsloop autobahn-client: {count} cases");
    let agent = &args.agent;
    let mut failures = 0;
    for case in 1..=count {
        let url = format!("{base}/runCase?case={case}&agent={agent}");
        match autobahn_case(&url, options.clone()) {
            Ok(info) => log::info!("case {case}: closed {:?} {:?}", info.code, info.reason),
            // Expected in the cases where the fuzzing server breaks the protocol.
            Err(e @ ClientError::Protocol(_)) => log::info!("case {case}: {e}"),
            Err(e) => {
                failures += 1;
                log::warn!("case {case}: {e}");
            }
        }
    }
    println!(
        "wsloop autobahn-client: ran {count} cases ({failures} ended with an error other than a protocol violation by the server)"
    );
    let update = format!("{base}/updateReports?agent={agent}");
    match client::connect(&update, options) {
        Ok(mut c) => {
            if let Err(e) = c.close_and_wait(CloseCode::NORMAL, "", None) {
                log::warn!("updateReports: {e}");
            }
        }
        Err(e) => {
            eprintln!("wsloop: updateReports failed: {e}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
