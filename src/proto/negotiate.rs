//! Header-level negotiation: `Sec-WebSocket-Extensions` (RFC 6455 §9.1) and `Sec-WebSocket-Protocol`
//! (RFC 6455 §1.9, §11.3.4) values, and the server's subprotocol choice.
//!
//! Owns: the grammar of those two headers (parsing into owned values, formatting back) and
//! [`SubprotocolPolicy`]. Never touches: the rest of the handshake (see [`crate::proto::handshake`]),
//! what an extension's parameters mean (that is the extension's business, see
//! [`Extension`](crate::proto::Extension)), sockets or buffers.
//!
//! Parsing is whitespace tolerant and ignores empty list elements (`a, , b`), as RFC 7230 §7 asks of
//! recipients. Quoted parameter values are unescaped on parse; RFC 6455 asks that an unescaped value
//! still be a token, but this module accepts any printable ASCII inside quotes and leaves judging the
//! value to the extension that reads it.

use std::fmt;
use std::sync::Arc;

/// One extension offer (client) or acceptance (server) from a `Sec-WebSocket-Extensions` value, e.g.
/// `permessage-deflate; client_max_window_bits; server_max_window_bits=10`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ExtensionOffer {
    /// The extension token, as sent (e.g. `permessage-deflate`).
    pub name: String,
    /// The parameters in the order they were sent: name, and the value (unquoted and unescaped) if
    /// one was given. Duplicates are kept; the extension decides whether they are allowed.
    pub params: Vec<(String, Option<String>)>,
}

impl ExtensionOffer {
    /// An offer with no parameters.
    pub fn new(name: impl Into<String>) -> Self {
        Self { name: name.into(), params: Vec::new() }
    }

    /// Adds a parameter (builder style). `value` is the unquoted value; [`format_extensions`] quotes
    /// it when needed.
    #[must_use]
    pub fn with_param(mut self, name: impl Into<String>, value: Option<&str>) -> Self {
        self.params.push((name.into(), value.map(str::to_owned)));
        self
    }

    /// The first parameter named `name` (ASCII case-insensitive): `None` if absent, `Some(None)` if
    /// present without a value, `Some(Some(v))` with its value.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        self.params.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_deref())
    }
}

/// Why a `Sec-WebSocket-Extensions` or `Sec-WebSocket-Protocol` value could not be parsed.
///
/// Byte offsets are into the header value that was given to the parser (for
/// [`parse_extension_headers`], into the one header line that failed).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NegotiateError {
    /// A token (extension name, parameter name or value, subprotocol) was expected at `at` but the
    /// value had a delimiter or ended there, e.g. `foo; =1`, `foo;` or `;x`.
    EmptyToken {
        /// Byte offset where the token should have started.
        at: usize,
    },
    /// A quoted string opened at `at` never closed (or ended on a lone backslash).
    UnterminatedQuote {
        /// Byte offset of the opening `"`.
        at: usize,
    },
    /// A character not allowed at that place: not a token character, a control character inside a
    /// quoted string, or something other than `;` / `,` after a complete element.
    InvalidChar {
        /// Byte offset of the character.
        at: usize,
        /// The character found.
        found: char,
    },
}

impl fmt::Display for NegotiateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EmptyToken { at } => write!(
                f,
                "expected a token at byte {at} but found a delimiter or the end of the value \
                 (check for a stray `;`, `=` or a missing name)"
            ),
            Self::UnterminatedQuote { at } => write!(
                f,
                "the quoted string opened at byte {at} is never closed (check for a missing `\"` \
                 or a trailing backslash)"
            ),
            Self::InvalidChar { at, found } => write!(
                f,
                "unexpected character {found:?} at byte {at} (tokens allow letters, digits and \
                 !#$%&'*+-.^_`|~; other text must be quoted and elements separated by `;` or `,`)"
            ),
        }
    }
}

impl std::error::Error for NegotiateError {}

/// Whether `b` is an RFC 7230 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~'
        )
}

/// Whether `s` is a non-empty RFC 7230 token (what extension names, parameter names and subprotocol
/// identifiers must be).
pub fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_tchar)
}

/// Whether `b` may appear inside a quoted string (unescaped `qdtext` or after a backslash): HTAB,
/// SP and visible ASCII. Other bytes (controls, DEL, non-ASCII) are refused.
fn is_quotable(b: u8) -> bool {
    b == b'\t' || (b' '..=b'~').contains(&b)
}

/// A cursor over a header value.
struct Cursor<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(s: &'a str) -> Self {
        Self { s, pos: 0 }
    }

    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.pos).copied()
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    /// The character at `at`, for error reports.
    fn char_at(&self, at: usize) -> char {
        self.s.get(at..).and_then(|rest| rest.chars().next()).unwrap_or(char::REPLACEMENT_CHARACTER)
    }

    fn invalid_here(&self) -> NegotiateError {
        NegotiateError::InvalidChar { at: self.pos, found: self.char_at(self.pos) }
    }

    /// Reads a non-empty token.
    fn token(&mut self) -> Result<&'a str, NegotiateError> {
        let start = self.pos;
        while self.peek().is_some_and(is_tchar) {
            self.pos += 1;
        }
        if self.pos > start {
            // Token characters are ASCII, so both ends are char boundaries.
            return Ok(&self.s[start..self.pos]);
        }
        match self.peek() {
            None | Some(b',' | b';' | b'=' | b' ' | b'\t') => Err(NegotiateError::EmptyToken { at: start }),
            Some(_) => Err(self.invalid_here()),
        }
    }

    /// Reads a quoted string starting at the opening `"`, returning its unescaped content.
    fn quoted(&mut self) -> Result<String, NegotiateError> {
        let open = self.pos;
        self.pos += 1;
        let mut out = String::new();
        loop {
            match self.peek() {
                None => return Err(NegotiateError::UnterminatedQuote { at: open }),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    match self.peek() {
                        None => return Err(NegotiateError::UnterminatedQuote { at: open }),
                        Some(b) if is_quotable(b) => {
                            out.push(char::from(b));
                            self.pos += 1;
                        }
                        Some(_) => return Err(self.invalid_here()),
                    }
                }
                Some(b) if is_quotable(b) => {
                    out.push(char::from(b));
                    self.pos += 1;
                }
                Some(_) => return Err(self.invalid_here()),
            }
        }
    }
}

/// Parses one `Sec-WebSocket-Extensions` value (RFC 6455 §9.1) into its offers, in order.
///
/// Grammar: `extension *( "," extension )`, `extension = token *( ";" param )`,
/// `param = token [ "=" ( token / quoted-string ) ]`, with optional whitespace around every delimiter.
/// Empty list elements are ignored and an empty value gives an empty list. Several header lines
/// must be joined with `", "` first, or given to [`parse_extension_headers`].
///
/// ```
/// use wsloop::proto::negotiate::parse_extensions;
/// let offers = parse_extensions("permessage-deflate; client_max_window_bits, x-foo; a=\"b c\"").unwrap();
/// assert_eq!(offers[0].param("client_max_window_bits"), Some(None));
/// assert_eq!(offers[1].param("a"), Some(Some("b c")));
/// ```
pub fn parse_extensions(value: &str) -> Result<Vec<ExtensionOffer>, NegotiateError> {
    let mut out = Vec::new();
    parse_extensions_into(value, &mut out)?;
    Ok(out)
}

fn parse_extensions_into(value: &str, out: &mut Vec<ExtensionOffer>) -> Result<(), NegotiateError> {
    let mut c = Cursor::new(value);
    loop {
        c.skip_ows();
        match c.peek() {
            None => return Ok(()),
            Some(b',') => {
                // An empty list element.
                c.pos += 1;
                continue;
            }
            Some(_) => {}
        }
        let mut offer = ExtensionOffer::new(c.token()?);
        loop {
            c.skip_ows();
            match c.peek() {
                None => break,
                Some(b',') => {
                    c.pos += 1;
                    break;
                }
                Some(b';') => {
                    c.pos += 1;
                    c.skip_ows();
                    let name = c.token()?.to_owned();
                    c.skip_ows();
                    let value = if c.peek() == Some(b'=') {
                        c.pos += 1;
                        c.skip_ows();
                        if c.peek() == Some(b'"') {
                            Some(c.quoted()?)
                        } else {
                            Some(c.token()?.to_owned())
                        }
                    } else {
                        None
                    };
                    offer.params.push((name, value));
                }
                Some(_) => return Err(c.invalid_here()),
            }
        }
        out.push(offer);
    }
}

/// Parses every `Sec-WebSocket-Extensions` header line of a message, in order, as if they had been
/// joined with `", "`. Error offsets are relative to the line that failed.
pub fn parse_extension_headers<I, S>(values: I) -> Result<Vec<ExtensionOffer>, NegotiateError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut out = Vec::new();
    for value in values {
        parse_extensions_into(value.as_ref(), &mut out)?;
    }
    Ok(out)
}

/// Formats offers as a `Sec-WebSocket-Extensions` value: `name; p; q=v, other`. Values that are
/// tokens are written bare, others (including the empty string) as quoted strings with `"` and `\`
/// escaped.
///
/// The caller supplies well-formed names (tokens) and values without control characters; this is
/// what [`parse_extensions`] produces, and `parse_extensions(&format_extensions(x)) == x` holds for
/// such input.
pub fn format_extensions(offers: &[ExtensionOffer]) -> String {
    let mut out = String::new();
    for (i, offer) in offers.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(&offer.name);
        for (name, value) in &offer.params {
            out.push_str("; ");
            out.push_str(name);
            if let Some(value) = value {
                out.push('=');
                if is_token(value) {
                    out.push_str(value);
                } else {
                    out.push('"');
                    for ch in value.chars() {
                        if ch == '"' || ch == '\\' {
                            out.push('\\');
                        }
                        out.push(ch);
                    }
                    out.push('"');
                }
            }
        }
    }
    out
}

/// Parses a `Sec-WebSocket-Protocol` value (a comma-separated list of tokens) in order.
///
/// Whitespace around elements and empty elements are tolerated; anything that is not a token is an
/// error. Several header lines may be parsed one by one and their lists appended.
pub fn parse_protocol_list(value: &str) -> Result<Vec<String>, NegotiateError> {
    let mut out = Vec::new();
    let mut c = Cursor::new(value);
    loop {
        c.skip_ows();
        match c.peek() {
            None => return Ok(out),
            Some(b',') => {
                c.pos += 1;
                continue;
            }
            Some(_) => {}
        }
        out.push(c.token()?.to_owned());
        c.skip_ows();
        match c.peek() {
            None => return Ok(out),
            Some(b',') => c.pos += 1,
            Some(_) => return Err(c.invalid_here()),
        }
    }
}

/// The signature of a [`SubprotocolPolicy::Callback`].
pub type SubprotocolCallback = dyn Fn(&[&str]) -> Option<String> + Send + Sync;

/// How a server picks the subprotocol (`Sec-WebSocket-Protocol`) answered to a client.
///
/// Whatever the policy, [`SubprotocolPolicy::select`] only ever returns one of the protocols the
/// client offered (compared exactly, case-sensitively), as RFC 6455 §4.2.2 requires.
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum SubprotocolPolicy {
    /// Never select a subprotocol (the response carries no `Sec-WebSocket-Protocol`). The default.
    #[default]
    None,
    /// The server's supported protocols, most preferred first: the first of them that the client
    /// offered wins (server preference order, not the client's).
    Preferred(Vec<String>),
    /// The application decides from the offered list (in the client's order). A returned protocol
    /// that was not offered is refused: [`SubprotocolPolicy::select`] logs a warning and selects none.
    Callback(Arc<SubprotocolCallback>),
}

impl SubprotocolPolicy {
    /// A [`SubprotocolPolicy::Callback`] from a closure.
    pub fn callback<F>(f: F) -> Self
    where
        F: Fn(&[&str]) -> Option<String> + Send + Sync + 'static,
    {
        Self::Callback(Arc::new(f))
    }

    /// The protocol to answer to a client that offered `offered`, or `None` for no subprotocol.
    /// Never returns a protocol absent from `offered`.
    pub fn select(&self, offered: &[&str]) -> Option<String> {
        match self {
            Self::None => None,
            Self::Preferred(supported) => supported.iter().find(|p| offered.contains(&p.as_str())).cloned(),
            Self::Callback(f) => {
                if offered.is_empty() {
                    return None;
                }
                let picked = f(offered)?;
                if offered.contains(&picked.as_str()) {
                    Some(picked)
                } else {
                    log::warn!(
                        "subprotocol callback picked {picked:?}, which the client did not offer \
                         (offered: {offered:?}); answering without a subprotocol"
                    );
                    None
                }
            }
        }
    }
}

impl fmt::Debug for SubprotocolPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => f.write_str("None"),
            Self::Preferred(list) => f.debug_tuple("Preferred").field(list).finish(),
            Self::Callback(_) => f.write_str("Callback(<fn>)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck::{Arbitrary, Gen, QuickCheck};

    fn offer(name: &str, params: &[(&str, Option<&str>)]) -> ExtensionOffer {
        ExtensionOffer {
            name: name.to_owned(),
            params: params.iter().map(|(n, v)| ((*n).to_owned(), v.map(str::to_owned))).collect(),
        }
    }

    #[test]
    fn parses_single_extension_without_params() {
        assert_eq!(parse_extensions("permessage-deflate"), Ok(vec![offer("permessage-deflate", &[])]));
    }

    #[test]
    fn parses_several_offers_with_params_in_order() {
        let got = parse_extensions(
            "permessage-deflate; client_max_window_bits; server_max_window_bits=10, permessage-deflate",
        );
        assert_eq!(
            got,
            Ok(vec![
                offer(
                    "permessage-deflate",
                    &[("client_max_window_bits", None), ("server_max_window_bits", Some("10"))]
                ),
                offer("permessage-deflate", &[]),
            ])
        );
    }

    #[test]
    fn parses_quoted_param_values() {
        assert_eq!(
            parse_extensions(r#"x; a="10"; b="two words"; c="""#),
            Ok(vec![offer("x", &[("a", Some("10")), ("b", Some("two words")), ("c", Some(""))])])
        );
    }

    #[test]
    fn unescapes_backslash_escapes_in_quoted_values() {
        assert_eq!(parse_extensions(r#"x; a="q\"uo\\te\d""#), Ok(vec![offer("x", &[("a", Some(r#"q"uo\ted"#))])]));
    }

    #[test]
    fn quoted_values_may_contain_delimiters() {
        assert_eq!(parse_extensions(r#"x; a=",;=", y"#), Ok(vec![offer("x", &[("a", Some(",;="))]), offer("y", &[])]));
    }

    #[test]
    fn tolerates_whitespace_around_delimiters() {
        assert_eq!(
            parse_extensions(" \tx ;a = 1 ; b\t;c= \"v\" ,  y  "),
            Ok(vec![offer("x", &[("a", Some("1")), ("b", None), ("c", Some("v"))]), offer("y", &[])])
        );
    }

    #[test]
    fn ignores_empty_list_elements() {
        assert_eq!(parse_extensions(", x, ,, y ,"), Ok(vec![offer("x", &[]), offer("y", &[])]));
        assert_eq!(parse_extensions(""), Ok(vec![]));
        assert_eq!(parse_extensions("  "), Ok(vec![]));
    }

    #[test]
    fn rejects_empty_extension_name() {
        assert_eq!(parse_extensions("; a=1"), Err(NegotiateError::EmptyToken { at: 0 }));
    }

    #[test]
    fn rejects_empty_param_name() {
        assert_eq!(parse_extensions("x; =1"), Err(NegotiateError::EmptyToken { at: 3 }));
        assert_eq!(parse_extensions("x;"), Err(NegotiateError::EmptyToken { at: 2 }));
        assert_eq!(parse_extensions("x;, y"), Err(NegotiateError::EmptyToken { at: 2 }));
    }

    #[test]
    fn rejects_empty_param_value() {
        assert_eq!(parse_extensions("x; a="), Err(NegotiateError::EmptyToken { at: 5 }));
        assert_eq!(parse_extensions("x; a= , y"), Err(NegotiateError::EmptyToken { at: 6 }));
    }

    #[test]
    fn rejects_unterminated_quote() {
        assert_eq!(parse_extensions(r#"x; a="abc"#), Err(NegotiateError::UnterminatedQuote { at: 5 }));
        assert_eq!(parse_extensions(r#"x; a="abc\"#), Err(NegotiateError::UnterminatedQuote { at: 5 }));
    }

    #[test]
    fn rejects_bad_chars_in_tokens() {
        assert_eq!(parse_extensions("x@y"), Err(NegotiateError::InvalidChar { at: 1, found: '@' }));
        assert_eq!(parse_extensions("x; a=b/c"), Err(NegotiateError::InvalidChar { at: 6, found: '/' }));
        assert_eq!(parse_extensions("é"), Err(NegotiateError::InvalidChar { at: 0, found: 'é' }));
    }

    #[test]
    fn rejects_control_and_non_ascii_chars_in_quoted_values() {
        assert_eq!(parse_extensions("x; a=\"b\u{1}\""), Err(NegotiateError::InvalidChar { at: 7, found: '\u{1}' }));
        assert_eq!(parse_extensions("x; a=\"é\""), Err(NegotiateError::InvalidChar { at: 6, found: 'é' }));
    }

    #[test]
    fn rejects_text_after_a_complete_element() {
        assert_eq!(parse_extensions("x y"), Err(NegotiateError::InvalidChar { at: 2, found: 'y' }));
        assert_eq!(parse_extensions(r#"x; a="b"c"#), Err(NegotiateError::InvalidChar { at: 8, found: 'c' }));
    }

    #[test]
    fn parses_several_header_lines_as_one_list() {
        assert_eq!(
            parse_extension_headers(["x; a=1", "", "y, z"]),
            Ok(vec![offer("x", &[("a", Some("1"))]), offer("y", &[]), offer("z", &[])])
        );
        assert_eq!(
            parse_extension_headers(vec!["x".to_owned(), ";".to_owned()]),
            Err(NegotiateError::EmptyToken { at: 0 })
        );
    }

    #[test]
    fn formats_token_values_bare_and_others_quoted() {
        let offers = vec![
            offer("x", &[("a", Some("10")), ("b", None)]),
            offer("y", &[("c", Some("two words")), ("d", Some(r#"q"\"#)), ("e", Some(""))]),
        ];
        assert_eq!(format_extensions(&offers), r#"x; a=10; b, y; c="two words"; d="q\"\\"; e="""#);
        assert_eq!(format_extensions(&[]), "");
    }

    #[test]
    fn param_lookup_is_case_insensitive_and_distinguishes_no_value() {
        let o = offer("x", &[("A", None), ("b", Some("1"))]);
        assert_eq!(o.param("a"), Some(None));
        assert_eq!(o.param("B"), Some(Some("1")));
        assert_eq!(o.param("c"), None);
        assert_eq!(ExtensionOffer::new("x").with_param("b", Some("1")), offer("x", &[("b", Some("1"))]));
    }

    /// Arbitrary offers restricted to what the header can carry: token names, values of HTAB/SP/VCHAR.
    #[derive(Debug, Clone)]
    struct Offers(Vec<ExtensionOffer>);

    const TCHARS: &[u8] = b"abcXYZ019!#$%&'*+-.^_`|~";
    const VALUE_CHARS: &[u8] = b"abcXYZ019!#$%&'*+-.^_`|~ \t\"\\,;=()/:<>?@[]{}";

    fn gen_string(g: &mut Gen, alphabet: &[u8], min: usize) -> String {
        let len = min + usize::arbitrary(g) % 8;
        (0..len).map(|_| char::from(*g.choose(alphabet).unwrap_or(&b'a'))).collect()
    }

    impl Arbitrary for Offers {
        fn arbitrary(g: &mut Gen) -> Self {
            let n = usize::arbitrary(g) % 4;
            Self(
                (0..n)
                    .map(|_| ExtensionOffer {
                        name: gen_string(g, TCHARS, 1),
                        params: (0..usize::arbitrary(g) % 4)
                            .map(|_| {
                                let value = if bool::arbitrary(g) { Some(gen_string(g, VALUE_CHARS, 0)) } else { None };
                                (gen_string(g, TCHARS, 1), value)
                            })
                            .collect(),
                    })
                    .collect(),
            )
        }
    }

    #[test]
    fn format_then_parse_round_trips() {
        fn prop(offers: Offers) -> bool {
            parse_extensions(&format_extensions(&offers.0)) == Ok(offers.0)
        }
        QuickCheck::new().tests(2000).quickcheck(prop as fn(Offers) -> bool);
    }

    #[test]
    fn parse_never_panics_on_arbitrary_input() {
        fn prop(s: String) -> bool {
            let _ = parse_extensions(&s);
            let _ = parse_protocol_list(&s);
            true
        }
        QuickCheck::new().tests(2000).quickcheck(prop as fn(String) -> bool);
    }

    #[test]
    fn parses_protocol_list_in_order() {
        assert_eq!(
            parse_protocol_list("chat, superchat ,v2.json"),
            Ok(vec!["chat".to_owned(), "superchat".to_owned(), "v2.json".to_owned()])
        );
        assert_eq!(parse_protocol_list(" , chat,,"), Ok(vec!["chat".to_owned()]));
        assert_eq!(parse_protocol_list(""), Ok(vec![]));
    }

    #[test]
    fn rejects_non_token_protocols() {
        assert_eq!(parse_protocol_list("chat, super chat"), Err(NegotiateError::InvalidChar { at: 12, found: 'c' }));
        assert_eq!(parse_protocol_list("chat; v=1"), Err(NegotiateError::InvalidChar { at: 4, found: ';' }));
        assert_eq!(parse_protocol_list("\"chat\""), Err(NegotiateError::InvalidChar { at: 0, found: '"' }));
    }

    #[test]
    fn policy_none_never_picks() {
        assert_eq!(SubprotocolPolicy::None.select(&["chat"]), None);
        assert_eq!(SubprotocolPolicy::default().select(&["chat"]), None);
    }

    #[test]
    fn preferred_picks_in_server_preference_order() {
        let policy = SubprotocolPolicy::Preferred(vec!["v2".into(), "v1".into()]);
        assert_eq!(policy.select(&["v1", "v2"]), Some("v2".to_owned()));
        assert_eq!(policy.select(&["v1", "v0"]), Some("v1".to_owned()));
        assert_eq!(policy.select(&["v0"]), None);
        assert_eq!(policy.select(&[]), None);
    }

    #[test]
    fn preferred_matches_protocols_case_sensitively() {
        let policy = SubprotocolPolicy::Preferred(vec!["Chat".into()]);
        assert_eq!(policy.select(&["chat"]), None);
    }

    #[test]
    fn callback_sees_offered_list_and_picks_offered_protocol() {
        let policy = SubprotocolPolicy::callback(|offered| {
            assert_eq!(offered, ["a", "b"]);
            Some("b".to_owned())
        });
        assert_eq!(policy.select(&["a", "b"]), Some("b".to_owned()));
    }

    #[test]
    fn callback_cannot_pick_unoffered_protocol() {
        let policy = SubprotocolPolicy::callback(|_| Some("evil".to_owned()));
        assert_eq!(policy.select(&["a", "b"]), None);
    }

    #[test]
    fn callback_is_not_called_when_nothing_was_offered() {
        let policy = SubprotocolPolicy::callback(|_| panic!("must not be called"));
        assert_eq!(policy.select(&[]), None);
    }

    #[test]
    fn policy_debug_hides_the_callback() {
        assert_eq!(format!("{:?}", SubprotocolPolicy::callback(|_| None)), "Callback(<fn>)");
        assert_eq!(format!("{:?}", SubprotocolPolicy::Preferred(vec!["a".into()])), "Preferred([\"a\"])");
    }
}
