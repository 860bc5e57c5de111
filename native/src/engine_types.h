// Windows in, results out: the types every streaming backend shares.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ps_decoder.h"  // Word, Utterance

namespace captiongate {

enum class ErrorCode : int {
  kNone = 0,
  kDecodeFailed = 1,   // the decoder reported an error for this window
  kStreamClosed = 2,   // window arrived for a stream that was closed
  kShutdown = 3,       // engine shut down before the window ran
  kBadWindow = 4,      // window does not continue the stream
};

struct WindowIn {
  uint32_t stream = 0;
  int64_t start = 0;  // stream sample position of pcm[0]
  std::vector<int16_t> pcm;
  bool flush = false;  // end the open utterance after this window
};

struct WindowOut {
  uint32_t stream = 0;
  uint32_t consumed = 0;       // samples of this window the engine took
  bool hasPartial = false;
  std::string partial;
  int64_t partialStart = 0;
  int64_t partialEnd = 0;
  std::vector<Utterance> finals;
  bool inSpeech = false;       // an utterance is open after this window
  bool endpoint = false;       // an utterance ended in this window
  bool waiting = false;        // parked: no decoder free
  bool flushed = false;        // the flush request was carried out
  double decoderWaitMs = 0;    // wait that ended in this window
  int64_t position = 0;        // stream position after this window
  ErrorCode error = ErrorCode::kNone;
  std::string errorMessage;
};

struct Batch {
  uint64_t id = 0;
  std::vector<WindowIn> in;
  std::vector<WindowOut> out;
  size_t remaining = 0;  // guarded by Engine::mu_
};

struct EngineStats {
  int decoders = 0;
  int decodersInUse = 0;   // held or reserved by a stream
  int streams = 0;
  int streamsWaiting = 0;  // parked for a decoder
  uint64_t windowsProcessed = 0;
  uint64_t samplesProcessed = 0;
  uint64_t samplesDecoded = 0;  // fed to a decoder (speech + margins)
  uint64_t decoderWaits = 0;
  double decoderWaitMsTotal = 0;
  uint64_t queuedWindows = 0;
  double busyMs = 0;  // wall time workers spent processing windows
  double modelBytes = 0;  // model memory held by the engine (all decoders or weights)
};

}  // namespace captiongate
