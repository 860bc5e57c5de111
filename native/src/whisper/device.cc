#include "device.h"

#include <cblas.h>

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <unordered_map>
#include <vector>

extern "C" void openblas_set_num_threads(int);

namespace captiongate::whisper {

void Device::gelu(float* x, size_t n) {
  // Exact GELU (erf), as Whisper and CTranslate2 (ActivationType::GELU) use.
  for (size_t i = 0; i < n; i++) x[i] = 0.5f * x[i] * (1.0f + std::erf(x[i] * 0.70710678118654752f));
}

void Device::layerNorm(int rows, int dim, const float* x, int ldx, const float* gamma, const float* beta, float* y,
                       int ldy) {
  for (int r = 0; r < rows; r++) {
    const float* xr = x + static_cast<size_t>(r) * ldx;
    float* yr = y + static_cast<size_t>(r) * ldy;
    double mean = 0;
    for (int i = 0; i < dim; i++) mean += xr[i];
    mean /= dim;
    double var = 0;
    for (int i = 0; i < dim; i++) {
      const double d = xr[i] - mean;
      var += d * d;
    }
    var /= dim;
    const float inv = static_cast<float>(1.0 / std::sqrt(var + 1e-5));
    const float m = static_cast<float>(mean);
    for (int i = 0; i < dim; i++) yr[i] = (xr[i] - m) * inv * gamma[i] + beta[i];
  }
}

void Device::softmax(int rows, int n, float* x, int ld) {
  for (int r = 0; r < rows; r++) {
    float* xr = x + static_cast<size_t>(r) * ld;
    float mx = -INFINITY;
    for (int i = 0; i < n; i++) mx = std::max(mx, xr[i]);
    float sum = 0;
    for (int i = 0; i < n; i++) {
      xr[i] = std::exp(xr[i] - mx);
      sum += xr[i];
    }
    const float inv = 1.0f / sum;
    for (int i = 0; i < n; i++) xr[i] *= inv;
  }
}

namespace {

// CAPTIONGATE_WHISPER_F16=0 turns the float16 step path off (bench:whisper
// compares the two side by side).
bool hasF16c() {
  const char* env = std::getenv("CAPTIONGATE_WHISPER_F16");
  if (env && std::strcmp(env, "0") == 0) return false;
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
}

// C[m, n] = A[m, :] · W[n, :] + bias[n] with W in float16, for a few rows of
// A. Memory-bound: each weight row is read once per block of 4 rows of A, at
// half the bytes of float32. Exact products (float16 → float32 is exact, as
// the model's weights are float16), float32 accumulation.
__attribute__((target("avx2,fma,f16c"))) void gemvHalf(int M, int N, int K, const float* A, int lda,
                                                        const uint16_t* W, const float* bias, float* C, int ldc) {
  for (int m0 = 0; m0 < M; m0 += 4) {
    const int mb = std::min(4, M - m0);
    const float* a[4];
    for (int i = 0; i < 4; i++) a[i] = A + static_cast<size_t>(m0 + std::min(i, mb - 1)) * lda;
    for (int n = 0; n < N; n++) {
      const uint16_t* w = W + static_cast<size_t>(n) * K;
      __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps(), acc2 = _mm256_setzero_ps(),
             acc3 = _mm256_setzero_ps();
      for (int k = 0; k < K; k += 8) {
        const __m256 wv = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + k)));
        acc0 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(a[0] + k), acc0);
        acc1 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(a[1] + k), acc1);
        acc2 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(a[2] + k), acc2);
        acc3 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(a[3] + k), acc3);
      }
      const __m256 accs[4] = {acc0, acc1, acc2, acc3};
      for (int i = 0; i < mb; i++) {
        __m128 v = _mm_add_ps(_mm256_castps256_ps128(accs[i]), _mm256_extractf128_ps(accs[i], 1));
        v = _mm_add_ps(v, _mm_movehl_ps(v, v));
        v = _mm_add_ss(v, _mm_movehdup_ps(v));
        C[static_cast<size_t>(m0 + i) * ldc + n] = _mm_cvtss_f32(v) + (bias ? bias[n] : 0.0f);
      }
    }
  }
}

__attribute__((target("f16c"))) void toHalf(const float* src, uint16_t* dst, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
  for (; i < n; i++) dst[i] = _cvtss_sh(src[i], _MM_FROUND_TO_NEAREST_INT);
}

class CpuDevice : public Device {
 public:
  explicit CpuDevice(int threads = 1) : f16c_(hasF16c()) { openblas_set_num_threads(threads); }
  std::string name() const override { return "cpu"; }

  // kStep weights are kept in float16 (the model's own precision, so
  // nothing is lost) for the GEMV kernel; everything else stays with BLAS.
  bool prepareWeight(const float* W, int N, int K, WeightUse use) override {
    if (use != WeightUse::kStep || !f16c_ || K % 8 != 0) return false;
    std::vector<uint16_t> h(static_cast<size_t>(N) * K);
    toHalf(W, h.data(), h.size());
    half_.emplace(W, std::move(h));
    return true;
  }

  void linear(int M, int N, int K, const float* A, int lda, const float* W, const float* bias, float* C,
              int ldc) override {
    auto it = half_.find(W);
    if (it != half_.end()) {
      // One thread: at a few rows this is bound by memory bandwidth, which
      // a second thread did not add to on these machines (measured).
      gemvHalf(M, N, K, A, lda, it->second.data(), bias, C, ldc);
      return;
    }
    if (bias) {
      for (int m = 0; m < M; m++) std::copy(bias, bias + N, C + static_cast<size_t>(m) * ldc);
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, A, lda, W, K, bias ? 1.0f : 0.0f, C, ldc);
  }

  void gemm(bool transB, int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb, float* C,
            int ldc) override {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, transB ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda, B, ldb, 0.0f,
                C, ldc);
  }

 private:
  bool f16c_;
  std::unordered_map<const float*, std::vector<uint16_t>> half_;
};

class PerturbedDevice : public CpuDevice {
 public:
  explicit PerturbedDevice(float eps) : CpuDevice(1), eps_(eps) {}
  std::string name() const override { return "perturbed-cpu"; }
  void linear(int M, int N, int K, const float* A, int lda, const float* W, const float* bias, float* C,
              int ldc) override {
    CpuDevice::linear(M, N, K, A, lda, W, bias, C, ldc);
    uint32_t s = 12345;
    for (int m = 0; m < M; m++) {
      float* c = C + static_cast<size_t>(m) * ldc;
      for (int n = 0; n < N; n++) {
        s = s * 1664525u + 1013904223u;
        const float r = static_cast<float>(s >> 8) / static_cast<float>(1u << 24) * 2.0f - 1.0f;
        c[n] *= 1.0f + eps_ * r;
      }
    }
  }

 private:
  float eps_;
};

}  // namespace

std::unique_ptr<Device> makeCpuDevice(int threads) { return std::make_unique<CpuDevice>(threads); }
std::unique_ptr<Device> makePerturbedDevice(float eps) { return std::make_unique<PerturbedDevice>(eps); }

}  // namespace captiongate::whisper
