// PocketSphinx as a recognizer of the engine base.
//
// Every stream runs its own VAD (tens of KB); decoders (about 91 MB each)
// are a fixed pool that a stream holds only from speech onset to endpoint.
// When none is free the stream parks at the onset: its window reports
// `consumed` = the samples before the onset and `waiting`, the caller keeps
// the rest. Parked streams form a FIFO; a released decoder is reserved for
// its head, and Host::streamReady tells the caller to resubmit. A stream's
// cepstral mean travels with the stream (restored into whichever decoder it
// gets), so results do not depend on which decoder decoded them.
//
// Fair decoders (holdSamples). While any stream waits, a holder whose
// utterance has run holdSamples ends it at the next frame the VAD's raw
// decision calls non-speech (a pause between words), or after
// handoverSearchSamples more if none comes; emits that final; and hands its
// decoder to the head of the waiters, as a release does. If it is still in
// speech it goes on as a new utterance starting exactly at the cut (no
// pre-roll: no sample is decoded twice or skipped), so it must get back in
// line: it parks at the cut unless a decoder is free. While nobody waits,
// nothing changes.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <vector>

#include "../audio/vad.h"
#include "../base/recognizer.h"
#include "ps_decoder.h"

namespace captiongate {

struct PsSettings {
  SearchSettings search;
  VadSettings vad;
  int threads = 2;                       // base workers calling decode()
  int decoders = 4;                      // pooled PocketSphinx decoders
  int prerollSamples = 4800;             // audio fed before the VAD trigger
  int maxUtteranceSamples = 16000 * 30;  // forced endpoint for run-on speech
  // Fair decoders: with others waiting, hand the decoder on once an
  // utterance has run this long (0: never; utterances then end only at the
  // VAD endpoint, maxUtteranceSamples or a flush).
  int holdSamples = 0;
  int handoverSearchSamples = 4800;  // how long to look for a pause first
  bool wordConfidence = true;
  // false: no speech detection; an utterance runs from the first sample to
  // each flush (push-to-talk clients, and whole-file reference decoding).
  bool vadEnabled = true;
};

class PsRecognizer : public Recognizer {
 public:
  explicit PsRecognizer(PsSettings settings);
  ~PsRecognizer() override;

  // Creates the decoder pool: about 0.3 s per decoder.
  void load(RecognizerHost& host) override;
  int workers() const override { return settings_.threads; }
  // One stream per call: a PocketSphinx decode is sequential per stream, so
  // giving a worker several would leave the other workers idle.
  size_t maxStreamsPerDecode() const override { return 1; }
  std::unique_ptr<RecognizerStream> createStream(uint32_t stream, const StreamOptions& options) override;
  void decode(const std::vector<DecodeJob>& jobs) override;
  void closeStream(RecognizerStream& state, uint32_t stream) noexcept override;
  RecognizerStats stats() const override;
  void release() noexcept override;
  // Utterances ended to hand a decoder on (tests and benches).
  uint64_t handovers() const;

 private:
  struct Stream;
  using Clock = std::chrono::steady_clock;
  void processWindow(Stream& s, const WindowIn& w, WindowOut& out);
  bool acquireDecoder(Stream& s);                // takes poolMu_
  void releaseDecoder(Stream& s);                // takes poolMu_
  void giveBack(PsDecoder* d);                   // takes poolMu_; the next waiter gets it
  void endUtterance(Stream& s, WindowOut& out);
  bool handOverNow(Stream& s);
  void countDecoded(uint64_t samples);

  const PsSettings settings_;
  // Set once by load(), then only read (decoders_ is freed by release()).
  RecognizerHost* host_ = nullptr;
  std::vector<std::unique_ptr<PsDecoder>> decoders_;
  CmnState initialCmn_;

  mutable std::mutex poolMu_;
  int decoderCount_ = 0;
  std::vector<PsDecoder*> free_;
  std::deque<Stream*> waiters_;
  std::atomic<int> waiterCount_{0};  // waiters_.size(), read without poolMu_ per frame
  uint64_t handovers_ = 0;
  uint64_t decoderWaits_ = 0;
  double decoderWaitMsTotal_ = 0;
  uint64_t samplesDecoded_ = 0;
};

}  // namespace captiongate
