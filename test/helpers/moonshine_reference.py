"""Reference for the Moonshine engine: the wheels' own transcribers, run on
the same model files and audio. Test-only; scripts/setup.sh --test installs
them into build/pyref. Run under LD_PRELOAD of moonshine_token_tap.so, which
records the token ids each one decodes (MOONSHINE_TOKEN_TAP names the file).

  tiny: moonshine-voice 0.1.0's Transcriber (the upstream streaming runtime),
        its VAD switched off (vad_threshold 0) so a clip is one line; it
        returns the exact audio the line was decoded from (return_audio_data).
  base: moonshine-cpp 0.1.4's MoonshineModel.transcribe (whole audio), the
        wheel the files come from. Its libmoonshine.so is built for AVX-512
        (it dies of SIGILL in moonshine_load_model on a CPU without it), so
        on such a CPU base runs on moonshine-voice's Transcriber as tiny does
        (ModelArch.BASE, the same files).

Input (stdin, JSON): {"model": "tiny"|"base", "modelDir": DIR, "items": [F32_FILE...], "out": DIR}
  items: raw float32 samples, 16 kHz mono.
Output (stdout, JSON): per item {"tokens": [...], "text": str, "audio": F32_FILE}
  tokens: the decoded ids as the runtime produced them (start token first).
  audio: what the runtime decoded (the item itself for moonshine-cpp).
  runtime: which of the two ran.
"""
import json
import os
import sys

import numpy as np


def taps(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        lines = [l.split() for l in f.read().splitlines() if l.strip()]
    os.remove(path)
    return [[int(x) for x in l] for l in lines]


def has_avx512():
    with open("/proc/cpuinfo") as f:
        return any(l.startswith("flags") and " avx512f" in l for l in f)


def runtime(model):
    return "moonshine-cpp" if model == "base" and has_avx512() else "moonshine-voice"


def main():
    req = json.load(sys.stdin)
    tap = os.environ["MOONSHINE_TOKEN_TAP"]
    out = []
    if req["model"] == "tiny" or not has_avx512():
        from moonshine_voice import ModelArch, Transcriber

        arch = ModelArch.TINY if req["model"] == "tiny" else ModelArch.BASE
        t = Transcriber(model_path=req["modelDir"], model_arch=arch,
                        options={"vad_threshold": "0", "return_audio_data": "true"})
        for i, item in enumerate(req["items"]):
            audio = np.fromfile(item, dtype=np.float32)
            taps(tap)
            tr = t.transcribe_without_streaming(audio.tolist(), 16000)
            toks = taps(tap)
            if len(tr.lines) != 1 or len(toks) != 1:
                raise SystemExit(f"item {i}: expected one line, got {len(tr.lines)} lines and {len(toks)} token lists")
            line = tr.lines[0]
            decoded = os.path.join(req["out"], f"ref-audio-{i}.f32")
            np.asarray(line.audio_data, dtype=np.float32).tofile(decoded)
            out.append({"tokens": toks[0], "text": line.text, "audio": decoded, "runtime": runtime(req["model"])})
    else:
        import ctypes

        import moonshine_cpp

        d = req["modelDir"]
        m = moonshine_cpp.MoonshineModel(model_dir_path=d + "/", model_type="base")
        for i, item in enumerate(req["items"]):
            audio = np.fromfile(item, dtype=np.float32)
            taps(tap)
            buf = (ctypes.c_float * len(audio)).from_buffer(audio)
            c_text = ctypes.c_char_p()
            if moonshine_cpp.moonshine_lib.moonshine_transcribe(m.model_handle, buf, len(audio), ctypes.byref(c_text)) != 0:
                raise SystemExit(f"item {i}: moonshine_transcribe failed")
            text = c_text.value.decode("utf-8")
            moonshine_cpp.moonshine_lib.moonshine_free_text(c_text)
            toks = taps(tap)
            if len(toks) != 1:
                raise SystemExit(f"item {i}: expected one token list, got {len(toks)}")
            out.append({"tokens": toks[0], "text": text, "audio": item, "runtime": runtime(req["model"])})
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
