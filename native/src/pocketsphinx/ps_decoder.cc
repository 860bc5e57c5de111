#include "ps_decoder.h"

#include <pocketsphinx.h>
#include <ps_search.h>
#include <sphinxbase/cmn.h>
#include <sphinxbase/feat.h>

#include <cmath>
#include <cstdio>
#include <cstring>

namespace captiongate {

namespace {

std::string fmt(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

// PocketSphinx marks alternate pronunciations as "word(2)".
std::string baseWord(const char* w) {
  const char* paren = std::strchr(w, '(');
  return paren ? std::string(w, paren - w) : std::string(w);
}

bool isFiller(const char* w) {
  // <s>, </s>, <sil>, [NOISE], [SPEECH], ++GARBAGE++ ...
  return w[0] == '<' || w[0] == '[' || (w[0] == '+' && w[1] == '+');
}

}  // namespace

std::unique_ptr<PsDecoder> PsDecoder::Create(const SearchSettings& s, std::string* error) {
  // Build argv-style pairs; cmd_ln_parse_r validates every key against
  // ps_args() and fails on unknown ones, which is what we want for "extra".
  std::vector<std::string> args = {
      "-hmm", s.hmm, "-lm", s.lm, "-dict", s.dict,
      "-samprate", "16000",
      "-fwdflat", s.fwdflat ? "yes" : "no",
      "-bestpath", s.bestpath ? "yes" : "no",
      "-beam", fmt(s.beam), "-wbeam", fmt(s.wbeam), "-pbeam", fmt(s.pbeam),
      "-lw", fmt(s.lw),
      "-maxhmmpf", std::to_string(s.maxhmmpf), "-maxwpf", std::to_string(s.maxwpf),
      "-pl_window", std::to_string(s.plWindow),
      // Segmentation is the stream's job (per-stream VAD); the decoder sees
      // exactly the audio of one utterance and keeps real time in frames.
      "-remove_silence", "no",
      "-remove_noise", s.removeNoise ? "yes" : "no",
  };
  for (const auto& kv : s.extra) {
    args.push_back(kv.first);
    args.push_back(kv.second);
  }
  std::vector<char*> argv;
  argv.push_back(const_cast<char*>("captiongate"));
  for (auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));

  cmd_ln_t* config = cmd_ln_parse_r(nullptr, ps_args(), static_cast<int32>(argv.size()), argv.data(), TRUE);
  if (!config) {
    *error = "invalid PocketSphinx search settings (an unknown or malformed option)";
    return nullptr;
  }
  ps_decoder_t* ps = ps_init(config);
  cmd_ln_free_r(config);  // ps_init retains what it needs
  if (!ps) {
    *error = "PocketSphinx failed to load the model (hmm=" + s.hmm + ", lm=" + s.lm + ", dict=" + s.dict + ")";
    return nullptr;
  }
  std::unique_ptr<PsDecoder> d(new PsDecoder());
  d->ps_ = ps;
  d->cmnUpdateSamples_ = s.cmnUpdateSamples;
  // The one search (the LM's). Looked up once, with an iterator we free:
  // ps_get_search() leaks its hash iterator on every call in Debian's
  // pocketsphinx 5prealpha (24 bytes per utterance; LeakSanitizer in native/test).
  if (ps_search_iter_t* it = ps_search_iter(ps)) {
    if (const char* name = ps_search_iter_val(it)) d->searchName_ = name;
    ps_search_iter_free(it);
  }
  d->saveCmn(&d->initialCmn_);
  return d;
}

PsDecoder::~PsDecoder() {
  if (ps_) ps_free(ps_);
}

void PsDecoder::saveCmn(CmnState* out) const {
  cmn_t* c = ps_get_feat(ps_)->cmn_struct;
  out->mean.assign(c->cmn_mean, c->cmn_mean + c->veclen);
  out->sum.assign(c->sum, c->sum + c->veclen);
  out->nframe = c->nframe;
}

void PsDecoder::restoreCmn(const CmnState& in) {
  cmn_t* c = ps_get_feat(ps_)->cmn_struct;
  if (static_cast<int32>(in.mean.size()) != c->veclen) return;
  std::memcpy(c->cmn_mean, in.mean.data(), sizeof(mfcc_t) * c->veclen);
  std::memcpy(c->sum, in.sum.data(), sizeof(mfcc_t) * c->veclen);
  c->nframe = in.nframe;
}

bool PsDecoder::startUtterance(const CmnState& cmn, std::string* error) {
  if (inUtt_) abortUtterance();
  // start_stream resets the front end's noise estimate and the frame counter,
  // so word frames are relative to this utterance and no other stream's audio
  // influences it.
  ps_start_stream(ps_);
  if (ps_start_utt(ps_) < 0) {
    *error = "ps_start_utt failed";
    return false;
  }
  restoreCmn(cmn.valid() ? cmn : initialCmn_);
  inUtt_ = true;
  fedInUtt_ = 0;
  return true;
}

bool PsDecoder::process(const int16_t* pcm, size_t n, std::string* error) {
  // Feed in pieces that end on CMN-update boundaries (counted from the
  // utterance start), so results do not depend on how callers chunk audio.
  while (n > 0) {
    size_t take = n;
    if (cmnUpdateSamples_ > 0) {
      const int64_t toBoundary = cmnUpdateSamples_ - (fedInUtt_ % cmnUpdateSamples_);
      if (static_cast<int64_t>(take) > toBoundary) take = static_cast<size_t>(toBoundary);
    }
    if (ps_process_raw(ps_, pcm, take, FALSE, FALSE) < 0) {
      *error = "ps_process_raw failed";
      return false;
    }
    fedInUtt_ += static_cast<int64_t>(take);
    pcm += take;
    n -= take;
    if (cmnUpdateSamples_ > 0 && fedInUtt_ % cmnUpdateSamples_ == 0) {
      cmn_t* c = ps_get_feat(ps_)->cmn_struct;
      cmn_live_update(c);
      // Decay the accumulator here, on our fixed schedule, before sphinxbase's
      // cmn_live() would at an arbitrary block end (nframe > CMN_WIN_HWM):
      // that keeps results independent of how callers chunk the audio.
      if (c->nframe > CMN_WIN_HWM - 40) {
        const mfcc_t sf = static_cast<mfcc_t>(CMN_WIN) / static_cast<mfcc_t>(c->nframe);
        for (int32 i = 0; i < c->veclen; ++i) c->sum[i] *= sf;
        c->nframe = CMN_WIN;
      }
    }
  }
  return true;
}

std::string PsDecoder::partial() {
  int32 score = 0;
  const char* hyp = ps_get_hyp(ps_, &score);
  return hyp ? std::string(hyp) : std::string();
}

bool PsDecoder::endUtterance(bool wantConfidence, Utterance* out, CmnState* cmnOut, std::string* error) {
  inUtt_ = false;
  if (ps_end_utt(ps_) < 0) {
    *error = "ps_end_utt failed";
    return false;
  }
  saveCmn(cmnOut);

  out->words.clear();
  for (ps_seg_t* seg = ps_seg_iter(ps_); seg; seg = ps_seg_next(seg)) {
    const char* w = ps_seg_word(seg);
    if (!w || isFiller(w)) continue;
    int sf = 0, ef = 0;
    ps_seg_frames(seg, &sf, &ef);
    Word word;
    word.text = baseWord(w);
    word.startFrame = sf;
    word.endFrame = ef;
    word.confidence = 1.f;
    out->words.push_back(std::move(word));
  }
  out->text.clear();
  for (const auto& w : out->words) {
    if (!out->text.empty()) out->text += ' ';
    out->text += w.text;
  }

  if (wantConfidence && !out->words.empty()) {
    // Word posterior = sum of the posteriors of the lattice links that carry
    // the same word across the word's midpoint (a time-based confusion
    // estimate). Posteriors need a forward pass, which bestpath provides.
    ps_lattice_t* dag = ps_get_lattice(ps_);
    ngram_model_t* lm = ps_get_lm(ps_, searchName_.c_str());
    if (dag && lm) {
      cmd_ln_t* cfg = ps_get_config(ps_);
      float32 ascale = 1.0f / static_cast<float32>(cmd_ln_float_r(cfg, "-ascale"));
      float32 lwf = static_cast<float32>(cmd_ln_float_r(cfg, "-bestpathlw"));
      ps_lattice_bestpath(dag, lm, lwf, ascale);
      ps_lattice_posterior(dag, lm, ascale);
      logmath_t* lmath = ps_lattice_get_logmath(dag);
      std::vector<double> conf(out->words.size(), 0.0);
      for (ps_latnode_iter_t* it = ps_latnode_iter(dag); it; it = ps_latnode_iter_next(it)) {
        ps_latnode_t* node = ps_latnode_iter_node(it);
        for (ps_latlink_iter_t* li = ps_latnode_exits(node); li; li = ps_latlink_iter_next(li)) {
          ps_latlink_t* link = ps_latlink_iter_link(li);
          int16 lsf = 0;
          int lef = ps_latlink_times(link, &lsf);
          const char* lw = ps_latlink_baseword(dag, link);
          if (!lw) continue;
          for (size_t i = 0; i < out->words.size(); ++i) {
            const Word& w = out->words[i];
            int mid = (w.startFrame + w.endFrame) / 2;
            if (lsf <= mid && lef >= mid && w.text == lw) {
              int32 ascr = 0;
              conf[i] += logmath_exp(lmath, ps_latlink_prob(dag, link, &ascr));
            }
          }
        }
      }
      for (size_t i = 0; i < out->words.size(); ++i) {
        double c = conf[i];
        out->words[i].confidence = static_cast<float>(c > 1.0 ? 1.0 : (c < 0.0 ? 0.0 : c));
      }
    }
  }
  (void)error;
  return true;
}

void PsDecoder::abortUtterance() {
  if (!inUtt_) return;
  inUtt_ = false;
  ps_end_utt(ps_);
}

}  // namespace captiongate
