//! The four permessage-deflate parameters (RFC 7692 §7.1): parsing them strictly, a server's choice
//! among offers, a client's offer and its check of the answer.

use std::fmt;

use super::super::negotiate::ExtensionOffer;
use super::{DeflateConfig, DeflateMode};

/// The extension token.
pub const EXTENSION_NAME: &str = "permessage-deflate";

const SERVER_NCT: &str = "server_no_context_takeover";
const CLIENT_NCT: &str = "client_no_context_takeover";
const SERVER_MWB: &str = "server_max_window_bits";
const CLIENT_MWB: &str = "client_max_window_bits";

/// The agreed parameters of a permessage-deflate connection: what the server's answer says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeflateParams {
    /// The server resets its compressor after every message.
    pub server_no_context_takeover: bool,
    /// The client resets its compressor after every message.
    pub client_no_context_takeover: bool,
    /// The server's compressor window stays within `2^bits` bytes (`None`: up to 15).
    pub server_max_window_bits: Option<u8>,
    /// The client's compressor window stays within `2^bits` bytes (`None`: up to 15).
    pub client_max_window_bits: Option<u8>,
}

/// Why a server's permessage-deflate answer was refused (the client fails the handshake), or why a
/// server declined one offer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeflateResponseError {
    /// A parameter RFC 7692 does not define.
    UnknownParam {
        /// Its name.
        name: String,
    },
    /// A parameter given twice.
    DuplicateParam {
        /// Its name.
        name: String,
    },
    /// A window-bits value that is not a decimal 8-15 without leading zeros.
    InvalidValue {
        /// The parameter.
        name: String,
        /// What came.
        value: String,
    },
    /// A parameter that needs a value came without one (`server_max_window_bits`, and
    /// `client_max_window_bits` in an answer).
    MissingValue {
        /// The parameter.
        name: String,
    },
    /// A `*_no_context_takeover` parameter came with a value.
    UnexpectedValue {
        /// The parameter.
        name: String,
    },
    /// The answer has `client_max_window_bits` but the client did not offer it.
    NotOffered {
        /// The parameter.
        name: String,
    },
    /// The answer's `server_max_window_bits` is larger than the client asked for.
    WindowTooLarge {
        /// The limit the client offered.
        offered: u8,
        /// What the server answered.
        answered: u8,
    },
    /// The client asked for `server_no_context_takeover` and the answer lacks it.
    TakeoverNotDropped,
    /// The answer accepts permessage-deflate more than once.
    AcceptedTwice,
}

impl fmt::Display for DeflateResponseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownParam { name } => write!(f, "permessage-deflate has no parameter {name:?}"),
            Self::DuplicateParam { name } => write!(f, "permessage-deflate parameter {name} given twice"),
            Self::InvalidValue { name, value } => {
                write!(f, "{name}={value:?} is not a window size (a decimal 8-15 without leading zeros)")
            }
            Self::MissingValue { name } => write!(f, "{name} needs a value (8-15)"),
            Self::UnexpectedValue { name } => write!(f, "{name} takes no value"),
            Self::NotOffered { name } => write!(f, "the server answered {name}, which the client did not offer"),
            Self::WindowTooLarge { offered, answered } => write!(
                f,
                "the server answered server_max_window_bits={answered}, above the {offered} the client offered"
            ),
            Self::TakeoverNotDropped => {
                f.write_str("the client offered server_no_context_takeover and the answer does not have it")
            }
            Self::AcceptedTwice => f.write_str("the server accepted permessage-deflate twice"),
        }
    }
}

impl std::error::Error for DeflateResponseError {}

/// One offer or answer, parsed: `client_max_window_bits` is `Some(None)` when present without a value.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Parsed {
    server_nct: bool,
    client_nct: bool,
    server_mwb: Option<u8>,
    client_mwb: Option<Option<u8>>,
}

fn window_bits(name: &str, value: &str) -> Result<u8, DeflateResponseError> {
    // 1*DIGIT, 8-15, no leading zero (RFC 7692 §7.1.2.1 / §7.1.2.2).
    let ok = !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) && !value.starts_with('0');
    match value.parse::<u8>() {
        Ok(bits @ 8..=15) if ok => Ok(bits),
        _ => Err(DeflateResponseError::InvalidValue { name: name.to_owned(), value: value.to_owned() }),
    }
}

/// Parses the parameters of one offer (`answer == false`) or answer: unique, known, values in range.
fn parse(params: &[(String, Option<String>)], answer: bool) -> Result<Parsed, DeflateResponseError> {
    let mut p = Parsed::default();
    let mut seen = [false; 4];
    for (name, value) in params {
        let lower = name.to_ascii_lowercase();
        let index = match lower.as_str() {
            SERVER_NCT => 0,
            CLIENT_NCT => 1,
            SERVER_MWB => 2,
            CLIENT_MWB => 3,
            _ => return Err(DeflateResponseError::UnknownParam { name: name.clone() }),
        };
        if std::mem::replace(&mut seen[index], true) {
            return Err(DeflateResponseError::DuplicateParam { name: name.clone() });
        }
        let no_value = || match value {
            None => Ok(()),
            Some(_) => Err(DeflateResponseError::UnexpectedValue { name: name.clone() }),
        };
        match index {
            0 => {
                no_value()?;
                p.server_nct = true;
            }
            1 => {
                no_value()?;
                p.client_nct = true;
            }
            2 => match value {
                Some(v) => p.server_mwb = Some(window_bits(name, v)?),
                None => return Err(DeflateResponseError::MissingValue { name: name.clone() }),
            },
            _ => match value {
                Some(v) => p.client_mwb = Some(Some(window_bits(name, v)?)),
                None if answer => return Err(DeflateResponseError::MissingValue { name: name.clone() }),
                None => p.client_mwb = Some(None),
            },
        }
    }
    Ok(p)
}

/// The server's choice: the first permessage-deflate offer (client preference order) that is valid
/// and that `config` can honour, with the agreed parameters and the answer to send. `None` when
/// deflate is off or no offer qualifies (malformed, unknown or duplicate parameters decline an
/// offer; so does `server_max_window_bits=8`, which stock zlib cannot produce).
///
/// The answer holds `server_no_context_takeover` whenever the offer asked for it or the mode is
/// [`DeflateMode::Shared`]; `client_no_context_takeover` whenever the offer asked for it, the mode is
/// shared, or [`DeflateConfig::request_client_no_context_takeover`] is set (the default);
/// `server_max_window_bits` whenever the offer had it or our window is below 15, and
/// `client_max_window_bits` only when the offer had it and [`DeflateConfig::peer_window_bits`] asks
/// for less than the client allowed.
pub fn accept_offers(config: &DeflateConfig, offers: &[ExtensionOffer]) -> Option<(DeflateParams, ExtensionOffer)> {
    if !config.enabled() {
        return None;
    }
    offers.iter().filter(|o| o.name.eq_ignore_ascii_case(EXTENSION_NAME)).find_map(|offer| {
        let p = parse(&offer.params, false).ok()?;
        let server_bits = config.window_bits.min(p.server_mwb.unwrap_or(15));
        if server_bits < 9 {
            return None;
        }
        let shared = config.mode == DeflateMode::Shared;
        let agreed = DeflateParams {
            server_no_context_takeover: p.server_nct || shared,
            client_no_context_takeover: p.client_nct || shared || config.request_client_no_context_takeover,
            server_max_window_bits: (p.server_mwb.is_some() || server_bits < 15).then_some(server_bits),
            client_max_window_bits: match p.client_mwb {
                Some(limit) if config.peer_window_bits < limit.unwrap_or(15) && !shared => {
                    Some(config.peer_window_bits)
                }
                _ => None,
            },
        };
        Some((agreed, answer(&agreed)))
    })
}

/// The `Sec-WebSocket-Extensions` element for `agreed`.
fn answer(agreed: &DeflateParams) -> ExtensionOffer {
    let mut a = ExtensionOffer::new(EXTENSION_NAME);
    if agreed.server_no_context_takeover {
        a = a.with_param(SERVER_NCT, None);
    }
    if agreed.client_no_context_takeover {
        a = a.with_param(CLIENT_NCT, None);
    }
    if let Some(bits) = agreed.server_max_window_bits {
        a = a.with_param(SERVER_MWB, Some(&bits.to_string()));
    }
    if let Some(bits) = agreed.client_max_window_bits {
        a = a.with_param(CLIENT_MWB, Some(&bits.to_string()));
    }
    a
}

/// The client's offer for `config` (`None` when deflate is off): always `client_max_window_bits`
/// (we can compress with any window the server asks for, down to 9); in shared mode both
/// `*_no_context_takeover`; `server_max_window_bits` when [`DeflateConfig::peer_window_bits`] is
/// below 15.
pub fn client_offer(config: &DeflateConfig) -> Option<ExtensionOffer> {
    if !config.enabled() {
        return None;
    }
    let mut o = ExtensionOffer::new(EXTENSION_NAME);
    if config.mode == DeflateMode::Shared {
        o = o.with_param(SERVER_NCT, None).with_param(CLIENT_NCT, None);
    }
    if config.peer_window_bits < 15 {
        o = o.with_param(SERVER_MWB, Some(&config.peer_window_bits.to_string()));
    }
    Some(o.with_param(CLIENT_MWB, None))
}

/// Checks the server's accepted extensions against what [`client_offer`] sent for `config`:
/// `Ok(None)` when permessage-deflate was not accepted, the agreed parameters when it was, and an
/// error (the handshake fails) when the answer is malformed, unknown, duplicated, out of range or
/// not what was offered.
pub fn check_response(
    config: &DeflateConfig,
    accepted: &[ExtensionOffer],
) -> Result<Option<DeflateParams>, DeflateResponseError> {
    let mut found = accepted.iter().filter(|o| o.name.eq_ignore_ascii_case(EXTENSION_NAME));
    let Some(answer) = found.next() else {
        return Ok(None);
    };
    if found.next().is_some() {
        return Err(DeflateResponseError::AcceptedTwice);
    }
    let p = parse(&answer.params, true)?;
    let Some(offer) = client_offer(config) else {
        // Not offered at all: the handshake layer reports an unoffered extension first.
        return Err(DeflateResponseError::NotOffered { name: EXTENSION_NAME.to_owned() });
    };
    let offered = parse(&offer.params, false).unwrap_or_default();
    if offered.server_nct && !p.server_nct {
        return Err(DeflateResponseError::TakeoverNotDropped);
    }
    if let (Some(limit), Some(got)) = (offered.server_mwb, p.server_mwb) {
        if got > limit {
            return Err(DeflateResponseError::WindowTooLarge { offered: limit, answered: got });
        }
    }
    if p.client_mwb.is_some() && offered.client_mwb.is_none() {
        return Err(DeflateResponseError::NotOffered { name: CLIENT_MWB.to_owned() });
    }
    Ok(Some(DeflateParams {
        server_no_context_takeover: p.server_nct,
        client_no_context_takeover: p.client_nct,
        server_max_window_bits: p.server_mwb,
        client_max_window_bits: p.client_mwb.flatten(),
    }))
}
