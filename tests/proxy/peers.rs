//! The peers of the proxy tests: an echo server (this crate's), Debian's `tinyproxy` and `danted` started
//! on free 127.0.0.1 ports with generated configurations (killed on drop), and small in-test proxies: a
//! SOCKS5 relay that checks a user name and password, and fakes that refuse, answer garbage or say nothing.

use std::fs;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use wsloop::server::{Config, Ctx, Handler, Message, RunningServer, Server};

pub(crate) const WAIT: Duration = Duration::from_secs(10);

pub(crate) fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        thread::sleep(Duration::from_millis(20));
    }
    cond()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Echo;

impl Handler for Echo {
    fn on_message(&mut self, ctx: &mut Ctx<'_>, message: Message<'_>) {
        let _ = match message {
            Message::Text(t) => ctx.send_text(t),
            Message::Binary(b) => ctx.send_binary(b),
        };
    }
}

/// This crate's server echoing every message, on 127.0.0.1 and a free port.
pub(crate) fn echo_server() -> RunningServer {
    let config = Config { addr: "127.0.0.1:0".parse().unwrap(), threads: 1, ..Config::default() };
    let mut server = Server::new(config);
    server.register_handler("*", |_| Echo);
    server.start().unwrap()
}

fn program(env: &str, default: &str, package: &str) -> PathBuf {
    let path = PathBuf::from(std::env::var(env).unwrap_or_else(|_| default.into()));
    assert!(
        path.exists(),
        "{} not found: tests/proxy.rs needs it. Install it with `sudo apt-get install {package}` (Debian/Ubuntu; \
         `.ci/run` does it when missing), or point {env} at the binary.",
        path.display()
    );
    path
}

/// A real proxy process: killed and its files removed when dropped.
pub(crate) struct ProxyProcess {
    pub(crate) port: u16,
    child: Child,
    dir: PathBuf,
}

impl ProxyProcess {
    fn start(name: &str, program: PathBuf, config: impl FnOnce(u16, &Path) -> String, args: &[&str]) -> Self {
        let port = free_port();
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{port}"));
        fs::create_dir_all(&dir).unwrap();
        let conf = dir.join(format!("{name}.conf"));
        fs::write(&conf, config(port, &dir)).unwrap();
        let child = Command::new(program)
            .args(args)
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        let process = Self { port, child, dir };
        assert!(
            eventually(WAIT, || TcpStream::connect(("127.0.0.1", port)).is_ok()),
            "{name} did not listen on 127.0.0.1:{port}; its log: {}",
            process.log()
        );
        process
    }

    /// `tinyproxy` in the foreground; with `auth`, `BasicAuth` for that user and password.
    pub(crate) fn tinyproxy(auth: Option<(&str, &str)>) -> Self {
        let program = program("WSLOOP_TINYPROXY", "/usr/bin/tinyproxy", "tinyproxy");
        let auth = auth.map(|(u, p)| format!("BasicAuth {u} {p}\n")).unwrap_or_default();
        Self::start(
            "tinyproxy",
            program,
            |port, dir| {
                format!(
                    "Port {port}\nListen 127.0.0.1\nTimeout 30\nMaxClients 50\nAllow 127.0.0.0/8\nLogLevel Connect\n\
                     LogFile \"{}\"\n{auth}",
                    dir.join("log").display()
                )
            },
            &["-d", "-c"],
        )
    }

    /// `danted` (Dante's SOCKS5 server) without authentication, logging every connect it passes.
    pub(crate) fn dante() -> Self {
        let program = program("WSLOOP_DANTED", "/usr/sbin/danted", "dante-server");
        let user = if is_root() { "user.privileged: root\nuser.unprivileged: nobody\n" } else { "" };
        Self::start(
            "danted",
            program,
            |port, dir| {
                format!(
                    "logoutput: {log}\ninternal: 127.0.0.1 port = {port}\nexternal: 127.0.0.1\nclientmethod: none\n\
                     socksmethod: none\n{user}\
                     client pass {{ from: 127.0.0.1/32 to: 0.0.0.0/0 }}\n\
                     socks pass {{ from: 127.0.0.1/32 to: 0.0.0.0/0 log: connect }}\n",
                    log = dir.join("log").display()
                )
            },
            &["-f"],
        )
    }

    pub(crate) fn url(&self, scheme: &str) -> String {
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    pub(crate) fn log(&self) -> String {
        fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }
}

/// Whether this process runs as root (danted then needs to be told which users to switch to).
fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// What the in-test SOCKS5 relay saw of one request: the address type and the target as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Socks5Request {
    pub(crate) atyp: u8,
    pub(crate) target: String,
}

/// A SOCKS5 server on a free port that insists on username/password (RFC 1929), checks them against
/// `user`/`pass`, then connects to the target and relays bytes both ways.
pub(crate) struct Socks5Relay {
    pub(crate) addr: SocketAddr,
    pub(crate) requests: Arc<Mutex<Vec<Socks5Request>>>,
}

impl Socks5Relay {
    pub(crate) fn start(user: &'static str, pass: &'static str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let seen = seen.clone();
                thread::spawn(move || {
                    let _ = relay_one(stream, user, pass, &seen);
                });
            }
        });
        Self { addr, requests }
    }

    pub(crate) fn url(&self, scheme: &str, user: &str, pass: &str) -> String {
        format!("{scheme}://{user}:{pass}@{}", self.addr)
    }
}

fn read_n(stream: &mut TcpStream, n: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0; n];
    stream.read_exact(&mut buf)?;
    Ok(buf)
}

fn relay_one(mut client: TcpStream, user: &str, pass: &str, seen: &Mutex<Vec<Socks5Request>>) -> io::Result<()> {
    let head = read_n(&mut client, 2)?;
    let methods = read_n(&mut client, usize::from(head[1]))?;
    if head[0] != 5 || !methods.contains(&2) {
        return client.write_all(&[5, 0xFF]);
    }
    client.write_all(&[5, 2])?;
    let ver_ulen = read_n(&mut client, 2)?;
    let u = read_n(&mut client, usize::from(ver_ulen[1]))?;
    let plen = read_n(&mut client, 1)?;
    let p = read_n(&mut client, usize::from(plen[0]))?;
    if ver_ulen[0] != 1 || u != user.as_bytes() || p != pass.as_bytes() {
        return client.write_all(&[1, 1]);
    }
    client.write_all(&[1, 0])?;
    let req = read_n(&mut client, 4)?;
    let host = match req[3] {
        1 => std::net::Ipv4Addr::from(<[u8; 4]>::try_from(read_n(&mut client, 4)?).unwrap()).to_string(),
        4 => format!("[{}]", std::net::Ipv6Addr::from(<[u8; 16]>::try_from(read_n(&mut client, 16)?).unwrap())),
        3 => {
            let n = read_n(&mut client, 1)?;
            String::from_utf8(read_n(&mut client, usize::from(n[0]))?).unwrap()
        }
        _ => return client.write_all(&[5, 8, 0, 1, 0, 0, 0, 0, 0, 0]),
    };
    let port = u16::from_be_bytes(<[u8; 2]>::try_from(read_n(&mut client, 2)?).unwrap());
    let target = format!("{host}:{port}");
    seen.lock().unwrap().push(Socks5Request { atyp: req[3], target: target.clone() });
    let Some(upstream) = target.to_socket_addrs()?.find(SocketAddr::is_ipv4).and_then(|a| TcpStream::connect(a).ok())
    else {
        return client.write_all(&[5, 5, 0, 1, 0, 0, 0, 0, 0, 0]);
    };
    client.write_all(&[5, 0, 0, 1, 127, 0, 0, 1, 0, 0])?;
    let (mut c2, mut u2) = (client.try_clone()?, upstream.try_clone()?);
    let mut upstream = upstream;
    thread::spawn(move || {
        let _ = io::copy(&mut u2, &mut c2);
        let _ = c2.shutdown(Shutdown::Write);
    });
    let _ = io::copy(&mut client, &mut upstream);
    let _ = upstream.shutdown(Shutdown::Write);
    Ok(())
}

/// A fake proxy on a free port: each connection gets `answer` once something arrived (or nothing at all
/// when `answer` is `None`: it holds the connection open and stays silent).
pub(crate) fn fake_proxy(answer: Option<&'static [u8]>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            thread::spawn(move || {
                let mut buf = [0; 1024];
                let _ = stream.read(&mut buf);
                match answer {
                    Some(answer) => {
                        let _ = stream.write_all(answer);
                        thread::sleep(Duration::from_millis(200));
                    }
                    None => thread::sleep(Duration::from_secs(30)),
                }
            });
        }
    });
    addr
}
