"""Reference for the Whisper backend: CTranslate2 (the runtime this model
format was made for) and faster-whisper's numpy log-mel, run on the same
model and audio. Test-only; scripts/setup.sh --test installs them into
build/pyref.

Input (stdin, JSON): {"model": DIR, "items": [{"audio": F32_FILE, "mel": F32_FILE|null}], "out": DIR}
  audio: raw float32 samples, 16 kHz mono, at most 30 s.
  mel:   raw float32 [80][3000] computed by the backend under test; when
         given, the encoder and decoder run on it, so their comparison is
         not mixed up with the front end's.
Output (stdout, JSON): per item {"mel": F32_FILE, "encoder": F32_FILE,
  "tokens": [...], "noSpeechProb": p}; the files are raw float32.
"""
import importlib.util
import json
import os
import sys

import ctranslate2
import numpy as np

FW_FILE = os.environ.get("CG_FASTER_WHISPER_FEATURES")


def load_feature_extractor():
    # faster_whisper/__init__ imports PyAV and onnxruntime, which the
    # reference does not need; load the numpy feature extractor by path.
    spec = importlib.util.spec_from_file_location("fw_features", FW_FILE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.FeatureExtractor(feature_size=80)


def main():
    req = json.load(sys.stdin)
    fe = load_feature_extractor()
    model = ctranslate2.models.Whisper(req["model"], device="cpu", compute_type="float32", intra_threads=int(os.environ.get("CG_REF_THREADS", "2")))
    out = []
    for i, item in enumerate(req["items"]):
        audio = np.fromfile(item["audio"], dtype=np.float32)
        padded = np.zeros(480000, dtype=np.float32)
        padded[: min(len(audio), 480000)] = audio[:480000]
        ref_mel = fe(padded, padding=0)[:, :3000].astype(np.float32)
        mel_file = os.path.join(req["out"], f"ref-mel-{i}.f32")
        ref_mel.tofile(mel_file)
        feats = np.fromfile(item["mel"], dtype=np.float32).reshape(80, 3000) if item.get("mel") else ref_mel
        sv = ctranslate2.StorageView.from_array(np.ascontiguousarray(feats[None, :, :]))
        enc = np.array(model.encode(sv, to_cpu=True))
        enc_file = os.path.join(req["out"], f"ref-enc-{i}.f32")
        enc.astype(np.float32).tofile(enc_file)
        res = model.generate(
            sv,
            [[50258, 50259, 50359]],
            beam_size=1,
            max_length=448,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=[-1],
            max_initial_timestamp_index=50,
        )[0]
        out.append({"mel": mel_file, "encoder": enc_file, "tokens": res.sequences_ids[0], "noSpeechProb": res.no_speech_prob})
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
