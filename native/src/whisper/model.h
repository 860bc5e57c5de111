// Whisper base, in float32, on a Device. The encoder runs B windows from
// different sessions as one batch (every linear layer is one GEMM with
// M = B × frames); the greedy decoder steps all B sequences together with a
// per-sequence KV cache, so each weight read serves the whole batch.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "ct2_model.h"
#include "device.h"
#include "mel.h"
#include "tokenizer.h"

namespace captiongate::whisper {

constexpr int kDModel = 512;
constexpr int kHeads = 8;
constexpr int kLayers = 6;
constexpr int kFfn = 2048;
constexpr int kVocab = 51865;
constexpr int kTextCtx = 448;
constexpr int kAudioCtx = 1500;

struct DecodeOptions {
  int maxTokens = 224;          // sampled tokens per window (Whisper: n_text_ctx / 2)
  float maxInitialTimestamp = 1.0f;
  // Repetition guard: an n-gram (n <= 16 tokens) repeated this many times
  // in a row (and over at least 16 tokens) ends decoding; the repeats are cut.
  int maxRepeats = 4;
};

struct Segment {
  float start = 0, end = 0;  // seconds from the window start
  std::vector<int> tokens;   // text tokens
  std::string text;
};

struct DecodeResult {
  std::vector<int> tokens;  // everything sampled after the prompt
  std::vector<Segment> segments;
  std::string text;
  float noSpeechProb = 0;
  float avgLogprob = 0;
  bool repetitionCut = false;
};

struct Weights;

class WhisperModel {
 public:
  // dir holds model.bin and vocabulary.txt. Throws with a clear message.
  WhisperModel(const std::string& dir, std::unique_ptr<Device> device);
  ~WhisperModel();

  const Tokenizer& tokenizer() const { return *tokenizer_; }
  const LogMel& logMel() const { return mel_; }
  Device& device() { return *device_; }

  // Encoder. mels: B pointers to [80][frames] (frames even, <= 3000).
  // out: [B][frames / 2][512].
  void encode(const std::vector<const float*>& mels, int frames, std::vector<float>* out);

  // Greedy decoding with timestamps of B encoded windows ([B][ctx][512]).
  std::vector<DecodeResult> decode(const float* enc, int B, int ctx, const DecodeOptions& opts);

  size_t weightBytes() const;

 private:
  std::unique_ptr<Device> device_;
  std::unique_ptr<Ct2Model> file_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<Weights> w_;
  LogMel mel_;
};

// The repetition guard: how many trailing tokens are extra copies of a
// repeated n-gram (0 if the tail is not a loop).
size_t repeatedTail(const std::vector<int>& tokens, int repeats);

// Cosine similarity of two equally long vectors (self-test and tests).
double cosineSimilarity(const float* a, const float* b, size_t n);

}  // namespace captiongate::whisper
