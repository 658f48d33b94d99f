// The table of hot kernels. One table per SIMD level is compiled from
// kernels_impl.hpp (scalar, AVX2+FMA, AVX-512F; AArch64: NEON); dispatch.cpp picks one at
// import. Kernels never throw and never allocate unboundedly; arguments are
// validated before they are called (bindings.cpp / Python).
//
// Dimension names: M, N, K for a matrix product C[M,N] (+)= A[M,K] B[K,N];
// B batch rows, H hidden units. Sizes and strides are int64_t.
#pragma once

#include <cstdint>

namespace grurec {

struct Kernels {
  const char* name;  // "scalar", "avx2", "avx512" or "neon"

  // C[M,N] = alpha * A[M,K] @ B[K,N] + beta * C.  Element (i,k) of A is
  // A[i*rsa + k*csa] (so a transposed operand is just swapped strides); C is
  // row-major with row stride ldc. beta == 0 never reads C (NaN in C is
  // overwritten). Uses up to num_threads OpenMP threads (>= 1).
  void (*sgemm)(int64_t M, int64_t N, int64_t K, float alpha,
                const float* A, int64_t rsa, int64_t csa,
                const float* B, int64_t rsb, int64_t csb,
                float beta, float* C, int64_t ldc, int num_threads);

  // --- GRU element-wise stages (see gru.hpp for the formulation) ----------
  // G[B,3H] holds pre-activations [a_r | a_z | a_n], row stride 3H.
  // Rows [b0, b1) only, so callers can split rows among threads.

  // G[:, :2H] = sigmoid(G[:, :2H]);  rh[B,H] = r * h_prev
  void (*gru_fwd_gates)(int64_t b0, int64_t b1, int64_t H, float* G,
                        const float* h_prev, float* rh);
  // G[:, 2H:] = n = tanh(G[:, 2H:]);  h_out = h_prev + z * (n - h_prev)
  void (*gru_fwd_out)(int64_t b0, int64_t b1, int64_t H, float* G,
                      const float* h_prev, float* h_out);
  // From dh (grad of h_out) and the cached activations G = [r | z | n]:
  //   dA[:, H:2H] = dh * (n - h_prev) * z * (1 - z)
  //   dA[:, 2H:]  = dh * z * (1 - n^2)
  //   dh_prev     = dh * (1 - z)                       (overwritten)
  void (*gru_bwd_out)(int64_t b0, int64_t b1, int64_t H, const float* dh,
                      const float* G, const float* h_prev, float* dA,
                      float* dh_prev);
  // From drh = d(r * h_prev):
  //   dA[:, :H] = drh * h_prev * r * (1 - r);  dh_prev += drh * r
  void (*gru_bwd_gates)(int64_t b0, int64_t b1, int64_t H, const float* drh,
                        const float* G, const float* h_prev, float* dA,
                        float* dh_prev);

  // The reset-after (cuDNN) cell, gru.hpp. G[B,3H] holds the input
  // pre-activations x W_ih + b_ih, P[B,3H] the recurrent ones h_prev W_hh +
  // b_hh. Writes G = [r | z | n] with r, z = sigmoid(G + P) on the first 2H
  // and n = tanh(G_n + r * P_n); hn = P_n (cache); h_out = h_prev + z * (n - h_prev).
  void (*gru_fwd_ra)(int64_t b0, int64_t b1, int64_t H, float* G, const float* P,
                     const float* h_prev, float* hn, float* h_out);
  // Reset-after backward, after gru_bwd_out wrote dA[:, H:] = [dA_z | dA_n]:
  //   dA[:, :H] = dA_n * hn * r * (1 - r);  dP = [dA_r | dA_z | dA_n * r]
  // (dP: the gradient of the recurrent pre-activations P).
  void (*gru_bwd_ra)(int64_t b0, int64_t b1, int64_t H, const float* G, const float* hn,
                     float* dA, float* dP);

  // out[j] += sum_i A[i*lda + j] for j in [j0, j1), i in [0, M)
  void (*colsum_add)(int64_t M, int64_t j0, int64_t j1, const float* A,
                     int64_t lda, float* out);
  // y[i] += x[i] for i in [0, n)
  void (*add)(int64_t n, const float* x, float* y);

  // --- losses over sampled candidates (see loss.md in docs/) --------------
  // Rows [b0, b1) of scores R[B, C] (row stride C); row i's target is
  // column i. The final activation is ELU(elu) when elu > 0, else linear.
  // qcorr[C] (cross-entropy only, may be null) is subtracted from every
  // row's logits (logQ correction). Writes dR = scale * dL_i/dR (same
  // layout; dR may not alias R) and returns the sum of L_i over the rows.
  double (*loss)(int kind, int64_t b0, int64_t b1, int64_t C, const float* R,
                 const float* qcorr, float elu, float bpreg, float scale,
                 float* dR);

  // Adagrad with momentum on n parameters:
  //   acc += g^2;  s = lr * g / sqrt(acc + eps)
  //   mu > 0, heavy ball: vel = mu * vel - s;  w += vel          (vel may not be null)
  //   mu > 0, nesterov:   vel = mu * vel - s;  w += mu * vel - s
  //   mu = 0: w -= s                                              (vel ignored)
  void (*adagrad)(int64_t n, float* w, float* acc, float* vel, const float* g,
                  float lr, float mu, float eps, int nesterov);

  // Adam (Kingma & Ba, ICLR 2015) on n parameters, the bias corrections of
  // step t folded into lr_t = lr sqrt(1 - b2^t) / (1 - b1^t) and
  // eps_t = eps sqrt(1 - b2^t) by the caller (the same step as Adam's
  // m_hat / (sqrt(v_hat) + eps)):
  //   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;  w -= lr_t m / (sqrt(v) + eps_t)
  void (*adam)(int64_t n, float* w, float* m, float* v, const float* g, float lr_t,
               float b1, float b2, float eps_t);
};

enum LossKind { kCrossEntropy = 0, kBprMax = 1, kTop1Max = 2 };

const Kernels* kernels_scalar();
const Kernels* kernels_avx2();    // nullptr when not compiled in
const Kernels* kernels_avx512();  // nullptr when not compiled in
const Kernels* kernels_neon();    // nullptr when not compiled in (x86)

// The active table (chosen at first use: the widest the CPU supports, capped
// by the GRUREC_SIMD environment variable).
const Kernels& K();
// Names of the levels this CPU and build can run, narrowest first.
const char* const* available_levels(int* count);
// Switch the active table; returns false if the level is unknown or the CPU
// or build cannot run it. Not thread-safe against running kernels: for tests
// and set-up only.
bool set_level(const char* name);

}  // namespace grurec
