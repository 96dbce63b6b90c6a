#!/usr/bin/env python3
"""Server-agnostic WebSocket probes for scripts/bench-peers.sh (standard library only).

  wsprobe.py check URL [--timeout S]
      One handshake, then one text and one binary message; exits 0 if both come back identical with the same
      opcode, non-zero (with the reason on stderr) otherwise. Used to tell that a server is up and echoing.

  wsprobe.py idle URL --pid PID [-n N] [--window W] [--settle S] [--timeout S]
      Scenario (iv): reads the server's RSS (VmRSS of /proc/PID/status), opens N WebSocket connections
      (handshake only, then idle, W handshakes in flight at a time), waits S seconds, reads the RSS again,
      checks every connection is still open, and prints one JSON object:
        connections, failed, dropped, rss_before_kib, rss_after_kib, bytes_per_connection,
        handshake_seconds, handshakes_per_second, server_cpu_seconds, handshakes_per_server_cpu_second
      (server CPU = utime + stime of /proc/PID/stat over the handshakes). Needs N + ~10 open files; the
      soft limit is raised to the hard one. Before measuring it opens and closes one connection, so that
      lazily allocated server state is not counted per connection (as examples/idle_memory.rs does).
"""

import argparse
import base64
import errno
import hashlib
import json
import os
import resource
import selectors
import socket
import sys
import time
from urllib.parse import urlsplit

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def parse_url(url):
    u = urlsplit(url)
    if u.scheme != "ws" or not u.hostname:
        raise SystemExit(f"wsprobe: need a ws://HOST:PORT[/PATH] URL, got {url!r}")
    return (u.hostname, u.port or 80), (u.path or "/") + (f"?{u.query}" if u.query else "")


def request(host_port, path):
    key = base64.b64encode(os.urandom(16))
    accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
    req = (
        f"GET {path} HTTP/1.1\r\nHost: {host_port[0]}:{host_port[1]}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key.decode()}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    return req, accept


def check_response(head, accept):
    """head: the bytes up to and including the blank line. Returns None if fine, else a reason."""
    lines = head.split(b"\r\n")
    status = lines[0].split(b" ", 2)
    if len(status) < 2 or status[1] != b"101":
        return "status " + lines[0].decode("latin-1")
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"sec-websocket-accept":
            return None if value.strip() == accept else "wrong Sec-WebSocket-Accept"
    return "no Sec-WebSocket-Accept"


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


# ---------------------------------------------------------------------------------------------- check


def frame(opcode, payload):
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = bytes([0x80 | opcode, 0x80 | n])
    elif n < 65536:
        head = bytes([0x80 | opcode, 0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([0x80 | opcode, 0x80 | 127]) + n.to_bytes(8, "big")
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + body


def recv_exact(sock, buf, n):
    while len(buf) < n:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        buf.extend(chunk)
    out = bytes(buf[:n])
    del buf[:n]
    return out


def read_message(sock, buf):
    """Reads one whole (possibly fragmented) data message, skipping pings. Returns (opcode, payload)."""
    opcode, payload = None, bytearray()
    while True:
        b0, b1 = recv_exact(sock, buf, 2)
        op, fin, n = b0 & 0x0F, b0 & 0x80, b1 & 0x7F
        if b1 & 0x80:
            raise ValueError("server frame is masked")
        if n == 126:
            n = int.from_bytes(recv_exact(sock, buf, 2), "big")
        elif n == 127:
            n = int.from_bytes(recv_exact(sock, buf, 8), "big")
        data = recv_exact(sock, buf, n)
        if op == 0x8:
            raise ConnectionError(f"server sent close {data[:2].hex()} {data[2:]!r}")
        if op in (0x9, 0xA):
            continue
        if op != 0:
            opcode = op
        payload.extend(data)
        if fin:
            return opcode, bytes(payload)


def check(url, timeout):
    addr, path = parse_url(url)
    req, accept = request(addr, path)
    with socket.create_connection(addr, timeout=timeout) as s:
        s.sendall(req)
        buf = bytearray()
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(4096)
            if not chunk:
                raise ConnectionError("closed during the handshake")
            buf.extend(chunk)
        end = buf.index(b"\r\n\r\n") + 4
        why = check_response(bytes(buf[:end]), accept)
        if why:
            raise ValueError(f"handshake: {why}")
        del buf[:end]
        for opcode, payload in ((0x1, "echo ✓ text".encode()), (0x2, bytes(range(256)) * 4)):
            s.sendall(frame(opcode, payload))
            got = read_message(s, buf)
            if got != (opcode, payload):
                raise ValueError(f"sent opcode {opcode} ({len(payload)} B), got {got[0]} ({len(got[1])} B)")
        s.sendall(frame(0x8, (1000).to_bytes(2, "big")))


# ----------------------------------------------------------------------------------------------- idle


def open_idle(addr, path, n, window, deadline):
    """Opens n upgraded connections, at most `window` handshakes in flight. Returns (sockets, failures)."""
    sel = selectors.DefaultSelector()
    done, failures = [], []
    started = in_flight = 0
    while len(done) + len(failures) < n:
        while in_flight < window and started < n:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            err = s.connect_ex(addr)
            if err not in (0, errno.EINPROGRESS):
                failures.append(os.strerror(err))
                s.close()
            else:
                req, accept = request(addr, path)
                sel.register(s, selectors.EVENT_WRITE, {"req": req, "accept": accept, "buf": bytearray()})
                in_flight += 1
            started += 1
        if time.monotonic() > deadline:
            for key in list(sel.get_map().values()):
                failures.append("timed out")
                sel.unregister(key.fileobj)
                key.fileobj.close()
            break
        for key, events in sel.select(timeout=1.0):
            s, st = key.fileobj, key.data
            try:
                if events & selectors.EVENT_WRITE:
                    err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        raise OSError(err, os.strerror(err))
                    s.send(st["req"])  # ~200 bytes into an empty socket buffer: sent whole
                    sel.modify(s, selectors.EVENT_READ, st)
                    continue
                chunk = s.recv(4096)
                if not chunk:
                    raise ConnectionError("closed during the handshake")
                st["buf"].extend(chunk)
                if b"\r\n\r\n" not in st["buf"]:
                    continue
                why = check_response(bytes(st["buf"]), st["accept"])
                if why:
                    raise ValueError(why)
                sel.unregister(s)
                in_flight -= 1
                done.append(s)
            except (OSError, ValueError) as e:
                sel.unregister(s)
                s.close()
                in_flight -= 1
                failures.append(str(e))
    sel.close()
    return done, failures


def still_open(sock):
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


def idle(url, pid, n, window, settle, timeout):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    addr, path = parse_url(url)
    warm, _ = open_idle(addr, path, 1, 1, time.monotonic() + timeout)
    for s in warm:
        s.close()
    time.sleep(0.3)
    before = rss_kib(pid)
    cpu0 = cpu_seconds(pid)
    t0 = time.monotonic()
    socks, failures = open_idle(addr, path, n, window, t0 + timeout)
    elapsed = time.monotonic() - t0
    cpu = cpu_seconds(pid) - cpu0
    time.sleep(settle)
    after = rss_kib(pid)
    dropped = sum(not still_open(s) for s in socks)
    ok = len(socks)
    result = {
        "connections": ok,
        "requested": n,
        "failed": len(failures),
        "failures": sorted(set(failures))[:5],
        "dropped": dropped,
        "window": window,
        "rss_before_kib": before,
        "rss_after_kib": after,
        "bytes_per_connection": round((after - before) * 1024 / ok, 1) if ok else None,
        "handshake_seconds": round(elapsed, 4),
        "handshakes_per_second": round(ok / elapsed, 1) if elapsed > 0 else None,
        "server_cpu_seconds": round(cpu, 3),
        "handshakes_per_server_cpu_second": round(ok / cpu, 1) if cpu > 0 else None,
    }
    for s in socks:
        s.close()
    return result


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check")
    c.add_argument("url")
    c.add_argument("--timeout", type=float, default=5.0)
    i = sub.add_parser("idle")
    i.add_argument("url")
    i.add_argument("--pid", type=int, required=True)
    i.add_argument("-n", type=int, default=10_000)
    i.add_argument("--window", type=int, default=8)
    i.add_argument("--settle", type=float, default=1.0)
    i.add_argument("--timeout", type=float, default=120.0)
    a = p.parse_args()
    if a.cmd == "check":
        try:
            check(a.url, a.timeout)
        except Exception as e:  # noqa: BLE001 - any failure means "not ready / not echoing"
            print(f"wsprobe check {a.url}: {e}", file=sys.stderr)
            return 1
        return 0
    r = idle(a.url, a.pid, a.n, max(1, a.window), a.settle, a.timeout)
    print(json.dumps(r))
    return 0 if r["failed"] == 0 and r["dropped"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
