//! Plain HTTP/1.1 on the WebSocket port: parsing requests that are not upgrades, building responses, and
//! the [`HttpHandler`] trait an application implements to answer them.
//!
//! Owns: the HTTP/1.1 request head and `Content-Length` body, keep-alive rules, response encoding.
//! Never touches: sockets (the reactor feeds bytes in and writes the response out) or WebSocket framing.

use std::fmt;

/// An HTTP request that is not a WebSocket upgrade.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HttpRequest {
    /// The method (`GET`, `HEAD`, `POST`, ...).
    pub method: String,
    /// The path of the target, without the query.
    pub path: String,
    /// The query after `?`, if any.
    pub query: Option<String>,
    /// The minor HTTP version: 1 for HTTP/1.1, 0 for HTTP/1.0.
    pub minor_version: u8,
    /// Every header, names as sent, raw values.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body (`Content-Length` bytes; chunked bodies are refused with 411).
    pub body: Vec<u8>,
}

impl HttpRequest {
    /// The first header named `name` (ASCII case-insensitive), if present and valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
            .map(str::trim)
    }

    /// Whether the connection stays open after the response: HTTP/1.1 unless `Connection: close`,
    /// HTTP/1.0 only with `Connection: keep-alive`.
    pub fn keep_alive(&self) -> bool {
        let has_token = |token: &str| {
            self.header("connection").is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        };
        if self.minor_version >= 1 {
            !has_token("close")
        } else {
            has_token("keep-alive")
        }
    }
}

/// A response to an [`HttpRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// Headers besides `Content-Length` and `Connection`, which are written for you.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// A response with `status`, a `text/plain` content type and `body`.
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Self {
            status,
            headers: vec![("Content-Type".into(), "text/plain; charset=utf-8".into())],
            body: body.into().into_bytes(),
        }
    }

    /// A response with `status`, the given content type and body.
    pub fn with_body(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        Self { status, headers: vec![("Content-Type".into(), content_type.into())], body: body.into() }
    }

    /// Adds a header (names and values with CR, LF or other control bytes are dropped when written).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Appends the encoded response to `out`. `head_only` omits the body (for `HEAD`) but keeps its
    /// `Content-Length`; `keep_alive` decides the `Connection` header.
    pub fn write(&self, out: &mut Vec<u8>, head_only: bool, keep_alive: bool) {
        use std::io::Write;
        let _ = write!(out, "HTTP/1.1 {} {}\r\n", self.status, reason_phrase(self.status));
        for (name, value) in &self.headers {
            let valid_name = !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b':');
            let valid_value = value.bytes().all(|b| b == b'\t' || (b >= b' ' && b != 0x7f));
            let reserved = name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("connection");
            if valid_name && valid_value && !reserved {
                let _ = write!(out, "{name}: {value}\r\n");
            }
        }
        let connection = if keep_alive { "keep-alive" } else { "close" };
        let _ = write!(out, "Content-Length: {}\r\nConnection: {connection}\r\n\r\n", self.body.len());
        if !head_only {
            out.extend_from_slice(&self.body);
        }
    }
}

/// Answers plain HTTP requests that arrive on the WebSocket port.
///
/// Shared by every reactor thread, so it takes `&self`; it runs inside the loop and must not block.
/// Return `None` to fall through to the built-in endpoints and then 404.
pub trait HttpHandler: Send + Sync + 'static {
    /// Answers one request.
    fn handle(&self, request: &HttpRequest) -> Option<HttpResponse>;
}

impl<F> HttpHandler for F
where
    F: Fn(&HttpRequest) -> Option<HttpResponse> + Send + Sync + 'static,
{
    fn handle(&self, request: &HttpRequest) -> Option<HttpResponse> {
        self(request)
    }
}

/// Why a plain HTTP request was refused, with the status to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HttpError {
    /// The head is not valid HTTP/1.x (400).
    Malformed(&'static str),
    /// The head is larger than the limit (431).
    HeadTooLarge,
    /// More headers than the limit (431).
    TooManyHeaders,
    /// A body with `Transfer-Encoding` (chunked) — only `Content-Length` bodies are read (411).
    LengthRequired,
    /// A body larger than the limit (413).
    BodyTooLarge,
}

impl HttpError {
    /// The HTTP status to answer with.
    pub fn status(&self) -> u16 {
        match self {
            Self::Malformed(_) => 400,
            Self::HeadTooLarge | Self::TooManyHeaders => 431,
            Self::LengthRequired => 411,
            Self::BodyTooLarge => 413,
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed(what) => write!(f, "malformed HTTP request: {what}"),
            Self::HeadTooLarge => f.write_str("request head larger than the limit"),
            Self::TooManyHeaders => f.write_str("more request headers than the limit"),
            Self::LengthRequired => f.write_str("request bodies must have a Content-Length"),
            Self::BodyTooLarge => f.write_str("request body larger than the limit"),
        }
    }
}

impl std::error::Error for HttpError {}

/// Size limits for plain HTTP requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Largest head in bytes.
    pub max_head_bytes: usize,
    /// Most headers.
    pub max_headers: usize,
    /// Largest body in bytes.
    pub max_body_bytes: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self { max_head_bytes: 8192, max_headers: 64, max_body_bytes: 64 * 1024 }
    }
}

/// Parses one request (head and `Content-Length` body) from the start of `buf`.
///
/// `Ok(None)`: more bytes are needed. `Ok(Some((request, n)))`: the request took `n` bytes; what follows
/// is the next request on the same connection (pipelining).
pub fn parse_request(buf: &[u8], limits: &HttpLimits) -> Result<Option<(HttpRequest, usize)>, HttpError> {
    let mut headers = vec![httparse::EMPTY_HEADER; limits.max_headers];
    let mut parsed = httparse::Request::new(&mut headers);
    let head_len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if buf.len() > limits.max_head_bytes {
                return Err(HttpError::HeadTooLarge);
            }
            return Ok(None);
        }
        Err(httparse::Error::TooManyHeaders) => return Err(HttpError::TooManyHeaders),
        Err(_) => return Err(HttpError::Malformed("request line or headers")),
    };
    if head_len > limits.max_head_bytes {
        return Err(HttpError::HeadTooLarge);
    }
    let method = parsed.method.ok_or(HttpError::Malformed("no method"))?.to_owned();
    let target = parsed.path.ok_or(HttpError::Malformed("no target"))?;
    let minor_version = parsed.version.ok_or(HttpError::Malformed("no version"))?;
    let headers: Vec<(String, Vec<u8>)> =
        parsed.headers.iter().map(|h| (h.name.to_owned(), h.value.to_vec())).collect();
    let find = |name: &str| headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_slice());
    if find("transfer-encoding").is_some() {
        return Err(HttpError::LengthRequired);
    }
    let body_len = match find("content-length") {
        None => 0,
        Some(value) => std::str::from_utf8(value)
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .ok_or(HttpError::Malformed("Content-Length"))?,
    };
    if body_len > limits.max_body_bytes {
        return Err(HttpError::BodyTooLarge);
    }
    if buf.len() < head_len + body_len {
        return Ok(None);
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
        None => (target.to_owned(), None),
    };
    let request =
        HttpRequest { method, path, query, minor_version, headers, body: buf[head_len..head_len + body_len].to_vec() };
    Ok(Some((request, head_len + body_len)))
}

/// The standard reason phrase of the statuses wsloop writes.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        411 => "Length Required",
        413 => "Payload Too Large",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> HttpLimits {
        HttpLimits::default()
    }

    #[test]
    fn parses_a_get_with_query_and_reports_its_length() {
        let raw = b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\nGET /next";
        let (req, n) = parse_request(raw, &limits()).unwrap().unwrap();
        assert_eq!((req.method.as_str(), req.path.as_str(), req.query.as_deref()), ("GET", "/metrics", Some("x=1")));
        assert_eq!(&raw[n..], b"GET /next");
        assert!(req.keep_alive());
    }

    #[test]
    fn incomplete_head_or_body_needs_more_bytes() {
        assert_eq!(parse_request(b"GET / HTTP/1.1\r\nHost:", &limits()), Ok(None));
        let raw = b"POST /x HTTP/1.1\r\nContent-Length: 5\r\n\r\nab";
        assert_eq!(parse_request(raw, &limits()), Ok(None));
        let raw = b"POST /x HTTP/1.1\r\nContent-Length: 5\r\n\r\nabcde";
        let (req, n) = parse_request(raw, &limits()).unwrap().unwrap();
        assert_eq!((req.body.as_slice(), n), (&b"abcde"[..], raw.len()));
    }

    #[test]
    fn keep_alive_follows_version_and_connection_header() {
        let req = |raw: &[u8]| parse_request(raw, &limits()).unwrap().unwrap().0;
        assert!(!req(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n").keep_alive());
        assert!(!req(b"GET / HTTP/1.0\r\n\r\n").keep_alive());
        assert!(req(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive());
    }

    #[test]
    fn limits_and_refusals_have_their_statuses() {
        let small = HttpLimits { max_head_bytes: 16, max_headers: 2, max_body_bytes: 4 };
        assert_eq!(parse_request(b"GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", &small).unwrap_err().status(), 431);
        let many = b"GET / HTTP/1.1\r\na: 1\r\nb: 2\r\nc: 3\r\n\r\n";
        assert_eq!(parse_request(many, &HttpLimits { max_head_bytes: 1000, ..small }).unwrap_err().status(), 431);
        let big = b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n";
        assert_eq!(parse_request(big, &HttpLimits { max_head_bytes: 1000, ..small }).unwrap_err().status(), 413);
        let chunked = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(parse_request(chunked, &limits()).unwrap_err().status(), 411);
        assert_eq!(parse_request(b"\x01\x02 nonsense\r\n\r\n", &limits()).unwrap_err().status(), 400);
        let bad_len = b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n";
        assert_eq!(parse_request(bad_len, &limits()).unwrap_err().status(), 400);
    }

    #[test]
    fn responses_carry_length_and_connection_and_drop_bad_headers() {
        let mut out = Vec::new();
        HttpResponse::text(200, "ok\n")
            .header("X-A", "1")
            .header("Bad\r\nName", "x")
            .header("X-B", "evil\r\nInjected: 1")
            .write(&mut out, false, true);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains("X-A: 1\r\n") && !text.contains("Injected") && !text.contains("Bad"));
        assert!(text.ends_with("Content-Length: 3\r\nConnection: keep-alive\r\n\r\nok\n"), "{text}");
        let mut head = Vec::new();
        HttpResponse::text(200, "ok\n").write(&mut head, true, false);
        assert!(String::from_utf8(head).unwrap().ends_with("Content-Length: 3\r\nConnection: close\r\n\r\n"));
    }
}
