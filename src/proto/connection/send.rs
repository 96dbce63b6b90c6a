//! Frames out: messages (through an extension when one was negotiated), control frames, the close
//! handshake's first frame, and each client frame's mask.

use super::*;

impl Connection {
    pub(super) fn write_close(&mut self, out: &mut Vec<u8>, code: CloseCode, reason: &str) {
        let reason = truncate_reason(reason);
        let mut payload = [0u8; 125];
        payload[..2].copy_from_slice(&code.0.to_be_bytes());
        payload[2..2 + reason.len()].copy_from_slice(reason.as_bytes());
        self.write_frame(out, OpCode::Close, true, 0, &payload[..2 + reason.len()]);
    }

    #[inline]
    pub(super) fn write_frame(&mut self, out: &mut Vec<u8>, opcode: OpCode, fin: bool, rsv: u8, payload: &[u8]) {
        let mask = match self.role {
            Role::Server => None,
            Role::Client => Some(self.next_mask_key()),
        };
        encode_frame(out, opcode, fin, rsv, mask, payload);
    }

    /// A client frame's masking key (out of line: a server, the common sender, never needs one).
    #[inline(never)]
    fn next_mask_key(&self) -> [u8; 4] {
        match &self.config.mask_source {
            Some(source) => source.next_key(),
            None => rand::random::<[u8; 4]>(),
        }
    }

    /// Appends a text message as one frame to `out` (through the negotiated extension, if any).
    #[inline]
    pub fn send_text(&mut self, text: &str, out: &mut Vec<u8>) -> Result<(), SendError> {
        self.send_message(OpCode::Text, text.as_bytes(), out)
    }

    /// Appends a binary message as one frame to `out` (through the negotiated extension, if any).
    #[inline]
    pub fn send_binary(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), SendError> {
        self.send_message(OpCode::Binary, data, out)
    }

    /// Appends a text or binary message (`opcode` says which; the caller has checked that a text
    /// payload is UTF-8) as one frame to `out`, through the negotiated extension, if any. Always inlined
    /// (into `Ctx`'s send path, where the opcode is a constant): left to itself the compiler sometimes
    /// keeps it out of line, +25 instructions per echoed message in scenario (i).
    #[inline(always)]
    pub(crate) fn send_data(&mut self, opcode: OpCode, payload: &[u8], out: &mut Vec<u8>) -> Result<(), SendError> {
        self.send_message(opcode, payload, out)
    }

    #[inline(always)]
    fn send_message(&mut self, opcode: OpCode, payload: &[u8], out: &mut Vec<u8>) -> Result<(), SendError> {
        if !self.can_send() {
            return Err(SendError::Closed);
        }
        if self.extensions.is_some() || self.deflate.is_some() {
            return self.send_with_extension(opcode, payload, out);
        }
        self.write_frame(out, opcode, true, 0, payload);
        Ok(())
    }

    /// [`Connection::send_message`] on a connection with extensions (out of line: the frame path of a
    /// connection without any carries none of this).
    #[inline(never)]
    fn send_with_extension(&mut self, opcode: OpCode, payload: &[u8], out: &mut Vec<u8>) -> Result<(), SendError> {
        if let Some(deflate) = self.deflate {
            let mut encoded = Vec::new();
            if let Some(rsv) = deflate.encode_message(payload, &mut encoded).map_err(SendError::Extension)? {
                self.write_frame(out, opcode, true, rsv, &encoded);
                return Ok(());
            }
        } else if let Some(extension) = self.extensions.as_mut().and_then(|all| all.first_mut()) {
            let mut encoded = Vec::new();
            if let Some(rsv) = extension.encode_message(opcode, payload, &mut encoded).map_err(SendError::Extension)? {
                self.write_frame(out, opcode, true, rsv, &encoded);
                return Ok(());
            }
        }
        self.write_frame(out, opcode, true, 0, payload);
        Ok(())
    }

    /// Like [`Connection::send_text`] / [`Connection::send_binary`] (`opcode` is `Text` or `Binary`), but
    /// for a caller that wants to write a large payload itself without copying it (e.g. with `writev`):
    /// appends only the frame header to `out` and returns `Ok(true)`; the caller must then write
    /// `payload`, unchanged, right after `out`. Returns `Ok(false)` when the frame cannot be split that way
    /// (client role: the payload must be masked; or an extension transforms it): the whole frame was
    /// appended to `out` as usual.
    pub fn send_message_split(&mut self, opcode: OpCode, payload: &[u8], out: &mut Vec<u8>) -> Result<bool, SendError> {
        if !self.can_send() {
            return Err(SendError::Closed);
        }
        if opcode.is_control() || opcode.is_reserved() || opcode == OpCode::Continuation {
            return Err(SendError::NotDataOpcode(opcode));
        }
        if self.role == Role::Client || self.has_extensions() {
            self.send_message(opcode, payload, out)?;
            return Ok(false);
        }
        let header = FrameHeader { fin: true, rsv: 0, opcode, mask: None, payload_len: payload.len() as u64 };
        header.encode(out);
        Ok(true)
    }

    /// Appends one raw data frame to `out`, for callers that fragment messages themselves: `opcode` is
    /// `Text` or `Binary` on the first frame and `Continuation` after it; `fin` on the last. Extensions are
    /// not applied.
    pub fn send_frame(
        &mut self,
        opcode: OpCode,
        fin: bool,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), SendError> {
        if !self.can_send() {
            return Err(SendError::Closed);
        }
        if opcode.is_control() || opcode.is_reserved() {
            return Err(SendError::NotDataOpcode(opcode));
        }
        self.write_frame(out, opcode, fin, 0, payload);
        Ok(())
    }

    /// Appends a ping (payload at most 125 bytes) to `out`.
    pub fn send_ping(&mut self, payload: &[u8], out: &mut Vec<u8>) -> Result<(), SendError> {
        self.send_control(OpCode::Ping, payload, out)
    }

    /// Appends a pong (payload at most 125 bytes) to `out`; useful when auto-pong is off.
    pub fn send_pong(&mut self, payload: &[u8], out: &mut Vec<u8>) -> Result<(), SendError> {
        self.send_control(OpCode::Pong, payload, out)
    }

    pub(super) fn send_control(&mut self, opcode: OpCode, payload: &[u8], out: &mut Vec<u8>) -> Result<(), SendError> {
        if !self.can_send() {
            return Err(SendError::Closed);
        }
        if payload.len() > 125 {
            return Err(SendError::ControlTooLong);
        }
        self.write_frame(out, opcode, true, 0, payload);
        Ok(())
    }

    /// Starts the close handshake at `now`: appends a close frame with `code` and `reason` (cut to 123
    /// bytes on a character boundary) to `out`. Afterwards nothing more may be sent; keep reading until
    /// [`Connection::transport_may_close`]. The peer's answer is due within `close_timeout`
    /// ([`Timeout::Close`]); ask [`Connection::poll_timeout`] again.
    pub fn close(&mut self, now: Instant, code: CloseCode, reason: &str, out: &mut Vec<u8>) -> Result<(), SendError> {
        if !self.can_send() {
            return Err(SendError::Closed);
        }
        if !code.is_allowed_on_wire() {
            return Err(SendError::InvalidCloseCode(code));
        }
        self.write_close(out, code, reason);
        self.close = CloseState::CloseSent;
        self.clock.begin(&mut self.wait, Wait::CloseReply, now);
        Ok(())
    }
}
