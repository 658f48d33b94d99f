#include "gru.hpp"

#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace grurec {

int default_num_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

namespace {

// Runs f(r0, r1) over disjoint row ranges covering [0, rows), on up to
// num_threads threads when the work (rows * cols elements) is worth a fork.
template <class F>
void parallel_rows(int64_t rows, int64_t cols, int num_threads, F f) {
  int64_t nt = std::min<int64_t>(num_threads, rows);
  if (rows * cols < 8192) nt = 1;
#ifdef _OPENMP
  if (nt > 1) {
#pragma omp parallel for num_threads(nt) schedule(static, 1)
    for (int64_t t = 0; t < nt; ++t) f(rows * t / nt, rows * (t + 1) / nt);
    return;
  }
#endif
  f(0, rows);
}

}  // namespace

void gru_input_forward(float* gates, const float* x, const float* W_ih, const float* b,
                       int64_t R, int64_t I, int64_t H, int nt) {
  const int64_t H3 = 3 * H;
  for (int64_t r = 0; r < R; ++r) std::memcpy(gates + r * H3, b, H3 * sizeof(float));
  K().sgemm(R, H3, I, 1.0f, x, I, 1, W_ih, H3, 1, 1.0f, gates, H3, nt);
}

void gru_input_backward(float* dx, float* dW_ih, const float* dA, const float* x,
                        const float* W_ih, int64_t R, int64_t I, int64_t H, int nt) {
  const Kernels& k = K();
  const int64_t H3 = 3 * H;
  if (dW_ih && x) k.sgemm(I, H3, R, 1.0f, x, 1, I, dA, H3, 1, 1.0f, dW_ih, H3, nt);
  if (dx && W_ih) k.sgemm(R, I, H3, 1.0f, dA, H3, 1, W_ih, 1, H3, 1.0f, dx, I, nt);
}

void gru_forward(float* h_out, float* gates, float* rh, const float* x,
                 const float* h0, const float* W_ih, const float* W_hh,
                 const float* b, const float* b_hh, int64_t T, int64_t B, int64_t I,
                 int64_t H, int nt) {
  if (T <= 0 || B <= 0 || H <= 0) return;  // nothing to compute (no empty-buffer memcpy)
  const Kernels& k = K();
  const int64_t H3 = 3 * H;
  // gates[t,b,:] = b + x[t,b,:] W_ih, all steps at once (x null: the caller
  // filled gates with it, e.g. a row lookup for one-hot input).
  if (x) gru_input_forward(gates, x, W_ih, b, T * B, I, H, nt);
  if (b_hh) {
    // Reset-after: P = h_{t-1} W_hh + b_hh for all three gates in one product.
    thread_local std::vector<float> P_scratch;
    if (P_scratch.size() < static_cast<size_t>(B * H3)) P_scratch.resize(B * H3);
    float* const P = P_scratch.data();  // [B, 3H]
    for (int64_t t = 0; t < T; ++t) {
      const float* hp = (t == 0) ? h0 : h_out + (t - 1) * B * H;
      for (int64_t r = 0; r < B; ++r) std::memcpy(P + r * H3, b_hh, H3 * sizeof(float));
      k.sgemm(B, H3, H, 1.0f, hp, H, 1, W_hh, H3, 1, 1.0f, P, H3, nt);
      float* G = gates + t * B * H3;
      float* hn = rh + t * B * H;
      float* ho = h_out + t * B * H;
      parallel_rows(B, 3 * H, nt, [&](int64_t r0, int64_t r1) {
        k.gru_fwd_ra(r0, r1, H, G, P, hp, hn, ho);
      });
    }
    return;
  }
  for (int64_t t = 0; t < T; ++t) {
    const float* hp = (t == 0) ? h0 : h_out + (t - 1) * B * H;
    float* G = gates + t * B * H3;
    float* RH = rh + t * B * H;
    // [a_r | a_z] += h_{t-1} [U_r | U_z]
    k.sgemm(B, 2 * H, H, 1.0f, hp, H, 1, W_hh, H3, 1, 1.0f, G, H3, nt);
    parallel_rows(B, 3 * H, nt, [&](int64_t r0, int64_t r1) {
      k.gru_fwd_gates(r0, r1, H, G, hp, RH);
    });
    // a_n += (r * h_{t-1}) U_n
    k.sgemm(B, H, H, 1.0f, RH, H, 1, W_hh + 2 * H, H3, 1, 1.0f, G + 2 * H, H3, nt);
    parallel_rows(B, 2 * H, nt, [&](int64_t r0, int64_t r1) {
      k.gru_fwd_out(r0, r1, H, G, hp, h_out + t * B * H);
    });
  }
}

void gru_backward(float* dx, float* dh0, float* dW_ih, float* dW_hh, float* db,
                  float* db_hh, float* dA, const float* dh_out, const float* gates,
                  const float* rh, const float* x, const float* h0,
                  const float* h_out, const float* W_ih, const float* W_hh,
                  int64_t T, int64_t B, int64_t I, int64_t H, int nt) {
  // Nothing to add: every gradient is a sum over T*B rows of H-wide terms.
  // (With B*H == 0 the scratch vectors are empty and memcpy into their null
  // data() is undefined behaviour, which UBSan reports.)
  if (T <= 0 || B <= 0 || H <= 0) return;
  const Kernels& k = K();
  const int64_t H3 = 3 * H;
  // Per-thread scratch, kept between calls: at training sizes these are
  // hundreds of KiB, and fresh allocations that large are fresh pages the
  // kernel must zero on every mini-batch.
  thread_local std::vector<float> dA_scratch, carry, dh, drh;
  if (!dA) {
    if (dA_scratch.size() < static_cast<size_t>(T * B * H3)) dA_scratch.resize(T * B * H3);
    dA = dA_scratch.data();
  }
  carry.assign(static_cast<size_t>(B * H), 0.0f);  // dL/dh_t from step t+1
  if (dh.size() < static_cast<size_t>(B * H)) {
    dh.resize(B * H);
    drh.resize(B * H);
  }
  // Raw pointers: the parallel lambdas below run on other threads, where the
  // names would denote those threads' own (empty) thread_local vectors.
  float* const pcarry = carry.data();
  float* const pdh = dh.data();
  float* const pdrh = drh.data();

  if (db_hh) {
    // Reset-after. dP [T,B,3H]: gradients of the recurrent pre-activations
    // h_{t-1} W_hh + b_hh; dA those of the input ones.
    thread_local std::vector<float> dP_scratch;
    if (dP_scratch.size() < static_cast<size_t>(T * B * H3)) dP_scratch.resize(T * B * H3);
    float* const dP = dP_scratch.data();
    for (int64_t t = T - 1; t >= 0; --t) {
      const float* hp = (t == 0) ? h0 : h_out + (t - 1) * B * H;
      const float* G = gates + t * B * H3;
      const float* hn = rh + t * B * H;
      float* dAt = dA + t * B * H3;
      float* dPt = dP + t * B * H3;
      std::memcpy(pdh, dh_out + t * B * H, B * H * sizeof(float));
      k.add(B * H, pcarry, pdh);
      // dA_z, dA_n; carry = dh * (1 - z)
      parallel_rows(B, H, nt, [&](int64_t r0, int64_t r1) {
        k.gru_bwd_out(r0, r1, H, pdh, G, hp, dAt, pcarry);
      });
      parallel_rows(B, H, nt, [&](int64_t r0, int64_t r1) {
        k.gru_bwd_ra(r0, r1, H, G, hn, dAt, dPt);
      });
      // carry += dP W_hh^T (not needed after the first step without dh0:
      // one-step training detaches the previous state)
      if (t > 0 || dh0) k.sgemm(B, H, H3, 1.0f, dPt, H3, 1, W_hh, 1, H3, 1.0f, pcarry, H, nt);
    }
    if (dh0) k.add(B * H, pcarry, dh0);
    const int64_t R = T * B;
    // dW_hh += h_{t-1}^T dP: h0 for t = 0, h_out[t-1] after.
    k.sgemm(H, H3, B, 1.0f, h0, 1, H, dP, H3, 1, 1.0f, dW_hh, H3, nt);
    if (T > 1) k.sgemm(H, H3, R - B, 1.0f, h_out, 1, H, dP + B * H3, H3, 1, 1.0f, dW_hh, H3, nt);
    gru_input_backward(dx, dW_ih, dA, x, W_ih, R, I, H, nt);
    parallel_rows(H3, R, nt, [&](int64_t j0, int64_t j1) {
      k.colsum_add(R, j0, j1, dA, H3, db);
      k.colsum_add(R, j0, j1, dP, H3, db_hh);
    });
    return;
  }

  for (int64_t t = T - 1; t >= 0; --t) {
    const float* hp = (t == 0) ? h0 : h_out + (t - 1) * B * H;
    const float* G = gates + t * B * H3;
    float* dAt = dA + t * B * H3;
    std::memcpy(pdh, dh_out + t * B * H, B * H * sizeof(float));
    k.add(B * H, pcarry, pdh);
    // dA_z, dA_n; carry = dh * (1 - z)
    parallel_rows(B, H, nt, [&](int64_t r0, int64_t r1) {
      k.gru_bwd_out(r0, r1, H, pdh, G, hp, dAt, pcarry);
    });
    // drh = dA_n U_n^T
    k.sgemm(B, H, H, 1.0f, dAt + 2 * H, H3, 1, W_hh + 2 * H, 1, H3, 0.0f,
            pdrh, H, nt);
    // dA_r; carry += drh * r
    parallel_rows(B, H, nt, [&](int64_t r0, int64_t r1) {
      k.gru_bwd_gates(r0, r1, H, pdrh, G, hp, dAt, pcarry);
    });
    // carry += [dA_r | dA_z] [U_r | U_z]^T (skipped as above)
    if (t > 0 || dh0) k.sgemm(B, H, 2 * H, 1.0f, dAt, H3, 1, W_hh, 1, H3, 1.0f, pcarry, H, nt);
  }
  if (dh0) k.add(B * H, pcarry, dh0);

  // Weight gradients over all T*B rows at once.
  const int64_t R = T * B;
  // [dU_r | dU_z] += h_{t-1}^T [dA_r | dA_z]: h0 for t = 0, h_out[t-1] after.
  k.sgemm(H, 2 * H, B, 1.0f, h0, 1, H, dA, H3, 1, 1.0f, dW_hh, H3, nt);
  if (T > 1)
    k.sgemm(H, 2 * H, R - B, 1.0f, h_out, 1, H, dA + B * H3, H3, 1, 1.0f, dW_hh, H3, nt);
  // dU_n += (r h)^T dA_n
  k.sgemm(H, H, R, 1.0f, rh, 1, H, dA + 2 * H, H3, 1, 1.0f, dW_hh + 2 * H, H3, nt);
  gru_input_backward(dx, dW_ih, dA, x, W_ih, R, I, H, nt);
  parallel_rows(H3, R, nt, [&](int64_t j0, int64_t j1) {
    k.colsum_add(R, j0, j1, dA, H3, db);
  });
}

}  // namespace grurec
