"""bench:moonshine, section boundaries: the upstream runtime on its own terms.

moonshine-voice 0.1.0's Transcriber (installed into build/pyref by
scripts/setup.sh --test, test and bench only) transcribes whole WAV files
with its own VAD and segmentation at their defaults, on the same model
files as the engine. The bench scores its text with the suite's WER, so a
gap between the engine and the target can be set against the model as its
authors run it.

Input (stdin, JSON): {"model": "tiny"|"base", "modelDir": DIR, "files": [WAV...]}
  WAV: 16 kHz mono s16le.
Output (stdout, JSON): one text per file, its lines joined by spaces.
"""
import json
import sys
import wave

import numpy as np
from moonshine_voice import ModelArch, Transcriber


def main():
    req = json.load(sys.stdin)
    arch = ModelArch.TINY if req["model"] == "tiny" else ModelArch.BASE
    t = Transcriber(model_path=req["modelDir"], model_arch=arch)
    out = []
    for f in req["files"]:
        with wave.open(f) as w:
            if w.getframerate() != 16000 or w.getnchannels() != 1 or w.getsampwidth() != 2:
                raise SystemExit(f"{f}: expected 16 kHz mono s16le")
            pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
        tr = t.transcribe_without_streaming((pcm.astype(np.float32) / 32768).tolist(), 16000)
        out.append(" ".join(line.text for line in tr.lines))
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
