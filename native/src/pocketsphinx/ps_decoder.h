// One PocketSphinx decoder: the expensive, poolable part of the engine
// (acoustic model + dictionary + LM, about 91 MB). It carries no stream
// identity: every per-stream state it has (cepstral mean) is saved and
// restored around each utterance, so any stream can use any decoder and the
// result does not depend on which one it got.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "../base/types.h"  // Word, Utterance

struct ps_decoder_s;

namespace captiongate {

struct SearchSettings {
  std::string hmm;
  std::string lm;
  std::string dict;
  bool fwdflat = false;
  bool bestpath = false;
  double beam = 1e-48;
  double wbeam = 7e-29;
  double pbeam = 1e-48;
  double lw = 6.5;
  int maxhmmpf = 30000;
  int maxwpf = -1;
  int plWindow = 5;
  bool removeNoise = true;
  // Update the live cepstral mean every this many samples of decoder input
  // (0 = only at utterance end, PocketSphinx's default). Fresh streams start
  // from the model's cmninit, which is far from most real microphones; the
  // stock live CMN moves only every 8 s, so the first utterance suffers.
  int cmnUpdateSamples = 1600;
  // Extra raw "-key value" pairs for experiments (bench/engine-tune).
  std::vector<std::pair<std::string, std::string>> extra;
};

// Live cepstral-mean state. PocketSphinx carries it across utterances; we
// carry it per stream instead of per decoder.
struct CmnState {
  std::vector<float> mean;
  std::vector<float> sum;
  int32_t nframe = 0;
  bool valid() const { return !mean.empty(); }
};

class PsDecoder {
 public:
  // Returns nullptr and fills *error on failure (missing model, bad args).
  static std::unique_ptr<PsDecoder> Create(const SearchSettings& s, std::string* error);
  ~PsDecoder();
  PsDecoder(const PsDecoder&) = delete;
  PsDecoder& operator=(const PsDecoder&) = delete;

  // The model's initial CMN (from feat.params -cmninit) for new streams.
  const CmnState& initialCmn() const { return initialCmn_; }

  bool startUtterance(const CmnState& cmn, std::string* error);
  bool process(const int16_t* pcm, size_t n, std::string* error);
  // Current best hypothesis of the open utterance (may be empty).
  std::string partial();
  // Ends the utterance. Fills words (fillers removed) and the final text, and
  // saves the updated CMN into *cmnOut.
  bool endUtterance(bool wantConfidence, Utterance* out, CmnState* cmnOut, std::string* error);
  // Ends the utterance and throws the result away (stream closed mid-speech).
  void abortUtterance();
  bool inUtterance() const { return inUtt_; }

 private:
  PsDecoder() = default;
  void saveCmn(CmnState* out) const;
  void restoreCmn(const CmnState& in);

  ps_decoder_s* ps_ = nullptr;
  CmnState initialCmn_;
  bool inUtt_ = false;
  int cmnUpdateSamples_ = 0;
  std::string searchName_;  // the LM search, for word confidences
  int64_t fedInUtt_ = 0;
};

}  // namespace captiongate
