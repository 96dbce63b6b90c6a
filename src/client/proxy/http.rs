//! The HTTP `CONNECT` handshake, sans-IO: the request, then the proxy's response head.
//!
//! Owns: formatting `CONNECT host:port` (with `Proxy-Authorization: Basic`), parsing the answer within
//! 16 KiB. Never touches: sockets.

use base64::Engine as _;

use super::{Progress, ProxyAuth, ProxyError, Target};

/// The most a proxy's response head may take.
pub(super) const MAX_HEAD: usize = 16 * 1024;

/// A `CONNECT` in progress: the head read so far.
#[derive(Debug, Default)]
pub(crate) struct HttpConnect {
    head: Vec<u8>,
}

impl HttpConnect {
    /// Appends the `CONNECT` request for `target` to `out`.
    pub(super) fn start(target: &Target, auth: Option<&ProxyAuth>, out: &mut Vec<u8>) -> Self {
        let authority = target.authority();
        out.extend_from_slice(format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n").as_bytes());
        if let Some(auth) = auth {
            let token =
                base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", auth.username, auth.password));
            out.extend_from_slice(format!("Proxy-Authorization: Basic {token}\r\n").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        Self::default()
    }

    /// Takes the next bytes of the response.
    pub(super) fn feed(&mut self, input: &[u8]) -> Result<Progress, ProxyError> {
        let before = self.head.len();
        self.head.extend_from_slice(input);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(&self.head) {
            Ok(httparse::Status::Complete(len)) => {
                let status = response.code.unwrap_or(0);
                if !(200..300).contains(&status) {
                    let reason = response.reason.unwrap_or("").to_owned();
                    return Err(ProxyError::Rejected { status, reason });
                }
                Ok(Progress::Done { used: len - before })
            }
            Ok(httparse::Status::Partial) if self.head.len() > MAX_HEAD => {
                Err(ProxyError::Malformed(format!("no end of the response head within {MAX_HEAD} bytes")))
            }
            Ok(httparse::Status::Partial) => Ok(Progress::NeedMore),
            Err(e) => {
                let start = String::from_utf8_lossy(&self.head[..self.head.len().min(40)]).into_owned();
                Err(ProxyError::Malformed(format!("not an HTTP response ({e}): {start:?}")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target::Name("echo.example".into(), 9001)
    }

    #[test]
    fn writes_connect_with_basic_auth() {
        let mut out = Vec::new();
        HttpConnect::start(&target(), Some(&ProxyAuth::new("aladdin", "opensesame")), &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "CONNECT echo.example:9001 HTTP/1.1\r\nHost: echo.example:9001\r\n\
             Proxy-Authorization: Basic YWxhZGRpbjpvcGVuc2VzYW1l\r\n\r\n"
        );
        let mut out = Vec::new();
        HttpConnect::start(&Target::Addr("[::1]:80".parse().unwrap()), None, &mut out);
        assert_eq!(out, b"CONNECT [::1]:80 HTTP/1.1\r\nHost: [::1]:80\r\n\r\n");
    }

    #[test]
    fn a_2xx_in_pieces_opens_the_tunnel_and_says_where_the_server_bytes_start() {
        let mut m = HttpConnect::default();
        assert_eq!(m.feed(b"HTTP/1.0 200 Connection est").unwrap(), Progress::NeedMore);
        assert_eq!(m.feed(b"ablished\r\nProxy-agent: x\r\n\r\nSERVER").unwrap(), Progress::Done { used: 28 });
    }

    #[test]
    fn a_refusal_a_non_http_answer_and_an_endless_head_are_errors() {
        let err = HttpConnect::default().feed(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n").unwrap_err();
        assert!(matches!(&err, ProxyError::Rejected { status: 407, .. }), "{err:?}");
        assert!(err.to_string().contains("wants authentication"), "{err}");
        let err = HttpConnect::default().feed(b"SSH-2.0-OpenSSH_9.2\r\n").unwrap_err();
        assert!(matches!(&err, ProxyError::Malformed(m) if m.contains("SSH-2.0")), "{err:?}");
        let mut m = HttpConnect::default();
        assert_eq!(m.feed(b"HTTP/1.1 200 OK\r\nX-Filler: ").unwrap(), Progress::NeedMore);
        let line = [b'a'; 100];
        let err = loop {
            match m.feed(&line) {
                Ok(Progress::NeedMore) => {}
                Ok(done) => panic!("{done:?}"),
                Err(e) => break e,
            }
        };
        assert!(matches!(&err, ProxyError::Malformed(m) if m.contains("16384")), "{err:?}");
    }
}
