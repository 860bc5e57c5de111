#include "mel.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>

namespace captiongate::whisper {

namespace {

constexpr int kBins = kNFft / 2 + 1;  // 201

// Slaney mel scale (librosa default, htk=False).
double hzToMel(double f) {
  const double fsp = 200.0 / 3;
  const double minLogHz = 1000.0, minLogMel = minLogHz / fsp, logstep = std::log(6.4) / 27.0;
  return f >= minLogHz ? minLogMel + std::log(f / minLogHz) / logstep : f / fsp;
}
double melToHz(double m) {
  const double fsp = 200.0 / 3;
  const double minLogHz = 1000.0, minLogMel = minLogHz / fsp, logstep = std::log(6.4) / 27.0;
  return m >= minLogMel ? minLogHz * std::exp(logstep * (m - minLogMel)) : fsp * m;
}

}  // namespace

LogMel::LogMel() : window_(kNFft), cosT_(kBins * kNFft), sinT_(kBins * kNFft), filters_(kMels * kBins, 0.0f) {
  for (int i = 0; i < kNFft; i++) window_[i] = static_cast<float>(0.5 - 0.5 * std::cos(2 * M_PI * i / kNFft));
  // The DFT as two matrices with the window folded in: a frame's spectrum is
  // then one GEMM over all frames at once.
  for (int k = 0; k < kBins; k++) {
    for (int n = 0; n < kNFft; n++) {
      const double a = 2 * M_PI * static_cast<double>((static_cast<int64_t>(k) * n) % kNFft) / kNFft;
      cosT_[k * kNFft + n] = static_cast<float>(std::cos(a) * window_[n]);
      sinT_[k * kNFft + n] = static_cast<float>(std::sin(a) * window_[n]);
    }
  }
  // librosa.filters.mel(sr=16000, n_fft=400, n_mels=80), norm='slaney'.
  std::vector<double> melF(kMels + 2);
  const double lo = hzToMel(0.0), hi = hzToMel(kSampleRate / 2.0);
  for (int i = 0; i < kMels + 2; i++) melF[i] = melToHz(lo + (hi - lo) * i / (kMels + 1));
  for (int m = 0; m < kMels; m++) {
    const double enorm = 2.0 / (melF[m + 2] - melF[m]);
    for (int k = 0; k < kBins; k++) {
      const double f = static_cast<double>(k) * kSampleRate / kNFft;
      const double lower = (f - melF[m]) / (melF[m + 1] - melF[m]);
      const double upper = (melF[m + 2] - f) / (melF[m + 2] - melF[m + 1]);
      filters_[m * kBins + k] = static_cast<float>(std::max(0.0, std::min(lower, upper)) * enorm);
    }
  }
}

std::vector<float> LogMel::compute(const float* audio, int n, int frames) const {
  const int total = frames * kHop;
  // Centered frames: reflect-pad n_fft/2 on both sides of the padded signal.
  const int pad = kNFft / 2;
  std::vector<float> x(total + 2 * pad, 0.0f);
  std::copy(audio, audio + std::min(n, total), x.begin() + pad);
  for (int i = 0; i < pad; i++) {
    x[pad - 1 - i] = x[pad + 1 + i];
    x[pad + total + i] = x[pad + total - 2 - i];
  }
  // Frames as rows [frames][400] (BLAS wants lda >= K, so no overlapping view).
  std::vector<float> fr(static_cast<size_t>(frames) * kNFft);
  for (int t = 0; t < frames; t++) std::copy(x.begin() + t * kHop, x.begin() + t * kHop + kNFft, fr.begin() + static_cast<size_t>(t) * kNFft);
  std::vector<float> re(static_cast<size_t>(frames) * kBins), im(static_cast<size_t>(frames) * kBins);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, frames, kBins, kNFft, 1.0f, fr.data(), kNFft, cosT_.data(), kNFft,
              0.0f, re.data(), kBins);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, frames, kBins, kNFft, 1.0f, fr.data(), kNFft, sinT_.data(), kNFft,
              0.0f, im.data(), kBins);
  for (size_t i = 0; i < re.size(); i++) re[i] = re[i] * re[i] + im[i] * im[i];
  // mel[80][frames] = filters[80][201] · power[frames][201]ᵀ
  std::vector<float> mel(static_cast<size_t>(kMels) * frames);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, kMels, frames, kBins, 1.0f, filters_.data(), kBins, re.data(),
              kBins, 0.0f, mel.data(), frames);
  float mx = -INFINITY;
  for (auto& v : mel) {
    v = std::log10(std::max(v, 1e-10f));
    mx = std::max(mx, v);
  }
  for (auto& v : mel) v = (std::max(v, mx - 8.0f) + 4.0f) / 4.0f;
  return mel;
}

}  // namespace captiongate::whisper
