//! The SOCKS5 handshake (RFC 1928, username/password from RFC 1929), sans-IO.
//!
//! Owns: the greeting, the method choice, the credentials, the `CONNECT` request (IPv4, IPv6 or domain
//! address type) and the reply. Never touches: sockets or name resolution.

use super::{Progress, ProxyAuth, ProxyError, Target};

const VERSION: u8 = 5;
const NO_AUTH: u8 = 0;
const USER_PASSWORD: u8 = 2;
const NO_ACCEPTABLE: u8 = 0xFF;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Waiting for the method choice (2 bytes).
    Method,
    /// Waiting for the username/password verdict (2 bytes).
    Auth,
    /// Waiting for the connect reply (10, 22 or 7 + name bytes).
    Reply,
}

/// A SOCKS5 handshake in progress.
#[derive(Debug)]
pub(crate) struct Socks5 {
    stage: Stage,
    buf: Vec<u8>,
    request: Vec<u8>,
    auth: Option<ProxyAuth>,
}

impl Socks5 {
    /// Appends the greeting (the methods offered) to `out`.
    pub(super) fn start(target: &Target, auth: Option<ProxyAuth>, out: &mut Vec<u8>) -> Self {
        if auth.is_some() {
            out.extend_from_slice(&[VERSION, 2, NO_AUTH, USER_PASSWORD]);
        } else {
            out.extend_from_slice(&[VERSION, 1, NO_AUTH]);
        }
        let mut request = vec![VERSION, 1, 0];
        match target {
            Target::Addr(std::net::SocketAddr::V4(a)) => {
                request.push(1);
                request.extend_from_slice(&a.ip().octets());
            }
            Target::Addr(std::net::SocketAddr::V6(a)) => {
                request.push(4);
                request.extend_from_slice(&a.ip().octets());
            }
            Target::Name(name, _) => {
                // WsUrl limits names to 253 bytes; SOCKS5 carries up to 255.
                let name = &name.as_bytes()[..name.len().min(255)];
                request.push(3);
                request.push(name.len() as u8);
                request.extend_from_slice(name);
            }
        }
        let port = match target {
            Target::Addr(a) => a.port(),
            Target::Name(_, port) => *port,
        };
        request.extend_from_slice(&port.to_be_bytes());
        Self { stage: Stage::Method, buf: Vec::new(), request, auth }
    }

    /// Takes the next bytes from the proxy; appends what to send next to `out`.
    pub(super) fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<Progress, ProxyError> {
        self.buf.extend_from_slice(input);
        loop {
            match self.stage {
                Stage::Method => {
                    let Some(&[version, method]) = self.buf.get(..2) else { return Ok(Progress::NeedMore) };
                    if version != VERSION {
                        return Err(not_socks5(&self.buf));
                    }
                    self.buf.drain(..2);
                    match (method, &self.auth) {
                        (NO_AUTH, _) => {
                            out.extend_from_slice(&self.request);
                            self.stage = Stage::Reply;
                        }
                        (USER_PASSWORD, Some(auth)) => {
                            let user = &auth.username.as_bytes()[..auth.username.len().min(255)];
                            let pass = &auth.password.as_bytes()[..auth.password.len().min(255)];
                            out.push(1);
                            out.push(user.len() as u8);
                            out.extend_from_slice(user);
                            out.push(pass.len() as u8);
                            out.extend_from_slice(pass);
                            self.stage = Stage::Auth;
                        }
                        (NO_ACCEPTABLE, _) => return Err(ProxyError::NoAcceptableAuth),
                        (other, _) => {
                            return Err(ProxyError::Malformed(format!("chose method {other}, which was not offered")))
                        }
                    }
                }
                Stage::Auth => {
                    let Some(&[version, status]) = self.buf.get(..2) else { return Ok(Progress::NeedMore) };
                    if version != 1 {
                        return Err(ProxyError::Malformed(format!(
                            "username/password reply of version {version}, not 1"
                        )));
                    }
                    if status != 0 {
                        return Err(ProxyError::AuthFailed);
                    }
                    self.buf.drain(..2);
                    out.extend_from_slice(&self.request);
                    self.stage = Stage::Reply;
                }
                Stage::Reply => {
                    let Some(&[version, reply, _reserved, atyp]) = self.buf.get(..4) else {
                        return Ok(Progress::NeedMore);
                    };
                    if version != VERSION {
                        return Err(not_socks5(&self.buf));
                    }
                    if reply != 0 {
                        return Err(ProxyError::Socks5Failure { code: reply });
                    }
                    let len = match atyp {
                        1 => 4 + 4 + 2,
                        4 => 4 + 16 + 2,
                        3 => match self.buf.get(4) {
                            Some(&n) => 5 + usize::from(n) + 2,
                            None => return Ok(Progress::NeedMore),
                        },
                        other => return Err(ProxyError::Malformed(format!("reply with address type {other}"))),
                    };
                    if self.buf.len() < len {
                        return Ok(Progress::NeedMore);
                    }
                    // Everything before this input was an incomplete part of the proxy's answer.
                    let after = self.buf.len() - len;
                    return Ok(Progress::Done { used: input.len() - after });
                }
            }
        }
    }
}

fn not_socks5(bytes: &[u8]) -> ProxyError {
    let start = String::from_utf8_lossy(&bytes[..bytes.len().min(40)]).into_owned();
    ProxyError::Malformed(format!("not a SOCKS5 answer: {start:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_auth_with_a_domain_target_byte_by_byte() {
        let mut out = Vec::new();
        let mut m = Socks5::start(&Target::Name("echo.example".into(), 9001), None, &mut out);
        assert_eq!(out, [5, 1, 0]);
        out.clear();
        assert_eq!(m.feed(&[5], &mut out).unwrap(), Progress::NeedMore);
        assert_eq!(m.feed(&[0], &mut out).unwrap(), Progress::NeedMore);
        let mut want = vec![5, 1, 0, 3, 12];
        want.extend_from_slice(b"echo.example");
        want.extend_from_slice(&9001u16.to_be_bytes());
        assert_eq!(out, want);
        out.clear();
        let reply = [5, 0, 0, 1, 127, 0, 0, 1, 0x23, 0x29];
        for &b in &reply[..9] {
            assert_eq!(m.feed(&[b], &mut out).unwrap(), Progress::NeedMore);
        }
        assert_eq!(m.feed(&[reply[9], b'H', b'T'], &mut out).unwrap(), Progress::Done { used: 1 });
        assert!(out.is_empty());
    }

    #[test]
    fn user_password_then_an_ipv6_target_and_a_domain_reply() {
        let mut out = Vec::new();
        let target = Target::Addr("[::1]:80".parse().unwrap());
        let mut m = Socks5::start(&target, Some(ProxyAuth::new("al", "pw")), &mut out);
        assert_eq!(out, [5, 2, 0, 2]);
        out.clear();
        assert_eq!(m.feed(&[5, 2], &mut out).unwrap(), Progress::NeedMore);
        assert_eq!(out, [1, 2, b'a', b'l', 2, b'p', b'w']);
        out.clear();
        assert_eq!(m.feed(&[1, 0], &mut out).unwrap(), Progress::NeedMore);
        assert_eq!(out[..4], [5, 1, 0, 4]);
        assert_eq!(out.len(), 4 + 16 + 2);
        let reply = [5, 0, 0, 3, 1, b'x', 0, 80];
        assert_eq!(m.feed(&reply, &mut Vec::new()).unwrap(), Progress::Done { used: 8 });
    }

    #[test]
    fn refusals_and_garbage_are_typed() {
        let t = Target::Addr("127.0.0.1:1".parse().unwrap());
        let run = |auth: Option<ProxyAuth>, input: &[u8]| {
            let mut out = Vec::new();
            Socks5::start(&t, auth, &mut out).feed(input, &mut out)
        };
        assert!(matches!(run(None, &[5, 0xFF]), Err(ProxyError::NoAcceptableAuth)));
        assert!(matches!(run(None, &[5, 2]), Err(ProxyError::Malformed(_))), "not offered without credentials");
        assert!(matches!(run(Some(ProxyAuth::new("a", "b")), &[5, 2, 1, 1]), Err(ProxyError::AuthFailed)));
        assert!(matches!(run(None, &[5, 0, 5, 5, 0, 1]), Err(ProxyError::Socks5Failure { code: 5 })));
        let err = run(None, b"HTTP/1.1 400 Bad Request\r\n").unwrap_err();
        assert!(matches!(&err, ProxyError::Malformed(m) if m.contains("HTTP/1.1")), "{err:?}");
        assert!(matches!(run(None, &[5, 0, 5, 0, 0, 9]), Err(ProxyError::Malformed(_))), "address type 9");
        let err = ProxyError::Socks5Failure { code: 5 };
        assert!(err.to_string().contains("connection refused by the destination"), "{err}");
    }
}
