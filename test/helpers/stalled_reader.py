"""A WebSocket client that never reads, with a tiny receive buffer.

Node cannot shrink a TCP socket's receive buffer; Python can. With SO_RCVBUF
at a few KB the server's sends back up within seconds, which is what the
slow-reader tests need.

usage: stalled_reader.py PORT PATH PCM_FILE|- SECONDS   (- : send nothing, e.g. a meeting viewer)
  Streams PCM_FILE (16 kHz mono s16le raw) as 100 ms frames at real time,
  with a flush every 500 ms (many finals), for SECONDS, never reading a
  byte after the handshake.
"""
import base64
import os
import socket
import struct
import sys
import time

port, path, pcm_file, seconds = int(sys.argv[1]), sys.argv[2], sys.argv[3], float(sys.argv[4])
pcm = b"" if pcm_file == "-" else open(pcm_file, "rb").read()

s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
s.connect(("127.0.0.1", port))
key = base64.b64encode(os.urandom(16)).decode()
s.sendall(
    (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
)
head = b""
while b"\r\n\r\n" not in head:
    head += s.recv(1)  # byte by byte: leave everything after the headers unread
assert head.startswith(b"HTTP/1.1 101"), head
print("upgraded", flush=True)


def frame(opcode, payload):
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        hdr = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        hdr = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        hdr = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return hdr + mask + bytes(b ^ mask[i & 3] for i, b in enumerate(payload))


if not pcm:  # a viewer: connect, then never read
    time.sleep(seconds)
    sys.exit(0)

flush = frame(1, b'{"type":"flush"}')
t0 = time.time()
off = 0
s.settimeout(0.5)
try:
    while time.time() - t0 < seconds:
        chunk = pcm[off : off + 3200]
        if len(chunk) < 3200:
            off = 0
            continue
        off += 3200
        n = off // 3200
        try:
            s.sendall(frame(2, chunk) + (flush if n % 5 == 0 else b""))
        except socket.timeout:
            pass
        time.sleep(0.1)  # real time: the point is the reader, not the engine
except (BrokenPipeError, ConnectionResetError):
    print("closed by server", flush=True)
    sys.exit(0)
print("done", flush=True)
time.sleep(60)
