//! [`Connection::read`]: frames in, events out. The small-frame fast path, the general frame loop, the
//! checks of each header, message assembly through an extension, control frames and failing the
//! connection with the right close code.

use super::*;

impl Connection {
    /// Parses frames from the start of `buf` until one yields an event or the buffer runs out.
    ///
    /// Returns the number of bytes consumed and the event, if any. `Ok((n, None))` means more bytes are
    /// needed: keep `buf[n..]` and present it again, unchanged and followed by new bytes, on the next call.
    /// Automatic replies (pong, the close reply) are appended to `out`. On a protocol error a close frame
    /// with the error's code is appended to `out`, the connection enters [`CloseState::Failed`] and the
    /// error is returned: send `out`, then close the transport. After the peer's close frame or a failure,
    /// further bytes are consumed and ignored.
    pub fn read<'a>(
        &mut self,
        buf: &'a mut [u8],
        out: &mut Vec<u8>,
    ) -> Result<(usize, Option<Event<'a>>), ProtocolError> {
        if let Some(frame) = self.small_frame(buf) {
            return self.read_small_frame(buf, frame, out);
        }
        self.read_not_small(buf, out)
    }

    /// [`Connection::read`] past the 7-bit fast path: a frame with a 16-bit length that is otherwise
    /// like a small one ([`Connection::medium_frame`]) is delivered the same way, anything else takes
    /// the general path. Out of line, so the 7-bit path in `read` stays as short as it was.
    #[inline(never)]
    fn read_not_small<'a>(
        &mut self,
        buf: &'a mut [u8],
        out: &mut Vec<u8>,
    ) -> Result<(usize, Option<Event<'a>>), ProtocolError> {
        if let Some(frame) = self.medium_frame(buf) {
            return self.read_small_frame(buf, frame, out);
        }
        self.read_general(buf, out)
    }

    /// The common case, recognised from the first two header bytes: a complete, final text or binary
    /// frame with a 7-bit length within the limits, masked as the role requires, without RSV bits,
    /// arriving while the connection is open and no frame or message is in progress. Every rule
    /// [`Connection::read_general`] would apply to such a frame holds by construction (a frame without
    /// RSV bits never goes through an extension), so it skips the header parse, the per-frame state and
    /// the message bookkeeping. `None`: take the general path, which applies every rule.
    #[inline]
    pub(super) fn small_frame(&self, buf: &[u8]) -> Option<SmallFrame> {
        let [b0, b1, ..] = *buf else { return None };
        let text = Self::fast_path_opcode(b0)?;
        let len7 = b1 & 0x7f;
        // `small_max` is at most 125 and within both size limits.
        if len7 > self.small_max {
            return None;
        }
        self.fast_path_frame(buf, b1, usize::from(len7), 0, text)
    }

    /// Like [`Connection::small_frame`], for a frame with a 16-bit length (e.g. a few hundred bytes of
    /// text): the length is checked against both size limits here. Like the general path, it does not
    /// insist on the length's minimal form.
    #[inline]
    pub(super) fn medium_frame(&self, buf: &[u8]) -> Option<SmallFrame> {
        let [b0, b1, high, low, ..] = *buf else { return None };
        let text = Self::fast_path_opcode(b0)?;
        if b1 & 0x7f != 126 {
            return None;
        }
        let len = usize::from(u16::from_be_bytes([high, low]));
        if len > self.config.max_frame_size || len > self.config.max_message_size {
            return None;
        }
        self.fast_path_frame(buf, b1, len, 2, text)
    }

    /// The first byte of a fast-path frame: FIN set, RSV clear, opcode text (`Some(true)`) or binary.
    #[inline]
    fn fast_path_opcode(b0: u8) -> Option<bool> {
        match b0 {
            0x81 => Some(true),
            0x82 => Some(false),
            _ => None,
        }
    }

    /// The rest of the fast path's checks, for a payload of `len` bytes after `ext` extended-length bytes.
    #[inline]
    fn fast_path_frame(&self, buf: &[u8], b1: u8, len: usize, ext: usize, text: bool) -> Option<SmallFrame> {
        let masked = b1 & 0x80 != 0;
        let header_len = 2 + ext + if masked { 4 } else { 0 };
        // (The peer's close frame moves the close state off `Open`, so `close_received` needs no check.)
        if masked != (self.role == Role::Server)
            || buf.len() < header_len + len
            || self.close != CloseState::Open
            || self.current.is_some()
            || self.message.is_some()
        {
            return None;
        }
        let mask = if masked {
            let key: [u8; 4] = buf.get(2 + ext..6 + ext)?.try_into().ok()?;
            Some(key)
        } else {
            None
        };
        Some(SmallFrame { header_len, len, mask, text })
    }

    /// Delivers the frame [`Connection::small_frame`] recognised: unmasked in place, text validated.
    /// Always inlined: with two callers the compiler would otherwise keep it out of line (+33
    /// instructions per echoed message in scenario (i)).
    #[inline(always)]
    fn read_small_frame<'a>(
        &mut self,
        buf: &'a mut [u8],
        frame: SmallFrame,
        out: &mut Vec<u8>,
    ) -> Result<(usize, Option<Event<'a>>), ProtocolError> {
        let end = frame.header_len + frame.len;
        let payload = &mut buf[frame.header_len..end];
        if let Some(key) = frame.mask {
            apply_mask(payload, key, 0);
        }
        let payload: &'a [u8] = payload;
        if !frame.text {
            return Ok((end, Some(Event::Binary(Cow::Borrowed(payload)))));
        }
        match utf8::validate(payload) {
            Ok(text) => Ok((end, Some(Event::Text(Cow::Borrowed(text))))),
            Err(_) => {
                self.fail(ProtocolError::InvalidUtf8Text, out);
                Err(ProtocolError::InvalidUtf8Text)
            }
        }
    }

    /// [`Connection::read`] for any input: every frame kind, partial frames, fragments, extensions. Out
    /// of line, so that `read` itself stays small for the fast path.
    #[inline(never)]
    pub(super) fn read_general<'a>(
        &mut self,
        buf: &'a mut [u8],
        out: &mut Vec<u8>,
    ) -> Result<(usize, Option<Event<'a>>), ProtocolError> {
        let (consumed, deliver) = match self.advance(buf, out) {
            Ok(step) => step,
            Err(err) => {
                self.fail(err, out);
                return Err(err);
            }
        };
        let buf: &'a [u8] = buf;
        let event = match deliver {
            Deliver::None => None,
            Deliver::Text(range) => match utf8::validate(&buf[range]) {
                Ok(text) => Some(Event::Text(Cow::Borrowed(text))),
                Err(_) => {
                    self.fail(ProtocolError::InvalidUtf8Text, out);
                    return Err(ProtocolError::InvalidUtf8Text);
                }
            },
            Deliver::Binary(range) => Some(Event::Binary(Cow::Borrowed(&buf[range]))),
            Deliver::OwnedText(bytes) => match String::from_utf8(bytes) {
                Ok(text) => Some(Event::Text(Cow::Owned(text))),
                Err(_) => {
                    self.fail(ProtocolError::InvalidUtf8Text, out);
                    return Err(ProtocolError::InvalidUtf8Text);
                }
            },
            Deliver::OwnedBinary(bytes) => Some(Event::Binary(Cow::Owned(bytes))),
            Deliver::Ping(range) => Some(Event::Ping(&buf[range])),
            Deliver::Pong(range) => Some(Event::Pong(&buf[range])),
            // Validated in `control_frame`, so it parses again.
            Deliver::Close(range) => Some(Event::Close(parse_close_payload(&buf[range]).ok().flatten())),
        };
        Ok((consumed, event))
    }

    /// Walks frames, unmasking and validating in place, until something is to be delivered.
    fn advance(&mut self, buf: &mut [u8], out: &mut Vec<u8>) -> Result<(usize, Deliver), ProtocolError> {
        let mut pos = 0;
        loop {
            if self.close_received || matches!(self.close, CloseState::Failed | CloseState::TimedOut) {
                return Ok((buf.len(), Deliver::None));
            }
            let frame = match self.current {
                Some(frame) => frame,
                None => match self.begin_frame(&buf[pos..])? {
                    Some(frame) => frame,
                    None => return Ok((pos, Deliver::None)),
                },
            };
            let is_control = frame.opcode.is_control();
            let payload_start = pos + usize::from(frame.header_len);
            let available = buf.len() - pos;
            if available < usize::from(frame.header_len) + frame.payload_len {
                // Incomplete: unmask and check what we have of a data frame now, to fail fast.
                let have = available - usize::from(frame.header_len);
                if !is_control && have > frame.processed {
                    let validate = self.message.is_some_and(|m| m.text && m.extension.is_none());
                    let part = &mut buf[payload_start + frame.processed..payload_start + have];
                    self.process_data(part, frame.processed, self.mask_of(&frame), validate)?;
                    if let Some(current) = self.current.as_mut() {
                        current.processed = have;
                    }
                }
                return Ok((pos, Deliver::None));
            }
            self.current = None;
            pos = payload_start + frame.payload_len;
            let range = payload_start..pos;
            if is_control {
                if let Some(key) = self.mask_of(&frame) {
                    apply_mask(&mut buf[range.clone()], key, 0);
                }
                let deliver = self.control_frame(frame.opcode, &buf[range.clone()], range, out)?;
                return Ok((pos, deliver));
            }
            // A text or binary frame opened a message in `check_header`: only a continuation gets here.
            let Some(message) = self.message else {
                return Err(ProtocolError::ContinuationWithoutMessage);
            };
            let whole_in_one_frame = frame.fin && !message.fragmented && frame.processed == 0;
            if frame.payload_len > frame.processed {
                // A text message that arrived whole in one frame is validated once, at delivery.
                let validate = message.text && message.extension.is_none() && !whole_in_one_frame;
                let part = &mut buf[payload_start + frame.processed..range.end];
                self.process_data(part, frame.processed, self.mask_of(&frame), validate)?;
            }
            if let Some(deliver) = self.finish_data_frame(frame.fin, &buf[range.clone()], range)? {
                return Ok((pos, deliver));
            }
        }
    }

    /// The key `frame` is masked with: client frames (read by a server) are masked, server frames not.
    #[inline]
    fn mask_of(&self, frame: &CurrentFrame) -> Option<[u8; 4]> {
        (self.role == Role::Server).then_some(frame.key)
    }

    /// Parses and checks the next frame header; `None` when it is incomplete.
    fn begin_frame(&mut self, bytes: &[u8]) -> Result<Option<CurrentFrame>, ProtocolError> {
        let (header, header_len) = match FrameHeader::parse(bytes) {
            Ok(HeaderParse::Complete { header, header_len }) => (header, header_len),
            Ok(HeaderParse::Incomplete { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        self.check_header(&header)?;
        let frame = CurrentFrame {
            key: header.mask.unwrap_or_default(),
            opcode: header.opcode,
            fin: header.fin,
            // At most 14.
            header_len: header_len as u8,
            // check_header bounded it by max_frame_size (or 125 for control frames).
            payload_len: header.payload_len as usize,
            processed: 0,
        };
        self.current = Some(frame);
        Ok(Some(frame))
    }

    /// Applies every per-frame rule and opens or extends the current message.
    fn check_header(&mut self, header: &FrameHeader) -> Result<(), ProtocolError> {
        let opcode = header.opcode;
        if opcode.is_reserved() {
            return Err(ProtocolError::ReservedOpcode { opcode: opcode.as_u8() });
        }
        match (self.role, header.mask.is_some()) {
            (Role::Server, false) => return Err(ProtocolError::UnmaskedClientFrame),
            (Role::Client, true) => return Err(ProtocolError::MaskedServerFrame),
            _ => {}
        }
        if opcode.is_control() {
            if header.rsv != 0 {
                return Err(ProtocolError::ReservedBitsOnControlFrame { rsv: header.rsv });
            }
            if !header.fin {
                return Err(ProtocolError::FragmentedControlFrame);
            }
            if header.payload_len > 125 {
                return Err(ProtocolError::ControlFrameTooLong { len: header.payload_len });
            }
            return Ok(());
        }
        if header.payload_len > self.config.max_frame_size as u64 {
            return Err(ProtocolError::FrameTooLarge {
                limit: self.config.max_frame_size as u64,
                len: header.payload_len,
            });
        }
        let message_too_large =
            |len: usize| ProtocolError::MessageTooLarge { limit: self.config.max_message_size as u64, len: len as u64 };
        let len = header.payload_len as usize;
        match opcode {
            OpCode::Continuation => {
                let Some(message) = self.message.as_mut() else {
                    return Err(ProtocolError::ContinuationWithoutMessage);
                };
                if header.rsv != 0 {
                    return Err(ProtocolError::ReservedBitsOnContinuation { rsv: header.rsv });
                }
                message.len = message.len.saturating_add(len);
                if message.len > self.config.max_message_size {
                    return Err(message_too_large(message.len));
                }
            }
            _ => {
                if self.message.is_some() {
                    return Err(ProtocolError::NewMessageInsideFragmented);
                }
                if header.rsv & !self.allowed_rsv != 0 {
                    return Err(ProtocolError::ReservedBitsNotNegotiated {
                        rsv: header.rsv,
                        negotiated: self.allowed_rsv,
                    });
                }
                if len > self.config.max_message_size {
                    return Err(message_too_large(len));
                }
                let extension = if header.rsv == 0 {
                    None
                } else if self.deflate.is_some() && header.rsv & crate::proto::frame::RSV1 != 0 {
                    Some(INLINE_DEFLATE)
                } else {
                    self.extensions
                        .as_ref()
                        .and_then(|all| all.iter().position(|e| e.rsv_bits() & header.rsv != 0))
                        .map(|i| i as u8)
                };
                let text = opcode == OpCode::Text;
                self.message =
                    Some(OpenMessage { text, extension, fragmented: false, len, utf8: Utf8Validator::new() });
            }
        }
        Ok(())
    }

    /// Unmasks part of a data frame's payload and, for uncompressed text, validates it.
    fn process_data(
        &mut self,
        part: &mut [u8],
        offset: usize,
        mask: Option<[u8; 4]>,
        validate: bool,
    ) -> Result<(), ProtocolError> {
        if let Some(key) = mask {
            apply_mask(part, key, offset);
        }
        if validate {
            // `validate` is only set while a text message is open.
            if let Some(message) = self.message.as_mut() {
                message.utf8.feed(part).map_err(|_| ProtocolError::InvalidUtf8Text)?;
            }
        }
        Ok(())
    }

    /// Handles a fully received (and unmasked) data frame: delivers the message when it is complete.
    fn finish_data_frame(
        &mut self,
        fin: bool,
        payload: &[u8],
        range: Range<usize>,
    ) -> Result<Option<Deliver>, ProtocolError> {
        let Some(message) = self.message.as_mut() else {
            // Unreachable: `advance` checked that a message is open.
            return Err(ProtocolError::ContinuationWithoutMessage);
        };
        if !fin {
            message.fragmented = true;
            self.assembly.get_or_insert_with(Default::default).extend_from_slice(payload);
            return Ok(None);
        }
        let mut message = *message;
        self.message = None;
        let text = message.text;
        if message.extension.is_none() && message.text && (message.fragmented || message.utf8.is_mid_code_point()) {
            message.utf8.finish().map_err(|_| ProtocolError::InvalidUtf8Text)?;
        }
        let whole = if message.fragmented {
            let mut whole = self.assembly.take().map_or_else(Vec::new, |b| *b);
            whole.extend_from_slice(payload);
            Some(whole)
        } else {
            None
        };
        if let Some(index) = message.extension {
            let input: &[u8] = whole.as_deref().unwrap_or(payload);
            return self.decode_with_extension(index, input, text).map(Some);
        }
        Ok(Some(match (whole, text) {
            (Some(bytes), true) => Deliver::OwnedText(bytes),
            (Some(bytes), false) => Deliver::OwnedBinary(bytes),
            (None, true) => Deliver::Text(range),
            (None, false) => Deliver::Binary(range),
        }))
    }

    /// Decodes a whole message with the extension that claimed its first frame (off the hot path: a
    /// connection without extensions never comes here).
    #[cold]
    #[inline(never)]
    fn decode_with_extension(&mut self, index: u8, input: &[u8], text: bool) -> Result<Deliver, ProtocolError> {
        let mut decoded = Vec::new();
        let max = self.config.max_message_size;
        if let (INLINE_DEFLATE, Some(deflate)) = (index, self.deflate) {
            deflate.decode_message(input, max, text, &mut decoded)?;
            return Ok(if text { Deliver::OwnedText(decoded) } else { Deliver::OwnedBinary(decoded) });
        }
        let Some(extension) = self.extensions.as_mut().and_then(|all| all.get_mut(usize::from(index))) else {
            // Unreachable: `check_header` names an extension only when one claims the frame's bits. The
            // bits themselves are not kept past the header.
            return Err(ProtocolError::ReservedBitsNotNegotiated { rsv: 0, negotiated: self.allowed_rsv });
        };
        let rsv = extension.rsv_bits();
        if text {
            extension.decode_text_message(rsv, input, max, &mut decoded)?;
        } else {
            extension.decode_message(rsv, input, max, &mut decoded)?;
        }
        if decoded.len() > self.config.max_message_size {
            return Err(ProtocolError::DecodedMessageTooLarge { limit: self.config.max_message_size as u64 });
        }
        Ok(if text { Deliver::OwnedText(decoded) } else { Deliver::OwnedBinary(decoded) })
    }

    /// Handles a complete, unmasked control frame.
    #[inline(never)]
    fn control_frame(
        &mut self,
        opcode: OpCode,
        payload: &[u8],
        range: Range<usize>,
        out: &mut Vec<u8>,
    ) -> Result<Deliver, ProtocolError> {
        match opcode {
            OpCode::Ping => {
                if self.config.auto_pong && self.close == CloseState::Open {
                    self.write_frame(out, OpCode::Pong, true, 0, payload);
                }
                Ok(Deliver::Ping(range))
            }
            OpCode::Pong => Ok(Deliver::Pong(range)),
            OpCode::Close => {
                let parsed = parse_close_payload(payload)?;
                self.close_received = true;
                if self.close == CloseState::Open {
                    // Echo the peer's code (RFC 6455 §5.5.1); a close without a code is answered in kind.
                    let reply = parsed.map(|frame| frame.code.0.to_be_bytes());
                    let reply: &[u8] = reply.as_ref().map_or(&[], |code| code.as_slice());
                    self.write_frame(out, OpCode::Close, true, 0, reply);
                }
                self.close = CloseState::Closed;
                self.clock.closing_done(&mut self.wait);
                Ok(Deliver::Close(range))
            }
            // Unreachable: `check_header` rejected reserved opcodes.
            _ => Err(ProtocolError::ReservedOpcode { opcode: opcode.as_u8() }),
        }
    }

    /// Fails the connection: writes a close frame with the error's code unless one was sent already.
    #[cold]
    #[inline(never)]
    fn fail(&mut self, err: ProtocolError, out: &mut Vec<u8>) {
        if self.close == CloseState::Open {
            self.write_close(out, err.close_code(), err.reason());
        }
        if self.close != CloseState::TimedOut {
            self.close = CloseState::Failed;
        }
        self.clock.closing_done(&mut self.wait);
        self.current = None;
        self.message = None;
        self.assembly = None;
    }
}
