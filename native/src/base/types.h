// Windows in, results out: the types every recognizer and the engine base
// share. Free of N-API and of any recognizer library.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace captiongate {

struct Word {
  std::string text;
  int32_t startFrame = 0;  // 10 ms frames from the utterance start
  int32_t endFrame = 0;    // inclusive
  float confidence = 0.f;  // posterior in [0, 1]
};

struct Utterance {
  std::string text;         // may be empty: the utterance decoded to nothing
  int64_t startSample = 0;  // stream sample position (16 kHz)
  int64_t endSample = 0;
  std::vector<Word> words;
};

enum class ErrorCode : int {
  kNone = 0,
  kDecodeFailed = 1,  // the recognizer failed (or threw) on this window
  kStreamClosed = 2,  // the stream was closed before the window ran
  kShutdown = 3,      // the engine shut down before the window ran
  kBadWindow = 4,     // the window does not start where the stream's consumption stands
};

// Per-stream settings, given at openStream (engine contract: StreamOptions).
struct StreamOptions {
  // Endpoint silence in 10 ms frames: this many non-speech frames after speech
  // end the utterance. 0: the engine's configured value (vadEndFrames);
  // kNoEndpoint: never (finals only on a flush or at the longest utterance).
  static constexpr int kNoEndpoint = -1;
  int endpointFrames = 0;
};

struct WindowIn {
  uint32_t stream = 0;
  int64_t start = 0;  // stream sample position of pcm[0]; must equal the stream's consumption
  std::vector<int16_t> pcm;
  bool flush = false;  // end the open utterance after this window
};

struct WindowOut {
  uint32_t stream = 0;
  // Samples from pcm[0] the recognizer took: all of them unless `waiting`.
  uint32_t consumed = 0;
  bool hasPartial = false;
  std::string partial;
  int64_t partialStart = 0;
  int64_t partialEnd = 0;
  // Utterances that ended in this window, in time order, possibly with empty
  // text. Every utterance a recognizer opens ends with exactly one final.
  std::vector<Utterance> finals;
  bool waiting = false;      // parked: resubmit the rest after Host::streamReady
  bool flushed = false;      // the flush request was carried out
  double decoderWaitMs = 0;  // decoder wait that ended in this window
  ErrorCode error = ErrorCode::kNone;
  std::string errorMessage;
};

// One JS submit() call: it completes when all its windows are done.
struct Batch {
  uint64_t id = 0;
  std::vector<WindowIn> in;
  std::vector<WindowOut> out;
  size_t remaining = 0;  // windows not yet done; guarded by EngineBase
};

// Counters a recognizer reports (EngineBase adds its own to make EngineStats).
struct RecognizerStats {
  int decoders = 0;
  int decodersInUse = 0;   // held or reserved by a stream (Whisper: streams inside an utterance)
  int streamsWaiting = 0;  // parked for a decoder
  uint64_t decoderWaits = 0;
  double decoderWaitMsTotal = 0;
  uint64_t samplesDecoded = 0;  // audio that reached the model (speech + margins)
  double modelBytes = 0;        // model memory held (weights, all decoders)
};

struct EngineStats {
  int decoders = 0;
  int decodersInUse = 0;
  int streams = 0;
  int streamsWaiting = 0;
  uint64_t windowsProcessed = 0;
  uint64_t samplesProcessed = 0;  // sum of `consumed`
  uint64_t samplesDecoded = 0;
  uint64_t decoderWaits = 0;
  double decoderWaitMsTotal = 0;
  uint64_t queuedWindows = 0;
  double busyMs = 0;  // wall time workers spent inside Recognizer::decode
  double modelBytes = 0;
};

}  // namespace captiongate
