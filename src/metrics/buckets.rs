//! The fixed buckets some counters are broken down into: messages by kind, closes by close code,
//! handshake failures by reason and held TCP connections by phase, each with the flat counter name its
//! bucket is shown under.

/// The kind of a data message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageKind {
    /// A text (UTF-8) message.
    Text,
    /// A binary message.
    Binary,
}

/// The buckets connections closed are counted in, by close code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseCodeBucket {
    /// 1000: normal closure.
    Normal,
    /// 1001: going away.
    GoingAway,
    /// 1002: protocol error.
    ProtocolError,
    /// 1003: unsupported data.
    UnsupportedData,
    /// 1006: abnormal closure (no close frame: the TCP connection ended or was dropped).
    Abnormal,
    /// 1007: invalid payload data (e.g. bad UTF-8).
    InvalidPayload,
    /// 1008: policy violation.
    PolicyViolation,
    /// 1009: message too big.
    MessageTooBig,
    /// 1011: internal error (e.g. a handler panicked).
    InternalError,
    /// Any other code (1005 no status, 1010, 1012-1015, application codes 3000-4999, ...).
    Other,
}

impl CloseCodeBucket {
    /// How many buckets there are.
    pub const COUNT: usize = 10;

    /// Every bucket, in index order.
    pub const ALL: [Self; Self::COUNT] = [
        Self::Normal,
        Self::GoingAway,
        Self::ProtocolError,
        Self::UnsupportedData,
        Self::Abnormal,
        Self::InvalidPayload,
        Self::PolicyViolation,
        Self::MessageTooBig,
        Self::InternalError,
        Self::Other,
    ];

    /// The bucket a close code is counted in.
    pub fn from_code(code: u16) -> Self {
        match code {
            1000 => Self::Normal,
            1001 => Self::GoingAway,
            1002 => Self::ProtocolError,
            1003 => Self::UnsupportedData,
            1006 => Self::Abnormal,
            1007 => Self::InvalidPayload,
            1008 => Self::PolicyViolation,
            1009 => Self::MessageTooBig,
            1011 => Self::InternalError,
            _ => Self::Other,
        }
    }

    /// The index of this bucket in `connections_closed_by_code`.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The label value (`"1000"`, ..., `"other"`), as in `connections_closed_total{code="1000"}`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Normal => "1000",
            Self::GoingAway => "1001",
            Self::ProtocolError => "1002",
            Self::UnsupportedData => "1003",
            Self::Abnormal => "1006",
            Self::InvalidPayload => "1007",
            Self::PolicyViolation => "1008",
            Self::MessageTooBig => "1009",
            Self::InternalError => "1011",
            Self::Other => "other",
        }
    }

    /// The flat counter name (`"connections_closed_1000"`, ..., `"connections_closed_other"`) that
    /// [`MetricsSnapshot::get`](super::MetricsSnapshot::get) answers.
    pub fn field_name(self) -> &'static str {
        match self {
            Self::Normal => "connections_closed_1000",
            Self::GoingAway => "connections_closed_1001",
            Self::ProtocolError => "connections_closed_1002",
            Self::UnsupportedData => "connections_closed_1003",
            Self::Abnormal => "connections_closed_1006",
            Self::InvalidPayload => "connections_closed_1007",
            Self::PolicyViolation => "connections_closed_1008",
            Self::MessageTooBig => "connections_closed_1009",
            Self::InternalError => "connections_closed_1011",
            Self::Other => "connections_closed_other",
        }
    }
}

/// Why an opening handshake failed, in a few fixed buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HandshakeFailure {
    /// A malformed or non-WebSocket request (HTTP 400, 405).
    BadRequest,
    /// An unsupported `Sec-WebSocket-Version` (HTTP 426).
    Version,
    /// No route for the path (HTTP 404).
    NotFound,
    /// Refused by policy, e.g. the origin (HTTP 403).
    Forbidden,
    /// The request head was too large or had too many headers (HTTP 431, 413, 414).
    TooLarge,
    /// The request did not arrive before the handshake deadline.
    Timeout,
    /// Anything else (e.g. the handler factory failed: HTTP 500).
    Other,
    /// TLS: the peer's records or handshake messages were malformed, or no protocol version, cipher
    /// suite or ALPN protocol was common.
    TlsProtocol,
    /// TLS: a client certificate was missing or did not verify, or the peer refused ours (an alert
    /// such as `unknown_ca` or `bad_certificate`).
    TlsCertificate,
}

impl HandshakeFailure {
    /// How many buckets there are.
    pub const COUNT: usize = 9;

    /// Every bucket, in index order.
    pub const ALL: [Self; Self::COUNT] = [
        Self::BadRequest,
        Self::Version,
        Self::NotFound,
        Self::Forbidden,
        Self::TooLarge,
        Self::Timeout,
        Self::Other,
        Self::TlsProtocol,
        Self::TlsCertificate,
    ];

    /// The bucket for the HTTP status a refused upgrade was answered with.
    pub fn from_http_status(status: u16) -> Self {
        match status {
            400 | 405 => Self::BadRequest,
            426 => Self::Version,
            404 => Self::NotFound,
            401 | 403 => Self::Forbidden,
            413 | 414 | 431 => Self::TooLarge,
            408 => Self::Timeout,
            _ => Self::Other,
        }
    }

    /// The index of this bucket in `handshake_failures_by_reason`.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The label value (`"bad_request"`, `"version"`, ...), as in
    /// `handshake_failures_total{reason="not_found"}`.
    pub fn label(self) -> &'static str {
        match self {
            Self::BadRequest => "bad_request",
            Self::Version => "version",
            Self::NotFound => "not_found",
            Self::Forbidden => "forbidden",
            Self::TooLarge => "too_large",
            Self::Timeout => "timeout",
            Self::Other => "other",
            Self::TlsProtocol => "tls_protocol",
            Self::TlsCertificate => "tls_certificate",
        }
    }

    /// The flat counter name (`"handshake_failures_bad_request"`, ...) that
    /// [`MetricsSnapshot::get`](super::MetricsSnapshot::get) answers.
    pub fn field_name(self) -> &'static str {
        match self {
            Self::BadRequest => "handshake_failures_bad_request",
            Self::Version => "handshake_failures_version",
            Self::NotFound => "handshake_failures_not_found",
            Self::Forbidden => "handshake_failures_forbidden",
            Self::TooLarge => "handshake_failures_too_large",
            Self::Timeout => "handshake_failures_timeout",
            Self::Other => "handshake_failures_other",
            Self::TlsProtocol => "handshake_failures_tls_protocol",
            Self::TlsCertificate => "handshake_failures_tls_certificate",
        }
    }
}

/// The phase a held TCP connection is counted under in `tcp_connections`.
///
/// A connection is counted under exactly one phase from the moment it is held (accepted, adopted or
/// connecting) until its socket is closed; the phases open and closing are also the WebSocket
/// connections counted by `active_connections`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TcpPhase {
    /// Through no request yet: accepted or adopted and waiting for its first request (or an in-loop
    /// client connecting and waiting for its 101), or a refused upgrade whose error response is going
    /// out.
    Handshake,
    /// Has served (or is serving) a plain HTTP request and has not upgraded: a keep-alive connection, a
    /// `/metrics` scrape, a response being written before the socket closes.
    Http,
    /// A WebSocket: upgraded, frames flow both ways.
    Open,
    /// A WebSocket whose close handshake started (a close frame sent or received, or the connection
    /// failed) and whose socket is not closed yet.
    Closing,
}

impl TcpPhase {
    /// How many phases there are.
    pub const COUNT: usize = 4;

    /// Every phase, in index order.
    pub const ALL: [Self; Self::COUNT] = [Self::Handshake, Self::Http, Self::Open, Self::Closing];

    /// The index of this phase in `tcp_connections_by_phase`.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Whether a connection in this phase is a WebSocket (counted by `active_connections` too).
    pub fn is_websocket(self) -> bool {
        matches!(self, Self::Open | Self::Closing)
    }

    /// The label value (`"handshake"`, `"http"`, `"open"`, `"closing"`), as in
    /// `tcp_connections{phase="open"}`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Handshake => "handshake",
            Self::Http => "http",
            Self::Open => "open",
            Self::Closing => "closing",
        }
    }

    /// The flat gauge name (`"tcp_connections_handshake"`, ...) that
    /// [`MetricsSnapshot::get`](super::MetricsSnapshot::get) answers.
    pub fn field_name(self) -> &'static str {
        match self {
            Self::Handshake => "tcp_connections_handshake",
            Self::Http => "tcp_connections_http",
            Self::Open => "tcp_connections_open",
            Self::Closing => "tcp_connections_closing",
        }
    }
}

impl From<&crate::proto::handshake::HandshakeError> for HandshakeFailure {
    fn from(err: &crate::proto::handshake::HandshakeError) -> Self {
        use crate::proto::handshake::HandshakeError as E;
        match err {
            E::UnsupportedVersion { .. } => Self::Version,
            E::NotUpgrade => Self::BadRequest,
            E::HeadTooLarge { .. } | E::TooManyHeaders { .. } => Self::TooLarge,
            other => Self::from_http_status(other.status()),
        }
    }
}
