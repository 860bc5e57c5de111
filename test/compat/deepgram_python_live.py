"""Deepgram's Python SDK (deepgram-sdk, pinned in scripts/setup.sh, test venv
build/pydg) as a live client of captiongate: streams a 16 kHz mono WAV through
listen.v1.connect with interim_results, sends Finalize after the first
`cut` bytes and waits for its answer, sends the rest, then CloseStream.
Prints every server message as a JSON line with "_sdk": the class the
SDK's own message parser made of it (null: the SDK has no type for it;
this SDK knows no Warning, for one), then {"type": "_closed", "code": <close code>}.

Usage: python deepgram_python_live.py ws://HOST:PORT API_KEY speech.wav CUT_BYTES
"""
import json
import sys
import threading
import wave

from deepgram import DeepgramClient
from deepgram.core.unchecked_base_model import construct_type
from deepgram.environment import DeepgramClientEnvironment
from deepgram.listen.v1.socket_client import V1SocketClientResponse

# Odd sizes (a partial sample included), as fast as the socket takes them.
FRAME = 3001


def parsed(raw):
    """The server's message as JSON, and the SDK's parse of it (what V1SocketClient yields)."""
    if isinstance(raw, (bytes, bytearray)):
        return {"type": "_binary", "bytes": len(raw)}
    d = json.loads(raw)
    try:
        m = construct_type(type_=V1SocketClientResponse, object_=d)
    except Exception:
        m = None
    d["_sdk"] = type(m).__name__ if m is not None else None
    return d


def main() -> int:
    base, key, wav_path, cut = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    http = base.replace("ws://", "http://", 1).replace("wss://", "https://", 1)
    # Pointed at captiongate: the REST and WebSocket base URLs of the environment.
    env = DeepgramClientEnvironment(base=http, production=base, agent=base, agent_rest=http)
    client = DeepgramClient(api_key=key, environment=env)
    with wave.open(wav_path, "rb") as w:
        if w.getframerate() != 16000 or w.getnchannels() != 1 or w.getsampwidth() != 2:
            raise SystemExit("expected 16 kHz mono 16-bit WAV")
        pcm = w.readframes(w.getnframes())

    with client.listen.v1.connect(
        model="nova-3",
        encoding="linear16",
        sample_rate=16000,
        channels=1,
        interim_results="true",
        punctuate="true",
        smart_format="false",
    ) as conn:
        finalized = threading.Event()
        done = threading.Event()

        def reader():
            try:
                # The socket under the SDK's client, so that a message the SDK cannot type is still seen.
                for raw in conn._websocket:
                    d = parsed(raw)
                    print(json.dumps(d, default=str), flush=True)
                    if d.get("type") == "Results" and d.get("from_finalize"):
                        finalized.set()
            except Exception as exc:  # the close ends the iteration; anything else is reported
                print(json.dumps({"type": "_error", "error": repr(exc)}), flush=True)
            finally:
                done.set()

        t = threading.Thread(target=reader, daemon=True)
        t.start()

        def send(data: bytes) -> None:
            for off in range(0, len(data), FRAME):
                conn.send_media(data[off : off + FRAME])

        send(pcm[:cut])
        conn.send_finalize()
        # A turn ends with Finalize; the next turn's audio follows its answer.
        if not finalized.wait(120):
            print(json.dumps({"type": "_error", "error": "no from_finalize result"}), flush=True)
            return 1
        send(pcm[cut:])
        conn.send_close_stream()
        done.wait(120)
        code = conn._websocket.close_code
    print(json.dumps({"type": "_closed", "code": code}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
