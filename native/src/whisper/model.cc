#include "model.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>

namespace captiongate::whisper {

namespace {

struct Linear {
  const float* w = nullptr;
  const float* b = nullptr;
  int out = 0, in = 0;
};

struct Norm {
  const float* gamma = nullptr;
  const float* beta = nullptr;
};

}  // namespace

struct EncoderLayer {
  Norm attnNorm, ffnNorm;
  Linear qkv, out, ffn1, ffn2;
};

struct DecoderLayer {
  Norm selfNorm, crossNorm, ffnNorm;
  Linear selfQkv, selfOut, crossQ, crossKv, crossOut, ffn1, ffn2;
};

struct Weights {
  Linear conv1, conv2;  // as [out][in × 3] matrices (im2col)
  const float* encPos = nullptr;
  EncoderLayer enc[kLayers];
  Norm encNorm;
  const float* embed = nullptr;  // [vocab][512], also the output projection
  const float* decPos = nullptr;
  DecoderLayer dec[kLayers];
  Norm decNorm;
  std::vector<int> suppress;
  std::vector<int> suppressBegin;
  size_t bytes = 0;
};

namespace {

Linear linear(const Ct2Model& m, const std::string& p, int out, int in, size_t* bytes) {
  Linear l;
  l.w = m.get(p + "/weight", {out, in}).data.data();
  l.b = m.has(p + "/bias") ? m.get(p + "/bias", {out}).data.data() : nullptr;
  l.out = out;
  l.in = in;
  *bytes += static_cast<size_t>(out) * in * 4 + (l.b ? out * 4 : 0);
  return l;
}

Norm norm(const Ct2Model& m, const std::string& p) {
  return Norm{m.get(p + "/gamma", {kDModel}).data.data(), m.get(p + "/beta", {kDModel}).data.data()};
}

}  // namespace

WhisperModel::WhisperModel(const std::string& dir, std::unique_ptr<Device> device) : device_(std::move(device)) {
  file_ = std::make_unique<Ct2Model>(dir + "/model.bin");
  if (file_->spec() != "WhisperSpec") throw std::runtime_error(dir + "/model.bin: not a Whisper model (spec " + file_->spec() + ")");
  tokenizer_ = std::make_unique<Tokenizer>(dir + "/vocabulary.txt");
  const Ct2Model& m = *file_;
  // Whisper base, checked: heads, pre-norm, exact GELU, no embedding scaling.
  if (m.scalar("encoder/num_heads") != kHeads || m.scalar("decoder/num_heads") != kHeads)
    throw std::runtime_error(dir + ": not Whisper base (8 heads expected)");
  if (m.scalar("decoder/pre_norm") != 1 || m.scalar("decoder/activation") != 3 || m.scalar("decoder/scale_embeddings") != 0)
    throw std::runtime_error(dir + ": unexpected decoder options for Whisper");
  w_ = std::make_unique<Weights>();
  Weights& w = *w_;
  size_t& bytes = w.bytes;
  w.conv1.w = m.get("encoder/conv1/weight", {kDModel, kMels, 3}).data.data();
  w.conv1.b = m.get("encoder/conv1/bias", {kDModel}).data.data();
  w.conv1.out = kDModel, w.conv1.in = kMels * 3;
  w.conv2.w = m.get("encoder/conv2/weight", {kDModel, kDModel, 3}).data.data();
  w.conv2.b = m.get("encoder/conv2/bias", {kDModel}).data.data();
  w.conv2.out = kDModel, w.conv2.in = kDModel * 3;
  bytes += (kDModel * kMels * 3 + kDModel * kDModel * 3 + 2 * kDModel) * 4;
  w.encPos = m.get("encoder/position_encodings/encodings", {kAudioCtx, kDModel}).data.data();
  bytes += kAudioCtx * kDModel * 4;
  for (int l = 0; l < kLayers; l++) {
    const std::string p = "encoder/layer_" + std::to_string(l);
    EncoderLayer& L = w.enc[l];
    L.attnNorm = norm(m, p + "/self_attention/layer_norm");
    L.qkv = linear(m, p + "/self_attention/linear_0", 3 * kDModel, kDModel, &bytes);
    L.out = linear(m, p + "/self_attention/linear_1", kDModel, kDModel, &bytes);
    L.ffnNorm = norm(m, p + "/ffn/layer_norm");
    L.ffn1 = linear(m, p + "/ffn/linear_0", kFfn, kDModel, &bytes);
    L.ffn2 = linear(m, p + "/ffn/linear_1", kDModel, kFfn, &bytes);
  }
  w.encNorm = norm(m, "encoder/layer_norm");
  w.embed = m.get("decoder/embeddings/weight", {kVocab, kDModel}).data.data();
  bytes += static_cast<size_t>(kVocab) * kDModel * 4;
  w.decPos = m.get("decoder/position_encodings/encodings", {kTextCtx, kDModel}).data.data();
  bytes += kTextCtx * kDModel * 4;
  for (int l = 0; l < kLayers; l++) {
    const std::string p = "decoder/layer_" + std::to_string(l);
    DecoderLayer& L = w.dec[l];
    L.selfNorm = norm(m, p + "/self_attention/layer_norm");
    L.selfQkv = linear(m, p + "/self_attention/linear_0", 3 * kDModel, kDModel, &bytes);
    L.selfOut = linear(m, p + "/self_attention/linear_1", kDModel, kDModel, &bytes);
    L.crossNorm = norm(m, p + "/attention/layer_norm");
    L.crossQ = linear(m, p + "/attention/linear_0", kDModel, kDModel, &bytes);
    L.crossKv = linear(m, p + "/attention/linear_1", 2 * kDModel, kDModel, &bytes);
    L.crossOut = linear(m, p + "/attention/linear_2", kDModel, kDModel, &bytes);
    L.ffnNorm = norm(m, p + "/ffn/layer_norm");
    L.ffn1 = linear(m, p + "/ffn/linear_0", kFfn, kDModel, &bytes);
    L.ffn2 = linear(m, p + "/ffn/linear_1", kDModel, kFfn, &bytes);
  }
  w.decNorm = norm(m, "decoder/layer_norm");
  // Hand every weight to the device once, saying how it will be used.
  auto prep = [&](const Linear& l, WeightUse use) { device_->prepareWeight(l.w, l.out, l.in, use); };
  prep(w.conv1, WeightUse::kBatch);
  prep(w.conv2, WeightUse::kBatch);
  for (const auto& L : w.enc) {
    for (const Linear* l : {&L.qkv, &L.out, &L.ffn1, &L.ffn2}) prep(*l, WeightUse::kBatch);
  }
  for (int l = 0; l < kLayers; l++) {
    const DecoderLayer& L = w.dec[l];
    prep(L.crossKv, WeightUse::kBatch);
    const std::string p = "decoder/layer_" + std::to_string(l) + "/";
    const std::pair<const Linear*, const char*> step[] = {
        {&L.selfQkv, "self_attention/linear_0"}, {&L.selfOut, "self_attention/linear_1"}, {&L.crossQ, "attention/linear_0"},
        {&L.crossOut, "attention/linear_2"},     {&L.ffn1, "ffn/linear_0"},                {&L.ffn2, "ffn/linear_1"}};
    for (auto [lin, name] : step) {
      // A device that now owns the weight lets the host copy go: these are
      // only ever passed back to the device.
      if (device_->prepareWeight(lin->w, lin->out, lin->in, WeightUse::kStep)) {
        file_->release(p + name + "/weight");
        w.bytes -= static_cast<size_t>(lin->out) * lin->in * 2;  // float32 → float16
      }
    }
  }
  // The embedding stays on the host too: token lookups read it directly.
  if (device_->prepareWeight(w.embed, kVocab, kDModel, WeightUse::kStep)) w.bytes += static_cast<size_t>(kVocab) * kDModel * 2;
  // From the model's config.json (faster-whisper's copy of OpenAI's lists).
  w.suppress = {1,     2,     7,     8,     9,     10,    14,    25,    26,    27,    28,    29,    31,    58,
                59,    60,    61,    62,    63,    90,    91,    92,    93,    359,   503,   522,   542,   873,
                893,   902,   918,   922,   931,   1350,  1853,  1982,  2460,  2627,  3246,  3253,  3268,  3536,
                3846,  3961,  4183,  4667,  6585,  6647,  7273,  9061,  9383,  10428, 10929, 11938, 12033, 12331,
                12562, 13793, 14157, 14635, 15265, 15618, 16553, 16604, 18362, 18956, 20075, 21675, 22520, 26130,
                26161, 26435, 28279, 29464, 31650, 32302, 32470, 36865, 42863, 47425, 49870, 50254, 50258, 50358,
                50359, 50360, 50361, 50362};
  w.suppressBegin = {220, 50257};
}

WhisperModel::~WhisperModel() = default;

size_t WhisperModel::weightBytes() const { return w_->bytes; }

void WhisperModel::encode(const std::vector<const float*>& mels, int frames, std::vector<float>* out) {
  if (frames <= 0 || frames % 2 || frames > kWindowFrames) throw std::runtime_error("encode: frames must be even and <= 3000");
  const Weights& w = *w_;
  Device& d = *device_;
  const int B = static_cast<int>(mels.size());
  const int T = frames, T2 = frames / 2;
  const int M = B * T2;
  // conv1 (k3, pad 1) as im2col + one GEMM over all windows.
  std::vector<float> col(static_cast<size_t>(B) * T * kMels * 3, 0.0f);
  for (int b = 0; b < B; b++) {
    const float* mel = mels[b];
    for (int t = 0; t < T; t++) {
      float* row = col.data() + (static_cast<size_t>(b) * T + t) * kMels * 3;
      for (int c = 0; c < kMels; c++) {
        for (int k = 0; k < 3; k++) {
          const int s = t + k - 1;
          row[c * 3 + k] = (s >= 0 && s < T) ? mel[static_cast<size_t>(c) * T + s] : 0.0f;
        }
      }
    }
  }
  std::vector<float> h1(static_cast<size_t>(B) * T * kDModel);
  d.linear(B * T, kDModel, kMels * 3, col.data(), kMels * 3, w.conv1.w, w.conv1.b, h1.data(), kDModel);
  d.gelu(h1.data(), h1.size());
  // conv2 (k3, stride 2, pad 1).
  col.assign(static_cast<size_t>(M) * kDModel * 3, 0.0f);
  for (int b = 0; b < B; b++) {
    for (int t = 0; t < T2; t++) {
      float* row = col.data() + (static_cast<size_t>(b) * T2 + t) * kDModel * 3;
      for (int k = 0; k < 3; k++) {
        const int s = 2 * t + k - 1;
        if (s < 0 || s >= T) continue;
        const float* src = h1.data() + (static_cast<size_t>(b) * T + s) * kDModel;
        for (int c = 0; c < kDModel; c++) row[c * 3 + k] = src[c];
      }
    }
  }
  std::vector<float> x(static_cast<size_t>(M) * kDModel);
  d.linear(M, kDModel, kDModel * 3, col.data(), kDModel * 3, w.conv2.w, w.conv2.b, x.data(), kDModel);
  d.gelu(x.data(), x.size());
  for (int b = 0; b < B; b++)
    for (int t = 0; t < T2; t++)
      for (int c = 0; c < kDModel; c++) x[(static_cast<size_t>(b) * T2 + t) * kDModel + c] += w.encPos[t * kDModel + c];
  col.clear();
  col.shrink_to_fit();
  h1.clear();
  h1.shrink_to_fit();

  std::vector<float> ln(static_cast<size_t>(M) * kDModel), qkv(static_cast<size_t>(M) * 3 * kDModel),
      ctx(static_cast<size_t>(M) * kDModel), tmp(static_cast<size_t>(M) * kDModel), f(static_cast<size_t>(M) * kFfn),
      scores(static_cast<size_t>(T2) * T2);
  const int hd = kDModel / kHeads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  for (int l = 0; l < kLayers; l++) {
    const EncoderLayer& L = w.enc[l];
    d.layerNorm(M, kDModel, x.data(), kDModel, L.attnNorm.gamma, L.attnNorm.beta, ln.data(), kDModel);
    d.linear(M, 3 * kDModel, kDModel, ln.data(), kDModel, L.qkv.w, L.qkv.b, qkv.data(), 3 * kDModel);
    for (int b = 0; b < B; b++) {
      const float* base = qkv.data() + static_cast<size_t>(b) * T2 * 3 * kDModel;
      for (int h = 0; h < kHeads; h++) {
        d.gemm(true, T2, T2, hd, scale, base + h * hd, 3 * kDModel, base + kDModel + h * hd, 3 * kDModel, scores.data(), T2);
        d.softmax(T2, T2, scores.data(), T2);
        d.gemm(false, T2, hd, T2, 1.0f, scores.data(), T2, base + 2 * kDModel + h * hd, 3 * kDModel,
               ctx.data() + static_cast<size_t>(b) * T2 * kDModel + h * hd, kDModel);
      }
    }
    d.linear(M, kDModel, kDModel, ctx.data(), kDModel, L.out.w, L.out.b, tmp.data(), kDModel);
    for (size_t i = 0; i < x.size(); i++) x[i] += tmp[i];
    d.layerNorm(M, kDModel, x.data(), kDModel, L.ffnNorm.gamma, L.ffnNorm.beta, ln.data(), kDModel);
    d.linear(M, kFfn, kDModel, ln.data(), kDModel, L.ffn1.w, L.ffn1.b, f.data(), kFfn);
    d.gelu(f.data(), f.size());
    d.linear(M, kDModel, kFfn, f.data(), kFfn, L.ffn2.w, L.ffn2.b, tmp.data(), kDModel);
    for (size_t i = 0; i < x.size(); i++) x[i] += tmp[i];
  }
  out->resize(static_cast<size_t>(M) * kDModel);
  d.layerNorm(M, kDModel, x.data(), kDModel, w.encNorm.gamma, w.encNorm.beta, out->data(), kDModel);
}

// Length of the repeated tail if the last tokens are one n-gram repeated
// `repeats` times (and at least 16 tokens in all, so "no, no, no, no" is
// speech, not a loop); 0 otherwise.
size_t repeatedTail(const std::vector<int>& t, int repeats) {
  for (size_t n = 1; n <= 16; n++) {
    const size_t need = n * std::max<size_t>(repeats, (16 + n - 1) / n);
    if (t.size() < need) break;
    bool same = true;
    for (size_t i = t.size() - need + n; i < t.size() && same; i++) same = t[i] == t[i - n];
    if (same) return need - n;  // keep one copy
  }
  return 0;
}


std::vector<DecodeResult> WhisperModel::decode(const float* enc, int B, int ctxLen, const DecodeOptions& opts) {
  const Weights& w = *w_;
  Device& d = *device_;
  const SpecialTokens& sp = tokenizer_->special();
  const int hd = kDModel / kHeads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const int maxPos = kTextCtx;

  // Cross-attention keys and values for every layer, once per window.
  std::vector<std::vector<float>> crossKv(kLayers);
  for (int l = 0; l < kLayers; l++) {
    crossKv[l].resize(static_cast<size_t>(B) * ctxLen * 2 * kDModel);
    d.linear(B * ctxLen, 2 * kDModel, kDModel, enc, kDModel, w.dec[l].crossKv.w, w.dec[l].crossKv.b, crossKv[l].data(),
             2 * kDModel);
  }
  // Self-attention cache: [layer][seq][pos][k | v].
  std::vector<float> cache(static_cast<size_t>(kLayers) * B * maxPos * 2 * kDModel);
  auto cacheAt = [&](int l, int s, int p) {
    return cache.data() + ((static_cast<size_t>(l) * B + s) * maxPos + p) * 2 * kDModel;
  };

  const std::vector<int> prompt = {sp.sot, sp.english, sp.transcribe};
  std::vector<DecodeResult> results(B);
  std::vector<std::vector<int>> seq(B);
  std::vector<bool> done(B, false);
  std::vector<double> sumLogprob(B, 0.0);
  const int sampleBegin = static_cast<int>(prompt.size());
  const int maxInitial = sp.timestampBegin + static_cast<int>(std::lround(opts.maxInitialTimestamp / 0.02f));

  std::vector<float> x, ln, qkv, att, tmp, f, q, logits, scores(std::max(ctxLen, maxPos));
  std::vector<int> active;
  for (int pos = 0; pos < maxPos; pos++) {
    active.clear();
    for (int s = 0; s < B; s++)
      if (!done[s]) active.push_back(s);
    if (active.empty()) break;
    const int M = static_cast<int>(active.size());
    x.assign(static_cast<size_t>(M) * kDModel, 0.0f);
    for (int i = 0; i < M; i++) {
      const int s = active[i];
      const int tok = pos < sampleBegin ? prompt[pos] : seq[s].back();
      for (int c = 0; c < kDModel; c++)
        x[static_cast<size_t>(i) * kDModel + c] = w.embed[static_cast<size_t>(tok) * kDModel + c] + w.decPos[pos * kDModel + c];
    }
    ln.resize(x.size());
    qkv.resize(static_cast<size_t>(M) * 3 * kDModel);
    att.resize(x.size());
    tmp.resize(x.size());
    q.resize(x.size());
    f.resize(static_cast<size_t>(M) * kFfn);
    for (int l = 0; l < kLayers; l++) {
      const DecoderLayer& L = w.dec[l];
      d.layerNorm(M, kDModel, x.data(), kDModel, L.selfNorm.gamma, L.selfNorm.beta, ln.data(), kDModel);
      d.linear(M, 3 * kDModel, kDModel, ln.data(), kDModel, L.selfQkv.w, L.selfQkv.b, qkv.data(), 3 * kDModel);
      for (int i = 0; i < M; i++) {
        const int s = active[i];
        float* kv = cacheAt(l, s, pos);
        std::memcpy(kv, qkv.data() + static_cast<size_t>(i) * 3 * kDModel + kDModel, 2 * kDModel * sizeof(float));
        for (int h = 0; h < kHeads; h++) {
          const float* qh = qkv.data() + static_cast<size_t>(i) * 3 * kDModel + h * hd;
          d.gemm(true, 1, pos + 1, hd, scale, qh, hd, cacheAt(l, s, 0) + h * hd, 2 * kDModel, scores.data(), pos + 1);
          d.softmax(1, pos + 1, scores.data(), pos + 1);
          d.gemm(false, 1, hd, pos + 1, 1.0f, scores.data(), pos + 1, cacheAt(l, s, 0) + kDModel + h * hd, 2 * kDModel,
                 att.data() + static_cast<size_t>(i) * kDModel + h * hd, kDModel);
        }
      }
      d.linear(M, kDModel, kDModel, att.data(), kDModel, L.selfOut.w, L.selfOut.b, tmp.data(), kDModel);
      for (size_t k = 0; k < x.size(); k++) x[k] += tmp[k];

      d.layerNorm(M, kDModel, x.data(), kDModel, L.crossNorm.gamma, L.crossNorm.beta, ln.data(), kDModel);
      d.linear(M, kDModel, kDModel, ln.data(), kDModel, L.crossQ.w, L.crossQ.b, q.data(), kDModel);
      for (int i = 0; i < M; i++) {
        const int s = active[i];
        const float* kvBase = crossKv[l].data() + static_cast<size_t>(s) * ctxLen * 2 * kDModel;
        for (int h = 0; h < kHeads; h++) {
          d.gemm(true, 1, ctxLen, hd, scale, q.data() + static_cast<size_t>(i) * kDModel + h * hd, hd, kvBase + h * hd,
                 2 * kDModel, scores.data(), ctxLen);
          d.softmax(1, ctxLen, scores.data(), ctxLen);
          d.gemm(false, 1, hd, ctxLen, 1.0f, scores.data(), ctxLen, kvBase + kDModel + h * hd, 2 * kDModel,
                 att.data() + static_cast<size_t>(i) * kDModel + h * hd, kDModel);
        }
      }
      d.linear(M, kDModel, kDModel, att.data(), kDModel, L.crossOut.w, L.crossOut.b, tmp.data(), kDModel);
      for (size_t k = 0; k < x.size(); k++) x[k] += tmp[k];

      d.layerNorm(M, kDModel, x.data(), kDModel, L.ffnNorm.gamma, L.ffnNorm.beta, ln.data(), kDModel);
      d.linear(M, kFfn, kDModel, ln.data(), kDModel, L.ffn1.w, L.ffn1.b, f.data(), kFfn);
      d.gelu(f.data(), f.size());
      d.linear(M, kDModel, kFfn, f.data(), kFfn, L.ffn2.w, L.ffn2.b, tmp.data(), kDModel);
      for (size_t k = 0; k < x.size(); k++) x[k] += tmp[k];
    }
    // Logits are needed at the SOT position (no-speech probability) and from
    // the last prompt token on.
    const bool needLogits = pos == 0 || pos >= sampleBegin - 1;
    if (!needLogits) continue;
    d.layerNorm(M, kDModel, x.data(), kDModel, w.decNorm.gamma, w.decNorm.beta, ln.data(), kDModel);
    logits.resize(static_cast<size_t>(M) * kVocab);
    d.linear(M, kVocab, kDModel, ln.data(), kDModel, w.embed, nullptr, logits.data(), kVocab);
    for (int i = 0; i < M; i++) {
      const int s = active[i];
      float* lg = logits.data() + static_cast<size_t>(i) * kVocab;
      if (pos == 0) {
        float mx = -INFINITY;
        for (int k = 0; k < kVocab; k++) mx = std::max(mx, lg[k]);
        double sum = 0;
        for (int k = 0; k < kVocab; k++) sum += std::exp(static_cast<double>(lg[k] - mx));
        results[s].noSpeechProb = static_cast<float>(std::exp(static_cast<double>(lg[sp.noSpeech] - mx)) / sum);
        if (sampleBegin - 1 != 0) continue;
      }
      // Logit filters, as Whisper applies them.
      const int n = static_cast<int>(seq[s].size());
      const float NEG = -INFINITY;
      for (int id : w.suppress) lg[id] = NEG;
      lg[sp.noTimestamps] = NEG;
      if (n == 0)
        for (int id : w.suppressBegin) lg[id] = NEG;
      const bool lastTs = n >= 1 && seq[s][n - 1] >= sp.timestampBegin;
      const bool penultTs = n < 2 || seq[s][n - 2] >= sp.timestampBegin;
      if (lastTs) {
        if (penultTs) {
          for (int k = sp.timestampBegin; k < kVocab; k++) lg[k] = NEG;
        } else {
          for (int k = 0; k < sp.eot; k++) lg[k] = NEG;
        }
      }
      int lastTimestamp = -1;
      for (int k = n - 1; k >= 0; k--)
        if (seq[s][k] >= sp.timestampBegin) {
          lastTimestamp = seq[s][k];
          break;
        }
      if (lastTimestamp >= 0) {
        const int floor = (lastTs && !penultTs) ? lastTimestamp : lastTimestamp + 1;
        for (int k = sp.timestampBegin; k < floor; k++) lg[k] = NEG;
      }
      if (n == 0) {
        for (int k = 0; k < sp.timestampBegin; k++) lg[k] = NEG;
        for (int k = maxInitial + 1; k < kVocab; k++) lg[k] = NEG;
      }
      // If timestamps are likelier in total than any text token, take one.
      float mx = -INFINITY;
      for (int k = 0; k < kVocab; k++) mx = std::max(mx, lg[k]);
      double sum = 0;
      for (int k = 0; k < kVocab; k++)
        if (lg[k] > NEG) sum += std::exp(static_cast<double>(lg[k] - mx));
      const double logZ = mx + std::log(sum);
      double tsSum = 0;
      for (int k = sp.timestampBegin; k < kVocab; k++)
        if (lg[k] > NEG) tsSum += std::exp(static_cast<double>(lg[k] - mx));
      float maxText = -INFINITY;
      for (int k = 0; k < sp.timestampBegin; k++) maxText = std::max(maxText, lg[k]);
      if (tsSum > 0 && mx + std::log(tsSum) - logZ > maxText - logZ) {
        for (int k = 0; k < sp.timestampBegin; k++) lg[k] = NEG;
      }
      int best = 0;
      for (int k = 1; k < kVocab; k++)
        if (lg[k] > lg[best]) best = k;
      sumLogprob[s] += lg[best] - logZ;
      seq[s].push_back(best);
      if (best == sp.eot || static_cast<int>(seq[s].size()) >= opts.maxTokens || pos + 1 >= maxPos) done[s] = true;
      if (!done[s] && best < sp.eot) {
        std::vector<int> text;
        for (int t : seq[s])
          if (t < sp.eot) text.push_back(t);
        if (repeatedTail(text, opts.maxRepeats) > 0) {
          results[s].repetitionCut = true;
          done[s] = true;
        }
      }
    }
  }

  for (int s = 0; s < B; s++) {
    DecodeResult& r = results[s];
    r.tokens = seq[s];
    if (!r.tokens.empty() && r.tokens.back() == sp.eot) r.tokens.pop_back();
    std::vector<int> textOnly;
    for (int t : r.tokens)
      if (t < sp.eot) textOnly.push_back(t);
    if (r.repetitionCut) {
      const size_t cut = repeatedTail(textOnly, opts.maxRepeats);
      // Drop the repeated copies from the token list too.
      size_t toDrop = cut;
      while (toDrop > 0 && !r.tokens.empty()) {
        if (r.tokens.back() < sp.eot) toDrop--;
        r.tokens.pop_back();
      }
    }
    r.avgLogprob = static_cast<float>(sumLogprob[s] / (seq[s].size() + 1));
    // Segments: <|t0|> text <|t1|>, and trailing text up to the window end.
    Segment cur;
    bool open = false;
    for (int t : r.tokens) {
      if (t >= sp.timestampBegin) {
        const float sec = (t - sp.timestampBegin) * 0.02f;
        if (!open) {
          cur = Segment{};
          cur.start = sec;
          open = true;
        } else {
          cur.end = sec;
          cur.text = tokenizer_->decode(cur.tokens);
          if (!cur.tokens.empty()) r.segments.push_back(cur);
          open = false;
        }
      } else if (t < sp.eot) {
        if (!open) {
          cur = Segment{};
          cur.start = r.segments.empty() ? 0.0f : r.segments.back().end;
          open = true;
        }
        cur.tokens.push_back(t);
      }
    }
    if (open && !cur.tokens.empty()) {
      cur.end = ctxLen * 0.02f;
      cur.text = tokenizer_->decode(cur.tokens);
      r.segments.push_back(cur);
    }
    std::vector<int> all;
    for (auto& sg : r.segments) all.insert(all.end(), sg.tokens.begin(), sg.tokens.end());
    r.text = tokenizer_->decode(all);
  }
  return results;
}

double cosineSimilarity(const float* a, const float* b, size_t n) {
  double ab = 0, aa = 0, bb = 0;
  for (size_t i = 0; i < n; i++) {
    ab += static_cast<double>(a[i]) * b[i];
    aa += static_cast<double>(a[i]) * a[i];
    bb += static_cast<double>(b[i]) * b[i];
  }
  return ab / (std::sqrt(aa) * std::sqrt(bb) + 1e-30);
}

}  // namespace captiongate::whisper
