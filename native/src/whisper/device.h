// The device seam: every matrix product of the Whisper model goes through
// here, plus the few elementwise ops an accelerator would fuse with them.
// The CPU device uses OpenBLAS; an XDNA2 device (docs/xdna2.md) implements
// the same calls with its GEMM kernels, and must agree with the CPU device
// (Engine self-test, cosine >= 0.999) before it is used.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

namespace captiongate::whisper {

// How a weight matrix is used, so a device can keep it in the form that
// suits the use: kBatch weights meet many rows at once (the encoder, the
// cross-attention keys and values: GEMMs), kStep weights meet one row per
// sequence per decoding step (GEMV-shaped and memory-bound).
enum class WeightUse { kBatch, kStep };

class Device {
 public:
  virtual ~Device() = default;
  virtual std::string name() const = 0;

  // Called once per weight matrix [N,K] at model load, before any linear()
  // with it. A device may copy it into its own memory or format (an NPU's
  // resident buffers; the CPU's float16 copy for kStep). Returns true if the
  // device now owns it, in which case the host copy may be freed and W is
  // only the weight's handle in linear().
  virtual bool prepareWeight(const float* W, int N, int K, WeightUse use) { return false; }

  // A linear layer: C[M,N] = A[M,K] · W[N,K]ᵀ + bias[N] (bias may be null).
  // W is row-major as the model stores it. M is rows of activations: for the
  // encoder, B windows × frames, so a batch is one call.
  virtual void linear(int M, int N, int K, const float* A, int lda, const float* W, const float* bias, float* C,
                      int ldc) = 0;

  // C[M,N] = alpha · A[M,K] · op(B), op(B) = B[N,K]ᵀ (transB) or B[K,N].
  // Attention scores and context.
  virtual void gemm(bool transB, int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb,
                    float* C, int ldc) = 0;

  // Elementwise ops an NPU fuses with the GEMMs; CPU versions by default.
  virtual void gelu(float* x, size_t n);
  virtual void layerNorm(int rows, int dim, const float* x, int ldx, const float* gamma, const float* beta, float* y,
                         int ldy);
  // Row-wise softmax, in place; rows of length n with stride ld.
  virtual void softmax(int rows, int n, float* x, int ld);
};

// OpenBLAS with `threads` threads. The Whisper engine runs inference on one
// thread of its own, so BLAS threads are the engine's parallelism.
std::unique_ptr<Device> makeCpuDevice(int threads = 1);

// Test device: the CPU device with every linear output scaled by (1 + eps·r),
// r in [-1, 1] (deterministic). Exists to prove the device self-test fails.
std::unique_ptr<Device> makePerturbedDevice(float eps);

}  // namespace captiongate::whisper
