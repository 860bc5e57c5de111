#include "device.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
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

class CpuDevice : public Device {
 public:
  explicit CpuDevice(int threads = 1) { openblas_set_num_threads(threads); }
  std::string name() const override { return "cpu"; }

  void linear(int M, int N, int K, const float* A, int lda, const float* W, const float* bias, float* C,
              int ldc) override {
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
