//! [`connect_async`]: an in-loop client by URL without a server of one's own.
//!
//! Owns: the process-wide client-only engine, started on the first call. Never touches: the engine's
//! internals (it is an ordinary [`Server::start_without_listeners`] used through its [`Handle`]).

use std::sync::{Mutex, PoisonError};

use crate::server::{Config, ConnectError, ConnectOptions, Handle, Handler, Server};

use super::error::Error;

static ENGINE: Mutex<Option<Handle>> = Mutex::new(None);

/// Opens a WebSocket client connection to `url` driven by `handler` on a reactor thread, and returns at
/// once; works without a server of one's own. The first call starts a client-only engine (one reactor
/// thread, no listeners, [`Config::default`] otherwise) that lives as long as the process; with an engine
/// of your own, call [`Handle::connect_url`] on it instead, which this is.
///
/// The host is resolved on a helper thread within [`ConnectOptions::timeout`], which also bounds the
/// TCP connect (or the proxy's tunnel, [`ConnectOptions::proxy`]; run by the reactor itself when the
/// proxy is given by address and nothing needs resolving) and the handshake. Success is
/// `handler.on_open`, then the handler is driven like a server-side one; failure is
/// `handler.on_connect_error`, with [`ConnectError::Client`] carrying the blocking client's error
/// ([`Error::Resolve`], [`Error::Connect`], [`Error::Timeout`], [`Error::Proxy`], ...) for everything
/// before the handshake, and the other [`ConnectError`] variants for the handshake itself.
///
/// ```no_run
/// use wsloop::client::connect_async;
/// use wsloop::server::{ConnectError, ConnectOptions, Ctx, Handler, Message};
///
/// struct Hello;
/// impl Handler for Hello {
///     fn on_open(&mut self, ctx: &mut Ctx<'_>) {
///         let _ = ctx.send_text("hello");
///     }
///     fn on_message(&mut self, _ctx: &mut Ctx<'_>, message: Message<'_>) {
///         println!("{:?}", message.as_bytes());
///     }
///     fn on_connect_error(&mut self, error: &ConnectError) {
///         eprintln!("{error}");
///     }
/// }
/// connect_async("ws://127.0.0.1:9001/echo", ConnectOptions::default(), Hello);
/// ```
pub fn connect_async<H: Handler + Send>(url: &str, options: ConnectOptions, handler: H) {
    let mut engine = ENGINE.lock().unwrap_or_else(PoisonError::into_inner);
    let handle = match &*engine {
        Some(handle) => handle.clone(),
        None => match Server::new(Config { threads: 1, ..Config::default() }).start_without_listeners() {
            Ok(running) => {
                // The threads are detached: the engine serves the process until it exits.
                let handle = running.handle();
                *engine = Some(handle.clone());
                handle
            }
            Err(e) => {
                drop(engine);
                let mut handler = handler;
                handler.on_connect_error(&ConnectError::Client(Error::Io(e)));
                return;
            }
        },
    };
    drop(engine);
    handle.connect_url(url, options, handler);
}
