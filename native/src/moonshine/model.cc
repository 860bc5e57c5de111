#include "model.h"

#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>

#include "onnx_subgraphs.h"

namespace captiongate::moonshine {
namespace {

using Clock = std::chrono::steady_clock;
double msSince(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

std::vector<std::string> inputNames(Ort::Session& s) {
  Ort::AllocatorWithDefaultOptions a;
  std::vector<std::string> v;
  for (size_t i = 0; i < s.GetInputCount(); ++i) v.emplace_back(s.GetInputNameAllocated(i, a).get());
  return v;
}

std::vector<std::string> outputNames(Ort::Session& s) {
  Ort::AllocatorWithDefaultOptions a;
  std::vector<std::string> v;
  for (size_t i = 0; i < s.GetOutputCount(); ++i) v.emplace_back(s.GetOutputNameAllocated(i, a).get());
  return v;
}

bool has(const std::vector<std::string>& v, const std::string& x) { return std::find(v.begin(), v.end(), x) != v.end(); }

std::string readFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot read " + path);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

// Runs a session through the C API, so inputs can be borrowed (the
// cross-attention cache is fed to every step without a copy).
std::vector<Ort::Value> run(Ort::Session& s, const std::vector<const char*>& inNames, const std::vector<const OrtValue*>& in,
                            const std::vector<const char*>& outNames) {
  std::vector<OrtValue*> out(outNames.size(), nullptr);
  Ort::ThrowOnError(Ort::GetApi().Run(s, nullptr, inNames.data(), in.data(), in.size(), outNames.data(), outNames.size(), out.data()));
  std::vector<Ort::Value> v;
  v.reserve(out.size());
  for (OrtValue* o : out) v.emplace_back(o);
  return v;
}

}  // namespace

size_t repeatedTail(const std::vector<int64_t>& t, int repeats) {
  if (repeats <= 0) return 0;
  for (size_t n = 1; n <= 16; n++) {
    const size_t need = n * std::max<size_t>(static_cast<size_t>(repeats), (16 + n - 1) / n);
    if (t.size() < need) break;
    bool same = true;
    for (size_t i = t.size() - need + n; i < t.size() && same; i++) same = t[i] == t[i - n];
    if (same) return need - n;  // keep one copy
  }
  return 0;
}

void Model::IoNames::set(std::vector<std::string> n) {
  names = std::move(n);
  ptrs.clear();
  for (auto& s : names) ptrs.push_back(s.c_str());
}

Model::~Model() = default;

Ort::Session Model::open(const std::string& file, const ModelSettings& s, bool fold) {
  if (!std::filesystem::exists(file)) throw std::runtime_error("Moonshine model file missing: " + file);
  fileBytes_ += static_cast<double>(std::filesystem::file_size(file));
  if (!fold) return Ort::Session(*env_, file.c_str(), options_);
  // ORT-format → ONNX (written by ORT itself, graph untouched), then loaded
  // with every optimization, constant folding included.
  static std::atomic<uint64_t> seq{0};
  const auto tmp = std::filesystem::temp_directory_path() /
                   ("captiongate-moonshine-" + std::to_string(getpid()) + "-" + std::to_string(seq++) + ".onnx");
  std::string bytes;
  try {
    Ort::SessionOptions so;
    so.SetIntraOpNumThreads(1);
    so.SetGraphOptimizationLevel(ORT_DISABLE_ALL);
    so.SetOptimizedModelFilePath(tmp.c_str());
    { Ort::Session once(*env_, file.c_str(), so); }
    bytes = readFile(tmp.string());
  } catch (...) {
    std::error_code ec;
    std::filesystem::remove(tmp, ec);
    throw;
  }
  std::error_code ec;
  std::filesystem::remove(tmp, ec);
  const std::string named = nameOnnxSubgraphs(bytes);
  bytes.clear();
  return Ort::Session(*env_, named.data(), named.size(), options_);
}

Model::Model(const ModelSettings& s) {
  ortVersion_ = loadOrt(s.ortLibrary);
  env_ = std::make_unique<Ort::Env>(ORT_LOGGING_LEVEL_ERROR, "captiongate-moonshine");
  options_ = Ort::SessionOptions();
  options_.SetIntraOpNumThreads(std::max(1, s.intraOpThreads));
  options_.SetInterOpNumThreads(1);
  options_.SetExecutionMode(ORT_SEQUENTIAL);
  options_.SetGraphOptimizationLevel(ORT_ENABLE_ALL);
  // Pool threads (intraOpThreads > 1) sleep between runs instead of spinning
  // next to the engine's other threads.
  options_.AddConfigEntry("session.intra_op.allow_spinning", "0");
  cpu_ = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);

  tokenizer_ = std::make_unique<Tokenizer>(s.dir + "/tokenizer.bin");
  try {
    encoder_ = open(s.dir + "/encoder_model.ort", s, s.foldWeights);
  } catch (const std::exception& e) {
    throw std::runtime_error(s.dir + "/encoder_model.ort: " + e.what());
  }
  try {
    decoder_ = open(s.dir + "/decoder_model_merged.ort", s, s.foldWeights);
  } catch (const std::exception& e) {
    throw std::runtime_error(s.dir + "/decoder_model_merged.ort: " + e.what());
  }

  const auto ein = inputNames(encoder_);
  if (!has(ein, "input_values") || !has(outputNames(encoder_), "last_hidden_state"))
    throw std::runtime_error(s.dir + "/encoder_model.ort: not a Moonshine encoder (needs input_values → last_hidden_state)");
  encMask_ = has(ein, "attention_mask");
  std::vector<std::string> e = {"input_values"};
  if (encMask_) e.push_back("attention_mask");
  encIn_.set(e);

  const auto din = inputNames(decoder_);
  const auto dout = outputNames(decoder_);
  for (const char* need : {"input_ids", "encoder_hidden_states", "use_cache_branch"})
    if (!has(din, need)) throw std::runtime_error(s.dir + "/decoder_model_merged.ort: not a merged Moonshine decoder (no " + need + ")");
  if (!has(dout, "logits")) throw std::runtime_error(s.dir + "/decoder_model_merged.ort: no logits output");
  decMask_ = has(din, "encoder_attention_mask");
  if (decMask_ != encMask_) throw std::runtime_error(s.dir + ": the encoder and decoder disagree on the attention mask");
  decIn_.set(din);
  for (size_t i = 0; i < din.size(); ++i) {
    const auto& n = din[i];
    auto shape = decoder_.GetInputTypeInfo(i).GetTensorTypeAndShapeInfo().GetShape();
    if (n.rfind("past_key_values.", 0) == 0 && n.size() > 12 && n.compare(n.size() - 12, 12, ".decoder.key") == 0) {
      layers_++;
      if (shape.size() != 4) throw std::runtime_error(s.dir + ": unexpected KV cache shape");
      heads_ = static_cast<int>(shape[1]);
      headDim_ = static_cast<int>(shape[3]);
    }
    if (n == "encoder_hidden_states" && shape.size() == 3) hidden_ = static_cast<int>(shape[2]);
  }
  if (layers_ == 0 || heads_ <= 0 || headDim_ <= 0) throw std::runtime_error(s.dir + ": cannot read the decoder's KV cache layout");
  // Outputs: logits first, then present.* mapped to the past inputs they feed.
  std::vector<std::string> all = {"logits"}, step = {"logits"};
  allOutToPast_ = {-1};
  stepOutToPast_ = {-1};
  for (const auto& n : dout) {
    if (n.rfind("present.", 0) != 0) continue;
    const std::string past = "past_key_values." + n.substr(8);
    const auto it = std::find(din.begin(), din.end(), past);
    if (it == din.end()) throw std::runtime_error(s.dir + ": decoder output " + n + " has no matching input");
    const int idx = static_cast<int>(it - din.begin());
    all.push_back(n);
    allOutToPast_.push_back(idx);
    if (n.find(".decoder.") != std::string::npos) {
      step.push_back(n);
      stepOutToPast_.push_back(idx);
    }
  }
  if (static_cast<int>(all.size()) != 1 + 4 * layers_) throw std::runtime_error(s.dir + ": decoder outputs do not cover the KV cache");
  decOutAll_.set(all);
  decOutStep_.set(step);
  // Loading (and, for base, the round trip through ONNX and the constant
  // folding) leaves freed heap behind; hand it back to the system.
  malloc_trim(0);
}

Transcript Model::transcribe(const std::vector<float>& audio, const DecodeOptions& o, const std::vector<int64_t>* draft) const {
  return std::move(transcribe(std::vector<const std::vector<float>*>{&audio}, o, draft)[0]);
}

namespace {

// The largest logit and the gap to the runner-up.
struct Best {
  int64_t token = 0;
  float gap = 0;
};
Best bestOf(const float* row, int64_t V) {
  Best r;
  float top = -INFINITY, second = -INFINITY;
  for (int64_t v = 0; v < V; ++v) {
    if (row[v] > top) {
      second = top;
      top = row[v];
      r.token = v;
    } else if (row[v] > second) {
      second = row[v];
    }
  }
  r.gap = top - second;
  return r;
}

// The softmax's denominator, relative to the largest logit `best`.
double softmaxSum(const float* row, int64_t V, int64_t best) {
  double z = 0;
  for (int64_t v = 0; v < V; ++v) z += std::exp(static_cast<double>(row[v] - row[best]));
  return z;
}

// The `k` largest logits of a row, largest first.
std::vector<int64_t> topTokens(const float* row, int64_t V, size_t k) {
  std::vector<int64_t> top;
  const auto higher = [row](int64_t a, int64_t b) { return row[a] > row[b]; };
  for (int64_t v = 0; v < V; ++v) {
    if (top.size() == k && row[v] <= row[top.back()]) continue;
    top.insert(std::upper_bound(top.begin(), top.end(), v, higher), v);
    if (top.size() > k) top.pop_back();
  }
  return top;
}

// Rows `from` of a tensor (batch first) as a new tensor of from.size() rows.
template <typename T>
Ort::Value gatherRows(const Ort::Value& v, const std::vector<int64_t>& from) {
  auto shape = v.GetTensorTypeAndShapeInfo().GetShape();
  int64_t rowLen = 1;
  for (size_t d = 1; d < shape.size(); ++d) rowLen *= shape[d];
  const int64_t rows = shape[0];
  shape[0] = static_cast<int64_t>(from.size());
  Ort::AllocatorWithDefaultOptions alloc;
  Ort::Value out = Ort::Value::CreateTensor<T>(alloc, shape.data(), shape.size());
  const T* src = v.GetTensorData<T>();
  T* dst = out.GetTensorMutableData<T>();
  for (size_t r = 0; r < from.size(); ++r) {
    if (from[r] < 0 || from[r] >= rows) throw std::logic_error("gatherRows: no such row");
    std::copy(src + from[r] * rowLen, src + (from[r] + 1) * rowLen, dst + static_cast<int64_t>(r) * rowLen);
  }
  return out;
}

// The first `keep` positions of a KV tensor [B, H, P, D].
Ort::Value firstPositions(const Ort::Value& kv, int64_t keep) {
  const auto shape = kv.GetTensorTypeAndShapeInfo().GetShape();
  if (shape.size() != 4 || keep > shape[2]) throw std::runtime_error("unexpected Moonshine KV cache shape");
  Ort::AllocatorWithDefaultOptions alloc;
  const std::vector<int64_t> to{shape[0], shape[1], keep, shape[3]};
  Ort::Value v = Ort::Value::CreateTensor<float>(alloc, to.data(), to.size());
  const float* src = kv.GetTensorData<float>();
  float* dst = v.GetTensorMutableData<float>();
  const int64_t rowLen = keep * shape[3], srcStride = shape[2] * shape[3];
  for (int64_t bh = 0; bh < shape[0] * shape[1]; ++bh) std::copy(src + bh * srcStride, src + bh * srcStride + rowLen, dst + bh * rowLen);
  return v;
}

}  // namespace

std::vector<Transcript> Model::transcribe(const std::vector<const std::vector<float>*>& rows, const DecodeOptions& o,
                                          const std::vector<int64_t>* draft) const {
  const int64_t B = static_cast<int64_t>(rows.size());
  if (B == 0) return {};
  size_t T = kMinSamples;
  bool equal = true;
  for (auto* r : rows) {
    T = std::max(T, r->size());
    equal = equal && r->size() == rows[0]->size();
  }
  if (!equal && !encMask_) throw std::runtime_error("this Moonshine model takes no attention mask: a batch needs rows of equal length");
  // Padded input [B, T] and the sample-level mask (1 = audio).
  std::vector<float> audio(static_cast<size_t>(B) * T, 0.f);
  std::vector<int64_t> mask(static_cast<size_t>(B) * T, 0);
  for (int64_t b = 0; b < B; ++b) {
    std::copy(rows[b]->begin(), rows[b]->end(), audio.begin() + b * T);
    // Silence padded up to the minimum length counts as audio (it is part of the input).
    const size_t real = std::max(rows[b]->size(), equal ? T : rows[b]->size());
    std::fill(mask.begin() + b * T, mask.begin() + b * T + static_cast<int64_t>(real), 1);
  }
  Ort::Session& enc = const_cast<Ort::Session&>(encoder_);
  Ort::Session& dec = const_cast<Ort::Session&>(decoder_);
  const Ort::MemoryInfo& mem = cpu_;
  std::vector<int64_t> shape{B, static_cast<int64_t>(T)};

  auto t0 = Clock::now();
  Ort::Value audioV = Ort::Value::CreateTensor<float>(mem, audio.data(), audio.size(), shape.data(), 2);
  Ort::Value maskV = Ort::Value::CreateTensor<int64_t>(mem, mask.data(), mask.size(), shape.data(), 2);
  std::vector<const OrtValue*> ein = {audioV};
  if (encMask_) ein.push_back(maskV);
  std::vector<const char*> eout = {"last_hidden_state"};
  std::vector<Ort::Value> encOut = run(enc, encIn_.ptrs, ein, eout);
  const double encodeMs = msSince(t0);

  // Greedy decoding, all rows in step; a finished row keeps feeding EOS.
  t0 = Clock::now();
  std::vector<size_t> rowMax(static_cast<size_t>(B));
  size_t maxLen = 1;
  for (int64_t b = 0; b < B; ++b) {
    rowMax[b] = std::max<size_t>(1, static_cast<size_t>(std::ceil(static_cast<double>(rows[b]->size()) / kSampleRate * o.maxTokensPerSecond)));
    maxLen = std::max(maxLen, rowMax[b]);
  }
  std::vector<Transcript> res(static_cast<size_t>(B));
  std::vector<double> sumProb(static_cast<size_t>(B), 0.0);
  std::vector<int> textTokens(static_cast<size_t>(B), 0);
  std::vector<bool> done(static_cast<size_t>(B), false);
  std::vector<int64_t> ids(static_cast<size_t>(B), kStartToken);
  int64_t oneShape = 1;
  std::vector<int64_t> emptyShape{B, heads_, 0, headDim_};
  float emptyData = 0.f;

  const size_t nIn = decIn_.names.size();
  std::vector<Ort::Value> past(nIn);  // by decoder input index; null where not a past input
  std::vector<bool> isPast(nIn, false), isSelf(nIn, false);
  for (size_t i = 0; i < nIn; ++i) {
    isPast[i] = decIn_.names[i].rfind("past_key_values.", 0) == 0;
    isSelf[i] = isPast[i] && decIn_.names[i].find(".decoder.") != std::string::npos;
  }
  Ort::Value emptyKv = Ort::Value::CreateTensor<float>(mem, &emptyData, 0, emptyShape.data(), emptyShape.size());
  // What the decoder attends to, one row per decoder row (a beam search
  // replaces them with one copy per beam).
  const OrtValue* encStates = encOut[0];
  const OrtValue* decMask = maskV;

  // One decoder run over `inputIds` [B, n]: step 0 without the cache (every
  // present.* kept), later steps with it (only the self-attention part).
  int steps = 0;
  auto runDecoder = [&](std::vector<int64_t>& inputIds, int64_t n, bool useCache) {
    const int64_t rowsIn = static_cast<int64_t>(inputIds.size()) / n;
    std::vector<int64_t> idsShape{rowsIn, n};
    bool cacheFlag = useCache;
    Ort::Value idsV = Ort::Value::CreateTensor<int64_t>(mem, inputIds.data(), inputIds.size(), idsShape.data(), 2);
    Ort::Value cacheV = Ort::Value::CreateTensor<bool>(mem, &cacheFlag, 1, &oneShape, 1);
    std::vector<const OrtValue*> in(nIn, nullptr);
    for (size_t i = 0; i < nIn; ++i) {
      const std::string& nm = decIn_.names[i];
      if (isPast[i]) in[i] = useCache ? static_cast<const OrtValue*>(past[i]) : static_cast<const OrtValue*>(emptyKv);
      else if (nm == "input_ids") in[i] = idsV;
      else if (nm == "encoder_hidden_states") in[i] = encStates;
      else if (nm == "encoder_attention_mask") in[i] = decMask;
      else if (nm == "use_cache_branch") in[i] = cacheV;
      else throw std::runtime_error("unexpected Moonshine decoder input " + nm);
    }
    std::vector<Ort::Value> out = run(dec, decIn_.ptrs, in, (useCache ? decOutStep_ : decOutAll_).ptrs);
    steps++;
    const auto lshape = out[0].GetTensorTypeAndShapeInfo().GetShape();
    if (lshape.size() != 3 || lshape[0] != rowsIn || lshape[1] != n) throw std::runtime_error("unexpected Moonshine logits shape");
    // present.* → the next step's past.* (the cross-attention part only from step 0).
    const std::vector<int>& map = useCache ? stepOutToPast_ : allOutToPast_;
    for (size_t k = 1; k < out.size(); ++k) past[map[k]] = std::move(out[k]);
    return std::move(out[0]);
  };

  // Takes the greedy choice `token` of logits row `lg` as row b's next
  // token; returns whether the row is done.
  auto take = [&](int64_t b, const float* lg, int64_t V, int64_t token) -> bool {
    Transcript& r = res[b];
    const double z = softmaxSum(lg, V, token);
    if (r.tokens.empty()) r.firstEosProb = std::exp(static_cast<double>(lg[kEosToken] - lg[token])) / z;
    r.tokens.push_back(token);
    if (token == kEosToken) return done[b] = true;
    sumProb[b] += 1.0 / z;
    textTokens[b]++;
    if (o.maxRepeats > 0) {
      const size_t cut = repeatedTail(r.tokens, o.maxRepeats);
      if (cut > 0) {
        r.tokens.resize(r.tokens.size() - cut);
        r.repetitionCut = true;
        return done[b] = true;
      }
    }
    if (r.tokens.size() >= rowMax[b]) {
      r.hitMaxTokens = true;
      return done[b] = true;
    }
    return false;
  };

  if (o.beamWidth > 1) {
    if (o.maxSteps > 0) throw std::logic_error("a beam search decodes to the end (maxSteps must be 0)");
    const size_t W = static_cast<size_t>(o.beamWidth);
    struct Hyp {
      std::vector<int64_t> tokens;
      double logp = 0;     // sum of the tokens' log-probabilities
      double sumProb = 0;  // sum of the text tokens' probabilities (the confidence)
      size_t slot = 0;     // the beam it continues
      bool cut = false, maxed = false;
      double score() const { return logp / static_cast<double>(tokens.size()); }
    };
    std::vector<std::vector<Hyp>> live(static_cast<size_t>(B), std::vector<Hyp>(1)), ended(static_cast<size_t>(B));
    // Row b's beam k is decoder row b·R + k, and its greedy decode (take(),
    // as without a beam) row b·R + W; before the first expansion, row b is
    // decoder row b.
    const size_t R = W + 1;
    std::vector<int64_t> next(static_cast<size_t>(B) * R), from(next.size());
    Ort::Value encRows{nullptr}, maskRows{nullptr};
    std::vector<int64_t> inputs = ids;
    for (bool first = true;; first = false) {
      Ort::Value logits = runDecoder(inputs, 1, !first);
      const int64_t V = logits.GetTensorTypeAndShapeInfo().GetShape()[2];
      const float* lg = logits.GetTensorData<float>();
      bool any = false;
      for (int64_t b = 0; b < B; ++b) {
        const int64_t at = first ? b : b * static_cast<int64_t>(R);
        const size_t greedyRow = static_cast<size_t>(b) * R + W;
        if (!done[b]) {
          const float* row = lg + (first ? at : static_cast<int64_t>(greedyRow)) * V;
          const int64_t token = bestOf(row, V).token;
          next[greedyRow] = take(b, row, V, token) ? kEosToken : token;
        } else {
          next[greedyRow] = kEosToken;
        }
        from[greedyRow] = first ? at : static_cast<int64_t>(greedyRow);
        std::vector<Hyp>& beams = live[static_cast<size_t>(b)];
        std::vector<Hyp>& over = ended[static_cast<size_t>(b)];
        if (!beams.empty()) {
          struct Candidate {
            double logp;
            double prob;
            size_t slot;
            int64_t token;
          };
          std::vector<Candidate> cands;
          for (size_t k = 0; k < beams.size(); ++k) {
            const float* row = lg + (at + static_cast<int64_t>(k)) * V;
            const std::vector<int64_t> top = topTokens(row, V, W);  // top[0]: the largest logit
            const double logZ = std::log(softmaxSum(row, V, top[0])) + static_cast<double>(row[top[0]]);
            for (int64_t t : top) {
              const double lp = static_cast<double>(row[t]) - logZ;
              cands.push_back({beams[k].logp + lp, std::exp(lp), k, t});
            }
          }
          std::stable_sort(cands.begin(), cands.end(), [](const Candidate& x, const Candidate& y) { return x.logp > y.logp; });
          std::vector<Hyp> grown;
          for (const Candidate& c : cands) {
            if (grown.size() == W) break;
            Hyp h = beams[c.slot];
            h.tokens.push_back(c.token);
            h.logp = c.logp;
            h.slot = c.slot;
            if (c.token == kEosToken) {
              over.push_back(std::move(h));
              continue;
            }
            h.sumProb += c.prob;
            const size_t cut = o.maxRepeats > 0 ? repeatedTail(h.tokens, o.maxRepeats) : 0;
            if (cut > 0) {
              h.tokens.resize(h.tokens.size() - cut);
              h.cut = true;
              over.push_back(std::move(h));
            } else if (h.tokens.size() >= rowMax[static_cast<size_t>(b)]) {
              h.maxed = true;
              over.push_back(std::move(h));
            } else {
              grown.push_back(std::move(h));
            }
          }
          beams = std::move(grown);
          // Done when W hypotheses have ended and one of them outscores every beam still open.
          double bestEnded = -INFINITY;
          for (const Hyp& h : over) bestEnded = std::max(bestEnded, h.score());
          if (!beams.empty() && over.size() >= W && bestEnded > beams.front().score()) beams.clear();
        }
        for (size_t k = 0; k < W; ++k) {
          const size_t r = static_cast<size_t>(b) * R + k;
          // A beam with nothing to search feeds EOS, to keep the batch's shape.
          next[r] = k < beams.size() ? beams[k].tokens.back() : kEosToken;
          from[r] = at + static_cast<int64_t>(k < beams.size() ? beams[k].slot : 0);
        }
        any = any || !beams.empty() || !done[b];
      }
      if (!any) break;
      if (first) {
        // One copy per beam of what every row attends to (the cross-attention
        // cache included), then of the self-attention cache at each step.
        std::vector<int64_t> rowOf(next.size());
        for (size_t r = 0; r < rowOf.size(); ++r) rowOf[r] = static_cast<int64_t>(r / R);
        encRows = gatherRows<float>(encOut[0], rowOf);
        encStates = encRows;
        if (decMask_) {
          maskRows = gatherRows<int64_t>(maskV, rowOf);
          decMask = maskRows;
        }
        for (size_t i = 0; i < nIn; ++i)
          if (isPast[i]) past[i] = gatherRows<float>(past[i], from);
      } else {
        bool same = true;
        for (size_t r = 0; r < from.size(); ++r) same = same && from[r] == static_cast<int64_t>(r);
        if (!same)
          for (size_t i = 0; i < nIn; ++i)
            if (isSelf[i]) past[i] = gatherRows<float>(past[i], from);
      }
      inputs = next;
    }
    const double decodeMs = msSince(t0);
    for (int64_t b = 0; b < B; ++b) {
      const auto& pool = ended[static_cast<size_t>(b)];
      if (pool.empty()) throw std::logic_error("a beam search ended with no hypothesis");
      const Hyp& best = *std::max_element(pool.begin(), pool.end(), [](const Hyp& x, const Hyp& y) { return x.score() < y.score(); });
      auto greedy = std::make_shared<Transcript>(std::move(res[b]));
      greedy->meanProb = textTokens[b] ? sumProb[b] / textTokens[b] : 0.0;
      greedy->text = tokenizer_->decode(greedy->tokens);
      Transcript& r = res[b];
      r = Transcript();
      r.firstEosProb = greedy->firstEosProb;
      r.tokens = best.tokens;
      r.repetitionCut = best.cut;
      r.hitMaxTokens = best.maxed;
      const size_t text = static_cast<size_t>(std::count_if(r.tokens.begin(), r.tokens.end(), [](int64_t t) { return t != kEosToken; }));
      r.meanProb = text ? best.sumProb / static_cast<double>(text) : 0.0;
      r.beams = static_cast<int>(W);
      r.text = tokenizer_->decode(r.tokens);
      for (Transcript* t : {greedy.get(), &r}) {
        t->steps = steps;
        t->encodeMs = encodeMs;
        t->decodeMs = decodeMs;
      }
      r.greedy = std::move(greedy);
    }
    return res;
  }

  // A draft (the tokens of an earlier decode of this audio's beginning) is
  // checked in one run over all its positions; the tokens the greedy
  // decode would pick from it are kept, and the decode goes on from there.
  // Only where positions are computed independently (no activation scale
  // shared across them), and only picks clear by kDraftMargin of the
  // runner-up, so rounding differences between that run and single steps
  // cannot change a token; a later step that is not clear starts over
  // without the draft.
  bool drafted = false;
  size_t draftAccepted = 0;
  const size_t draftLen = draft && B == 1 && takesDrafts() ? std::min(draft->size(), rowMax[0] - 1) : 0;
  if (draftLen > 0) {
    std::vector<int64_t> in{kStartToken};
    in.insert(in.end(), draft->begin(), draft->begin() + static_cast<std::ptrdiff_t>(draftLen));
    const int64_t n = static_cast<int64_t>(in.size());
    Ort::Value logits = runDecoder(in, n, false);
    const int64_t V = logits.GetTensorTypeAndShapeInfo().GetShape()[2];
    const float* lg = logits.GetTensorData<float>();
    // Position j's logits follow the start token and draft[0, j). The
    // greedy choice is kept while it is clear; the first that differs from
    // the draft (or follows its end) is kept too, and ends the run's share.
    for (size_t j = 0; j <= draftLen; ++j) {
      const float* row = lg + static_cast<int64_t>(j) * V;
      const Best best = bestOf(row, V);
      if (best.gap < kDraftMargin) break;
      const bool asDrafted = j < draftLen && best.token == (*draft)[j];
      if (take(0, row, V, best.token) || !asDrafted) break;
    }
    draftAccepted = res[0].tokens.size();
    if (!done[0] && draftAccepted == 0) {
      // Not even the first token is clear: decode as if there were no draft.
      res[0] = Transcript();
      sumProb[0] = 0;
      textTokens[0] = 0;
    } else {
      drafted = true;
      // Keep the cache of the positions whose inputs are kept tokens: the
      // start token and every kept token but the last, which is the next input.
      const int64_t keep = static_cast<int64_t>(res[0].tokens.size());
      if (!done[0] && keep < n)
        for (size_t i = 0; i < nIn; ++i)
          if (isSelf[i]) past[i] = firstPositions(past[i], keep);
      ids[0] = res[0].tokens.back();
    }
  }

  bool useCache = drafted;
  bool redo = false;
  bool limited = false;
  const int firstStep = steps;  // the draft's run, if any, is not a step of the budget
  for (size_t step = drafted ? res[0].tokens.size() : 0; step < maxLen; ++step) {
    if (std::all_of(done.begin(), done.end(), [](bool d) { return d; })) break;
    if (o.maxSteps > 0 && steps - firstStep >= o.maxSteps) {
      limited = true;
      break;
    }
    Ort::Value logits = runDecoder(ids, 1, useCache);
    useCache = true;
    const int64_t V = logits.GetTensorTypeAndShapeInfo().GetShape()[2];
    const float* lg = logits.GetTensorData<float>();
    for (int64_t b = 0; b < B; ++b) {
      if (done[b]) {
        ids[b] = kEosToken;
        continue;
      }
      const float* row = lg + b * V;
      const Best best = bestOf(row, V);
      if (drafted && best.gap < kDraftMargin) {
        redo = true;
        break;
      }
      ids[b] = take(b, row, V, best.token) ? kEosToken : best.token;
    }
    if (redo) break;
  }
  if (redo) {
    // A pick too close to call after the draft's run: greedy from the start.
    std::vector<Transcript> again = transcribe(rows, o, nullptr);
    again[0].encodeMs += encodeMs;
    again[0].decodeMs += msSince(t0);
    again[0].draftTokens = draftLen;
    again[0].draftRedone = true;
    return again;
  }
  const double decodeMs = msSince(t0);
  for (int64_t b = 0; b < B; ++b) {
    Transcript& r = res[b];
    r.steps = steps;
    r.encodeMs = encodeMs;
    r.decodeMs = decodeMs;
    r.draftTokens = draftLen;
    r.draftAccepted = draftAccepted;
    r.stepLimited = limited && !done[b];
    r.meanProb = textTokens[b] ? sumProb[b] / textTokens[b] : 0.0;
    r.text = tokenizer_->decode(r.tokens);
  }
  return res;
}

}  // namespace captiongate::moonshine
