#!/usr/bin/env python3
"""Writes the hand-made part of the fuzz seed corpus: fuzz/seeds/{frame,handshake,connection}/.

    python3 scripts/gen-fuzz-seeds.py

Each seed is a small file with a descriptive name. The script only (over)writes its own files; inputs a
fuzzing run added (named by their SHA-1, see fuzz/README.md) are left alone. The output is deterministic,
so rerunning it on an unchanged script changes nothing in git.

Input layouts follow the checks in fuzz/checks/:
- frame: any bytes (a frame header, masking key + offset + payload, a close payload and UTF-8 at once);
- handshake: any bytes (an HTTP request or response head);
- connection: one settings byte (bits 0-3 chunk size - 1, bit 4 close first, bit 5 auto pong off,
  bit 6 tiny limits), then the bytes the peer sent.
"""

import os
import struct
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
SEEDS = os.path.join(ROOT, "fuzz", "seeds")

CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
KEY = bytes([0x37, 0xFA, 0x21, 0x3D])  # RFC 6455 §5.7
KEY2 = bytes([0x01, 0x02, 0x03, 0x04])


def header(opcode, length, fin=True, rsv=0, key=None, form=None):
    """A frame header; `form` forces the length encoding: 7, 16 or 64 (default: minimal)."""
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    mask_bit = 0x80 if key is not None else 0
    if form is None:
        form = 7 if length < 126 else 16 if length < 0x10000 else 64
    if form == 7:
        out = bytes([b0, mask_bit | length])
    elif form == 16:
        out = bytes([b0, mask_bit | 126]) + struct.pack(">H", length)
    else:
        out = bytes([b0, mask_bit | 127]) + struct.pack(">Q", length)
    return out + (key if key is not None else b"")


def mask(payload, key, offset=0):
    return bytes(b ^ key[(i + offset) % 4] for i, b in enumerate(payload))


def frame(opcode, payload=b"", fin=True, rsv=0, key=None, form=None):
    body = mask(payload, key) if key is not None else payload
    return header(opcode, len(payload), fin, rsv, key, form) + body


def close_payload(code=None, reason=b""):
    return b"" if code is None else struct.pack(">H", code) + reason


def write(target, name, data):
    d = os.path.join(SEEDS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# --------------------------------------------------------------------------------------------------
# frame: headers of every opcode and length form, masked and not; truncated and invalid headers;
# masking inputs; close payloads; UTF-8.


def frame_seeds():
    s = {}
    for name, op in [("cont", CONT), ("text", TEXT), ("binary", BINARY), ("close", CLOSE), ("ping", PING),
                     ("pong", PONG), ("reserved-data-3", 0x3), ("reserved-control-b", 0xB), ("opcode-f", 0xF)]:
        s[f"hdr-{name}-unmasked"] = frame(op, b"hi")
        s[f"hdr-{name}-masked"] = frame(op, b"hi", key=KEY)
    s["hdr-text-nofin"] = frame(TEXT, b"Hel", fin=False)
    s["hdr-rsv1-text"] = frame(TEXT, b"x", rsv=4)
    s["hdr-rsv-all-binary-masked"] = frame(BINARY, b"xy", rsv=7, key=KEY)
    s["hdr-len-125"] = header(BINARY, 125)
    s["hdr-len16-126"] = header(BINARY, 126)
    s["hdr-len16-65535-masked"] = header(BINARY, 0xFFFF, key=KEY)
    s["hdr-len64-65536"] = header(BINARY, 0x10000)
    s["hdr-len64-max-masked"] = header(BINARY, (1 << 63) - 1, key=KEY)
    s["hdr-len64-top-bit"] = header(BINARY, 1 << 63)
    s["hdr-len16-nonminimal-5"] = header(TEXT, 5, form=16)
    s["hdr-len64-nonminimal-300"] = header(TEXT, 300, form=64, key=KEY)
    s["hdr-len64-nonminimal-0"] = header(TEXT, 0, form=64)
    s["hdr-len16-nonminimal-125"] = header(BINARY, 125, form=16)
    s["hdr-len64-nonminimal-65535"] = header(BINARY, 0xFFFF, form=64)
    s["hdr-truncated-1"] = b"\x81"
    s["hdr-truncated-len16"] = header(BINARY, 200)[:3]
    s["hdr-truncated-len64"] = header(BINARY, 0x10000)[:6]
    s["hdr-truncated-mask"] = header(TEXT, 3, key=KEY)[:4]
    s["hdr-empty-payload-masked"] = header(PING, 0, key=KEY)
    s["rfc-single-frame-text-hello"] = bytes.fromhex("810548656c6c6f")
    s["rfc-masked-text-hello"] = bytes.fromhex("818537fa213d7f9f4d5158")
    s["rfc-unmasked-ping-hello"] = bytes.fromhex("890548656c6c6f")
    s["rfc-256-binary-header"] = bytes.fromhex("827e0100")
    s["rfc-64k-binary-header"] = bytes.fromhex("827f0000000000010000")
    # Masking: key, offset byte, payload (also 8-byte-word boundaries).
    s["mask-offset-0-17-bytes"] = KEY + b"\x00" + bytes(range(17))
    s["mask-offset-3-31-bytes"] = KEY2 + b"\x03" + bytes(range(100, 131))
    s["mask-offset-255"] = b"\xff\xfe\xfd\xfc\xff" + b"abcdefghij"
    # Close payloads (the whole input as a payload).
    s["close-1000"] = close_payload(1000)
    s["close-1000-reason"] = close_payload(1000, b"bye")
    s["close-1001-utf8-reason"] = close_payload(1001, "adiós €".encode())
    s["close-1005-not-on-wire"] = close_payload(1005)
    s["close-999"] = close_payload(999)
    s["close-1016"] = close_payload(1016)
    for code in (1003, 1004, 1006, 1007, 1014, 1015):
        s[f"close-{code}"] = close_payload(code)
    s["close-2999"] = close_payload(2999)
    s["close-3000"] = close_payload(3000)
    s["close-4999"] = close_payload(4999)
    s["close-5000"] = close_payload(5000)
    s["close-1000-invalid-utf8"] = close_payload(1000, b"\xff\xfe")
    s["close-1-byte"] = b"\x03"
    # UTF-8 (the first two bytes also pick the split point).
    s["utf8-ascii"] = b"Hello, world"
    s["utf8-multibyte"] = "héllo wörld € 𝄞 κόσμε".encode()
    s["utf8-4byte-split"] = b"\x02\x00" + "😀😀".encode()
    s["utf8-truncated-4byte"] = b"ab\xf0\x9f\x98"
    s["utf8-surrogate"] = b"ab\xed\xa0\x80cd"
    s["utf8-overlong"] = b"ab\xc0\xafcd"
    s["utf8-overlong-3byte"] = b"ab\xe0\x80\xafcd"
    s["utf8-above-max"] = b"ab\xf4\x90\x80\x80"
    s["utf8-max"] = b"ab\xf4\x8f\xbf\xbf"
    s["utf8-lone-continuation"] = b"ab\x80cd"
    s["utf8-ff"] = b"ab\xffcd"
    s["utf8-long-text"] = ("κόσμε " * 12).encode()
    return s


# --------------------------------------------------------------------------------------------------
# handshake: requests and responses, valid and each way they can be refused.

SAMPLE_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
SAMPLE_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def request(lines=None, first="GET /chat HTTP/1.1", drop=(), extra=(), end="\r\n\r\n", sep="\r\n"):
    base = [("Host", "server.example.com"), ("Upgrade", "websocket"), ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", SAMPLE_KEY), ("Sec-WebSocket-Version", "13")]
    if lines is None:
        lines = [f"{k}: {v}" for k, v in base if k not in drop] + list(extra)
    return (first + sep + sep.join(lines) + end.replace("\r\n", sep)).encode("latin-1")


def response(first="HTTP/1.1 101 Switching Protocols", drop=(), extra=(), accept=SAMPLE_ACCEPT):
    base = [("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Accept", accept)]
    lines = [f"{k}: {v}" for k, v in base if k not in drop] + list(extra)
    return (first + "\r\n" + "\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def handshake_seeds():
    s = {}
    s["req-rfc-sample"] = request(extra=["Origin: http://example.com",
                                         "Sec-WebSocket-Protocol: chat, superchat"])
    s["req-minimal"] = request()
    s["req-query"] = request(first="GET /chat?room=1&x=%20 HTTP/1.1")
    s["req-absolute-form"] = request(first="GET ws://server.example.com/chat?x HTTP/1.1")
    s["req-absolute-form-no-path"] = request(first="GET http://server.example.com HTTP/1.1")
    s["req-extensions"] = request(extra=["Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits, "
                                         "x-webkit-deflate-frame",
                                         'Sec-WebSocket-Extensions: foo; bar="baz"'])
    s["req-two-protocol-lines"] = request(extra=["Sec-WebSocket-Protocol: chat", "Sec-WebSocket-Protocol: v2.x"])
    s["req-case-and-lists"] = request(lines=["host: h", "UPGRADE: h2c, WebSocket", "connection: keep-alive, upgrade",
                                             "sec-websocket-key: AQIDBAUGBwgJCgsMDQ4PEA==",
                                             "SEC-WEBSOCKET-VERSION: 13"])
    s["req-lf-only"] = request(sep="\n")
    s["req-with-frame-after"] = request() + frame(TEXT, b"Hello", key=KEY)
    s["req-incomplete"] = request()[:-2]
    s["req-incomplete-line"] = b"GET /chat HTTP/1.1\r\nHost: serv"
    s["req-post"] = request(first="POST /chat HTTP/1.1")
    s["req-http10"] = request(first="GET /chat HTTP/1.0")
    s["req-http2-preface"] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    s["req-tls-client-hello"] = bytes.fromhex("160301020001000200030300") + bytes(range(32))
    s["req-target-star"] = request(first="GET * HTTP/1.1")
    s["req-target-bad-scheme"] = request(first="GET 1ws://h/ HTTP/1.1")
    s["req-not-upgrade"] = request(drop=("Upgrade", "Connection"))
    s["req-upgrade-h2c"] = request(drop=("Upgrade",), extra=["Upgrade: h2c"])
    s["req-missing-host"] = request(drop=("Host",))
    s["req-duplicate-host"] = request(extra=["Host: other.example.com"])
    s["req-connection-keep-alive"] = request(drop=("Connection",), extra=["Connection: keep-alive"])
    s["req-missing-key"] = request(drop=("Sec-WebSocket-Key",))
    s["req-key-15-bytes"] = request(drop=("Sec-WebSocket-Key",), extra=["Sec-WebSocket-Key: AQIDBAUGBwgJCgsMDQ4P"])
    s["req-key-not-base64"] = request(drop=("Sec-WebSocket-Key",), extra=["Sec-WebSocket-Key: not base64!!"])
    s["req-duplicate-key"] = request(extra=[f"Sec-WebSocket-Key: {SAMPLE_KEY}"])
    s["req-version-8"] = request(drop=("Sec-WebSocket-Version",), extra=["Sec-WebSocket-Version: 8"])
    s["req-version-missing"] = request(drop=("Sec-WebSocket-Version",))
    s["req-version-not-utf8"] = request(drop=("Sec-WebSocket-Version",), extra=["Sec-WebSocket-Version: 1\xff"])
    s["req-content-length"] = request(extra=["Content-Length: 5"]) + b"hello"
    s["req-content-length-0"] = request(extra=["Content-Length: 0"])
    s["req-transfer-encoding"] = request(extra=["Transfer-Encoding: chunked"])
    s["req-bad-protocols"] = request(extra=["Sec-WebSocket-Protocol: chat,,super chat"])
    s["req-bad-extensions"] = request(extra=["Sec-WebSocket-Extensions: permessage-deflate; =x"])
    s["req-bad-extension-quote"] = request(extra=['Sec-WebSocket-Extensions: foo; bar="unterminated'])
    s["req-origin-not-utf8"] = request(extra=["Origin: http://\xe9.example"])
    s["req-duplicate-origin"] = request(extra=["Origin: http://a", "Origin: http://b"])
    s["req-bad-header-name"] = request(extra=["Bad Name: x"])
    s["req-header-ctl-value"] = request(extra=["X-Ctl: a\x01b"])
    s["req-bare-cr"] = b"GET / HTTP/1.1\rHost: h\r\n\r\n"
    s["req-65-headers"] = request(extra=[f"X-H{i}: {i}" for i in range(60)])
    s["req-head-too-large"] = request(extra=["X-Pad: " + "a" * 8200])
    s["req-empty-line"] = b"\r\n\r\n"
    s["res-rfc-sample"] = response(extra=["Sec-WebSocket-Protocol: chat"])
    s["res-minimal"] = response()
    s["res-deflate"] = response(extra=["Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover"])
    s["res-with-frame-after"] = response() + frame(TEXT, b"Hello")
    s["res-unoffered-protocol"] = response(extra=["Sec-WebSocket-Protocol: superchat"])
    s["res-two-protocols"] = response(extra=["Sec-WebSocket-Protocol: chat, chat"])
    s["res-unoffered-extension"] = response(extra=["Sec-WebSocket-Extensions: x-foo"])
    s["res-wrong-accept"] = response(accept="AAAAAAAAAAAAAAAAAAAAAAAAAAA=")
    s["res-missing-accept"] = response(drop=("Sec-WebSocket-Accept",))
    s["res-duplicate-accept"] = response(extra=[f"Sec-WebSocket-Accept: {SAMPLE_ACCEPT}"])
    s["res-missing-upgrade"] = response(drop=("Upgrade",))
    s["res-missing-connection"] = response(drop=("Connection",))
    s["res-http10"] = response(first="HTTP/1.0 101 Switching Protocols")
    s["res-200"] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    s["res-404-body"] = b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 9\r\n\r\nnot found"
    s["res-no-reason"] = response(first="HTTP/1.1 101")
    s["res-bad-status"] = response(first="HTTP/1.1 1x1 Switching Protocols")
    s["res-incomplete"] = response()[:-3]
    return s


# --------------------------------------------------------------------------------------------------
# connection: streams for the server role (masked) and the client role (unmasked); the first byte
# holds the settings.

CHUNK1, CHUNK3, CHUNK7, CHUNK16 = 0x00, 0x02, 0x06, 0x0F
CLOSE_FIRST, NO_AUTO_PONG, TINY = 0x10, 0x20, 0x40


def conn_seeds():
    s = {}

    def both(name, settings, frames):
        """The same frames as a client would send them (masked) and as a server would (unmasked)."""
        s[f"server-{name}"] = bytes([settings]) + b"".join(frame(*f[:2], **{**f[2], "key": KEY}) for f in frames)
        s[f"client-{name}"] = bytes([settings]) + b"".join(frame(*f[:2], **f[2]) for f in frames)

    def f(op, payload=b"", **kw):
        return (op, payload, kw)

    both("text-hello", CHUNK3, [f(TEXT, b"Hello")])
    both("text-empty", CHUNK1, [f(TEXT)])
    both("binary-empty-then-text", CHUNK7, [f(BINARY), f(TEXT, b"x")])
    both("text-utf8", CHUNK1, [f(TEXT, "κόσμε 😀".encode())])
    both("binary-len16-200", CHUNK16, [f(BINARY, bytes(range(200)))])
    both("binary-len16-nonminimal", CHUNK3, [f(BINARY, b"abc", form=16)])
    both("binary-len64-nonminimal", CHUNK7, [f(BINARY, b"abc", form=64)])
    both("fragmented-text-3", CHUNK3, [f(TEXT, b"Hel", fin=False), f(CONT, b"lo, ", fin=False), f(CONT, b"world")])
    both("fragmented-binary-empty-parts", CHUNK1, [f(BINARY, fin=False), f(CONT, fin=False), f(CONT, b"\x00")])
    both("fragmented-with-ping-pong", CHUNK3,
         [f(TEXT, b"Hel", fin=False), f(PING, b"p1"), f(CONT, b"lo", fin=False), f(PONG, b"q"), f(CONT, b"!")])
    both("fragmented-with-close", CHUNK7, [f(TEXT, b"Hel", fin=False), f(CLOSE, close_payload(1000)), f(CONT, b"lo")])
    both("utf8-split-across-fragments", CHUNK1,
         [f(TEXT, b"a\xf0\x9f", fin=False), f(CONT, b"\x98", fin=False), f(CONT, b"\x80b")])
    both("utf8-invalid-across-fragments", CHUNK1, [f(TEXT, b"a\xf0\x9f", fin=False), f(CONT, b"\x41")])
    both("utf8-truncated-at-end", CHUNK3, [f(TEXT, b"ab\xe2\x82", fin=False), f(CONT, b"")])
    both("utf8-invalid-single-frame", CHUNK16, [f(TEXT, b"ok \xed\xa0\x80 no")])
    s["server-utf8-invalid-incomplete-frame"] = bytes([CHUNK1]) + header(TEXT, 50, key=KEY) + mask(b"ab\xff", KEY)
    s["client-utf8-invalid-incomplete-frame"] = bytes([CHUNK1]) + header(TEXT, 50) + b"ab\xff"
    both("ping-then-text", CHUNK7, [f(PING, b"are you there"), f(TEXT, b"yes")])
    both("ping-125", CHUNK16, [f(PING, bytes(125))])
    both("ping-126-too-long", CHUNK16, [f(PING, bytes(126))])
    both("ping-no-auto-pong", NO_AUTO_PONG | CHUNK3, [f(PING, b"x"), f(PONG, b"y")])
    both("ping-fragmented", CHUNK3, [f(PING, b"x", fin=False)])
    both("pong-unsolicited", CHUNK1, [f(PONG, b"hb")])
    both("close-1000-reason", CHUNK3, [f(CLOSE, close_payload(1000, b"bye"))])
    both("close-empty", CHUNK1, [f(CLOSE)])
    both("close-1-byte", CHUNK1, [f(CLOSE, b"\x03")])
    both("close-1005", CHUNK3, [f(CLOSE, close_payload(1005))])
    both("close-999", CHUNK3, [f(CLOSE, close_payload(999))])
    both("close-1016", CHUNK3, [f(CLOSE, close_payload(1016))])
    both("close-1014", CHUNK3, [f(CLOSE, close_payload(1014))])
    both("close-1015", CHUNK3, [f(CLOSE, close_payload(1015))])
    both("close-3000", CHUNK3, [f(CLOSE, close_payload(3000))])
    both("close-4999", CHUNK7, [f(CLOSE, close_payload(4999, b"app"))])
    both("close-5000", CHUNK3, [f(CLOSE, close_payload(5000))])
    both("close-invalid-utf8-reason", CHUNK3, [f(CLOSE, close_payload(1000, b"\xc3\x28"))])
    both("close-then-data-ignored", CHUNK7, [f(CLOSE, close_payload(1001)), f(TEXT, b"late"), f(PING)])
    both("close-after-local-close", CLOSE_FIRST | CHUNK3, [f(PING, b"p"), f(TEXT, b"t"), f(CLOSE, close_payload(1000))])
    both("error-after-local-close", CLOSE_FIRST | CHUNK1, [f(0x3, b"x")])
    both("rsv1-without-extension", CHUNK3, [f(TEXT, b"x", rsv=4)])
    both("rsv-on-control", CHUNK3, [f(PING, b"", rsv=2)])
    both("rsv-on-continuation", CHUNK3, [f(TEXT, b"a", fin=False), f(CONT, b"b", rsv=1)])
    both("reserved-opcode-3", CHUNK1, [f(0x3, b"x")])
    both("reserved-opcode-b", CHUNK1, [f(0xB)])
    both("continuation-without-start", CHUNK3, [f(CONT, b"x")])
    both("text-inside-fragmented", CHUNK3, [f(TEXT, b"a", fin=False), f(TEXT, b"b")])
    both("two-messages", CHUNK7, [f(TEXT, b"one"), f(BINARY, b"two")])
    both("tiny-frame-too-big", TINY | CHUNK16, [f(BINARY, bytes(65))])
    both("tiny-message-too-big", TINY | CHUNK16, [f(TEXT, b"a" * 60, fin=False), f(CONT, b"b" * 60, fin=False),
                                                  f(CONT, b"c" * 60)])
    both("tiny-limits-ok", TINY | CHUNK7, [f(TEXT, b"a" * 64, fin=False), f(CONT, b"b" * 64)])
    # Headers only: lengths past the limits, or payloads that never arrive.
    s["server-len64-over-limit"] = bytes([CHUNK3]) + header(BINARY, 1 << 40, key=KEY)
    s["server-len64-top-bit"] = bytes([CHUNK3]) + header(BINARY, 1 << 63, key=KEY)
    s["server-len64-incomplete"] = bytes([CHUNK7]) + header(BINARY, 70000, key=KEY) + bytes(40)
    s["client-len64-incomplete"] = bytes([CHUNK7]) + header(TEXT, 70000) + b"a" * 40
    s["server-unmasked-frame"] = bytes([CHUNK3]) + frame(TEXT, b"Hello")
    s["client-masked-frame"] = bytes([CHUNK3]) + frame(TEXT, b"Hello", key=KEY)
    s["empty-stream"] = bytes([CHUNK1])
    s["server-zero-mask-key"] = bytes([CHUNK3]) + frame(TEXT, b"Hello", key=bytes(4))
    return s


def main():
    counts = {}
    for target, seeds in [("frame", frame_seeds()), ("handshake", handshake_seeds()), ("connection", conn_seeds())]:
        for name, data in seeds.items():
            write(target, name, data)
        counts[target] = len(seeds)
    print(", ".join(f"{t}: {n} seeds" for t, n in counts.items()), file=sys.stderr)


if __name__ == "__main__":
    main()
