// Moonshine (tiny or base, English) on ONNX Runtime: the immutable context.
//
// Loaded once: the encoder and the merged decoder (one graph with and without
// the KV cache, chosen by its use_cache_branch input) as ORT sessions, and
// the tokenizer. ORT sessions may be Run from several threads at once, so
// transcribe() is const and keeps all of its state (encoder output, KV cache,
// tokens) on its own stack: any number of engine threads may call it.
//
// The two exports differ (docs/moonshine.md):
//   tiny: encoder(input_values, attention_mask), decoder takes
//         encoder_attention_mask; weights and activations int8 (dynamic
//         quantization, one scale per tensor);
//   base: encoder(input_values) only, no mask in the decoder; int8 weights
//         expanded to float at run time (weight-only quantization).
// Because tiny quantizes each activation tensor with one scale, a row's
// tokens depend on the other rows of its batch; base rows of equal length are
// computed independently (rowsIndependent()).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ort.h"
#include "tokenizer.h"

namespace captiongate::moonshine {

struct ModelSettings {
  std::string dir;          // encoder_model.ort, decoder_model_merged.ort, tokenizer.bin
  std::string ortLibrary;   // path of libonnxruntime.so.1
  int intraOpThreads = 1;   // ORT threads inside one Run
  // Write the ORT-format model back out as ONNX and load that, so ORT's graph
  // optimizations (constant folding) run: base's weight dequantization then
  // happens once at load instead of on every decoder step.
  bool foldWeights = false;
};

struct DecodeOptions {
  float maxTokensPerSecond = 6.5f;  // moonshine_voice's limit: ceil(seconds × 6.5) tokens
  int maxRepeats = 4;               // repetition guard (repeatedTail); 0 = off
  // Decoder steps after the draft's run (0: until EOS or the token limit).
  // A decode stopped by it gives the first tokens of the full greedy decode
  // (Transcript::stepLimited), and those make the next decode's draft.
  int maxSteps = 0;
  // Hypotheses kept per row (1: greedy, the upstream runtime's decode).
  // Wider, the decode is a beam search (scores: the sum of the tokens'
  // log-probabilities over the length), with the greedy decode beside it
  // (Transcript::greedy); a row's beams and greedy decode are rows of one
  // decoder batch, so tiny's (one activation scale per tensor) depend on
  // each other, and on nothing else. No draft; maxSteps must be 0.
  int beamWidth = 1;
};

struct Transcript {
  std::vector<int64_t> tokens;  // generated tokens (not the start token), EOS included when reached
  std::string text;
  double meanProb = 0;       // mean probability of the text tokens (softmax of the chosen logit), 0 if none
  double firstEosProb = 0;   // probability of ending at once (EOS at the first step)
  bool repetitionCut = false;
  bool hitMaxTokens = false;
  int steps = 0;             // decoder runs
  double encodeMs = 0;       // wall time of the batch's encoder run
  double decodeMs = 0;       // wall time of the batch's decoder loop
  size_t draftTokens = 0;    // draft tokens offered (0: decoded without a draft)
  size_t draftAccepted = 0;  // tokens taken from the draft's run (its correction included)
  bool draftRedone = false;  // a later pick was too close to call: decoded again without the draft
  bool stepLimited = false;  // stopped by DecodeOptions::maxSteps: the tokens are a prefix
  int beams = 1;             // DecodeOptions::beamWidth of the decode
  // A beam search's rows also run the greedy decode, one more decoder row
  // per row: its transcript (null without a beam). Where rows share
  // activation scales (tiny) it may differ from a greedy decode alone.
  std::shared_ptr<const Transcript> greedy;
};

// How many trailing tokens are a repetition loop: the tail is one n-gram
// (n ≤ 16) repeated `repeats` times over at least 16 tokens; returns the
// number of tokens to drop to keep one copy (0: no loop). The same rule as
// the Whisper engine's guard.
size_t repeatedTail(const std::vector<int64_t>& tokens, int repeats);

class Model {
 public:
  static constexpr int64_t kStartToken = 1;
  static constexpr int64_t kEosToken = 2;
  static constexpr int kSampleRate = 16000;
  // Shorter rows are padded with silence (tiny's convolutions need about 900 samples).
  static constexpr size_t kMinSamples = 1600;

  // Loads everything; throws std::runtime_error (Ort::Exception included,
  // which is a std::exception) with a message naming the file.
  explicit Model(const ModelSettings& settings);
  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  // Draft picks must beat the runner-up logit by this much (see transcribe).
  static constexpr float kDraftMargin = 0.05f;

  // One batch of rows (16 kHz float audio). Rows of different lengths are
  // padded and masked (only a model that takes a mask: tiny); equal lengths
  // run unpadded. Results come in row order.
  //
  // `draft`: tokens expected to begin the transcript (an earlier decode of
  // the start of the same audio, without EOS). Used for one row where
  // takesDrafts(); the result is the greedy decode's all the same, only
  // cheaper when the draft is right: its positions run as one decoder run.
  std::vector<Transcript> transcribe(const std::vector<const std::vector<float>*>& rows, const DecodeOptions& o,
                                     const std::vector<int64_t>* draft = nullptr) const;
  Transcript transcribe(const std::vector<float>& audio, const DecodeOptions& o, const std::vector<int64_t>* draft = nullptr) const;

  bool takesMask() const { return encMask_; }
  // Equal-length rows of one batch get the results of single runs, and the
  // decoder's positions in one run are computed as single steps would be
  // (no activation scale shared across rows or positions: base).
  bool rowsIndependent() const { return !encMask_; }
  // Whether transcribe() uses a draft: only where positions are independent.
  bool takesDrafts() const { return rowsIndependent(); }
  const Tokenizer& tokenizer() const { return *tokenizer_; }
  const std::string& ortVersion() const { return ortVersion_; }
  // Bytes of the model files (the weights as shipped).
  double fileBytes() const { return fileBytes_; }
  int layers() const { return layers_; }
  int hidden() const { return hidden_; }

 private:
  struct IoNames {
    std::vector<std::string> names;
    std::vector<const char*> ptrs;
    void set(std::vector<std::string> n);
  };
  Ort::Session open(const std::string& file, const ModelSettings& s, bool fold);

  std::string ortVersion_;
  std::unique_ptr<Ort::Env> env_;
  Ort::SessionOptions options_{nullptr};
  Ort::Session encoder_{nullptr};
  Ort::Session decoder_{nullptr};
  std::unique_ptr<Tokenizer> tokenizer_;
  Ort::MemoryInfo cpu_{nullptr};
  bool encMask_ = false;
  bool decMask_ = false;
  int layers_ = 0, heads_ = 0, headDim_ = 0, hidden_ = 0;
  IoNames encIn_;
  IoNames decIn_;
  IoNames decOutAll_;   // step 0: logits and every present.*
  IoNames decOutStep_;  // later steps: logits and present.*.decoder.* (the cross-attention KV is fixed)
  std::vector<int> stepOutToPast_;  // decOutStep_[k] (k ≥ 1) → decIn_ index of its past
  std::vector<int> allOutToPast_;   // decOutAll_[k] (k ≥ 1) → decIn_ index of its past
  double fileBytes_ = 0;
};

}  // namespace captiongate::moonshine
