#include "core/attention.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>

#include "kernels.hpp"

namespace grurec {
namespace {

inline float sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }

// e_j = v . sigmoid(a1 + a2_j)
inline float score(const float* a1, const float* a2j, const float* v, int64_t A) {
  float e = 0.0f;
  for (int64_t k = 0; k < A; ++k) e += v[k] * sigmoid(a1[k] + a2j[k]);
  return e;
}

}  // namespace

void attend_forward(float* c, float* alpha, const float* y, int64_t ys, const float* a1,
                    const float* a2, int64_t a2s, const float* v, int64_t n, int64_t H,
                    int64_t A) {
  float mx = -INFINITY;
  for (int64_t j = 0; j < n; ++j) {
    alpha[j] = score(a1, a2 + j * a2s, v, A);
    mx = std::max(mx, alpha[j]);
  }
  float sum = 0.0f;
  for (int64_t j = 0; j < n; ++j) sum += (alpha[j] = std::exp(alpha[j] - mx));
  const float inv = 1.0f / sum;
  std::fill(c, c + H, 0.0f);
  for (int64_t j = 0; j < n; ++j) {
    alpha[j] *= inv;
    const float a = alpha[j];
    const float* yj = y + j * ys;
    for (int64_t h = 0; h < H; ++h) c[h] += a * yj[h];
  }
}

void attend_backward(float* dy, float* da1, float* da2, float* dv, const float* dc,
                     const float* alpha, const float* y, int64_t ys, const float* a1,
                     const float* a2, int64_t a2s, const float* v, int64_t n, int64_t H,
                     int64_t A, float* scratch) {
  // dalpha_j = dc . y_j;  dy_j += alpha_j dc;  de_j = alpha_j (dalpha_j - sum_k alpha_k dalpha_k)
  float dot = 0.0f;
  for (int64_t j = 0; j < n; ++j) {
    const float* yj = y + j * ys;
    float* dyj = dy + j * ys;
    float d = 0.0f;
    for (int64_t h = 0; h < H; ++h) d += dc[h] * yj[h];
    const float a = alpha[j];
    for (int64_t h = 0; h < H; ++h) dyj[h] += a * dc[h];
    scratch[j] = d;
    dot += a * d;
  }
  for (int64_t j = 0; j < n; ++j) {
    const float de = alpha[j] * (scratch[j] - dot);
    const float* a2j = a2 + j * a2s;
    float* da2j = da2 + j * a2s;
    for (int64_t k = 0; k < A; ++k) {
      const float s = sigmoid(a1[k] + a2j[k]);
      dv[k] += de * s;
      const float dp = de * v[k] * s * (1.0f - s);
      da1[k] += dp;
      da2j[k] += dp;
    }
  }
}

void attention_queries(const AttentionWeights& w, const float* y, int64_t n, int64_t T,
                       int64_t H, float* q, float* alpha_last, std::vector<float>& scratch) {
  if (n <= 0) return;
  const int64_t A = w.A1.cols, D = w.W_q.cols;
  scratch.resize(static_cast<size_t>(n * (2 * A + H + 1)));
  float* a1 = scratch.data();   // [n, A]
  float* a2 = a1 + n * A;       // [n, A]
  float* c = a2 + n * A;        // [n, H]
  float* alpha = c + n * H;     // [n]
  const Kernels& k = K();
  k.sgemm(n, A, H, 1.0f, y, H, 1, w.A1.w, A, 1, 0.0f, a1, A, 1);
  k.sgemm(n, A, H, 1.0f, y, H, 1, w.A2.w, A, 1, 0.0f, a2, A, 1);
  for (int64_t t = 0; t < n; ++t) {
    const int64_t s0 = T > 0 ? (t / T) * T : 0;
    attend_forward(c + t * H, alpha, y + s0 * H, H, a1 + t * A, a2 + s0 * A, A, w.v.w,
                   t - s0 + 1, H, A);
    if (alpha_last && t == n - 1) {
      std::fill(alpha_last, alpha_last + n, 0.0f);
      std::memcpy(alpha_last + s0, alpha, (t - s0 + 1) * sizeof(float));
    }
  }
  k.sgemm(n, D, H, 1.0f, y, H, 1, w.W_q.w, D, 1, 0.0f, q, D, 1);
  k.sgemm(n, D, H, 1.0f, c, H, 1, w.W_q.w + H * D, D, 1, 1.0f, q, D, 1);
}

void attention_last(const AttentionWeights& w, const float* y, int64_t n, int64_t T, int64_t H,
                    float* q, float* alpha, std::vector<float>& scratch) {
  if (n <= 0) return;
  const int64_t A = w.A1.cols, D = w.W_q.cols;
  const int64_t s0 = T > 0 ? ((n - 1) / T) * T : 0, m = n - s0;
  scratch.resize(static_cast<size_t>((m + 1) * A + H + m));
  float* a1 = scratch.data();  // [A]
  float* a2 = a1 + A;          // [m, A]
  float* c = a2 + m * A;       // [H]
  float* al = c + H;           // [m]
  const float* yl = y + (n - 1) * H;
  const Kernels& k = K();
  k.sgemm(1, A, H, 1.0f, yl, H, 1, w.A1.w, A, 1, 0.0f, a1, A, 1);
  k.sgemm(m, A, H, 1.0f, y + s0 * H, H, 1, w.A2.w, A, 1, 0.0f, a2, A, 1);
  attend_forward(c, al, y + s0 * H, H, a1, a2, A, w.v.w, m, H, A);
  if (alpha) {
    std::fill(alpha, alpha + n, 0.0f);
    std::memcpy(alpha + s0, al, m * sizeof(float));
  }
  k.sgemm(1, D, H, 1.0f, yl, H, 1, w.W_q.w, D, 1, 0.0f, q, D, 1);
  k.sgemm(1, D, H, 1.0f, c, H, 1, w.W_q.w + H * D, D, 1, 1.0f, q, D, 1);
}

AttentionReadout::AttentionReadout(std::unique_ptr<Encoder> inner, const AttentionWeights& w,
                                   int64_t H, int64_t Bmax, int64_t Tmax)
    : inner_(std::move(inner)), w_(w), H_(H), A_(w.A1.cols), D_(w.W_q.cols), Tmax_(Tmax) {
  const int64_t R = Tmax * Bmax;
  ok_.resize(R);
  a1_.resize(R * A_);
  a2_.resize(R * A_);
  alpha_.resize(R * Tmax);
  c_.resize(R * H);
  q_.resize(R * D_);
  dy_.resize(R * H);
  dc_.resize(R * H);
  da1_.resize(R * A_);
  da2_.resize(R * A_);
  dvb_.resize(Bmax * A_);
  scratch_.resize(Bmax * Tmax);
  dA1_.resize(H * A_);
  dA2_.resize(H * A_);
  dv_.resize(A_);
  dWq_.resize(2 * H * D_);
}

const float* AttentionReadout::forward(const Window& win, const float* x, Rng& rng, int nt) {
  const int64_t T = win.T, B = win.B, H = H_, A = A_, D = D_, R = T * B;
  y_ = inner_->forward(win, x, rng, nt);
  for (int64_t r = 0; r < R; ++r) ok_[r] = win.target[r] >= 0;
  const Kernels& k = K();
  k.sgemm(R, A, H, 1.0f, y_, H, 1, w_.A1.w, A, 1, 0.0f, a1_.data(), A, nt);
  k.sgemm(R, A, H, 1.0f, y_, H, 1, w_.A2.w, A, 1, 0.0f, a2_.data(), A, nt);
  const float* y = y_;
  // Slots are independent: each writes only its own rows.
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1 && B > 1)
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t t = 0; t < T; ++t) {
      const int64_t r = t * B + b;
      float* c = &c_[r * H];
      if (!ok_[r]) {
        std::fill(c, c + H, 0.0f);
        continue;
      }
      attend_forward(c, &alpha_[r * Tmax_], y + b * H, B * H, &a1_[r * A],
                     &a2_[b * A], B * A, w_.v.w, t + 1, H, A);
    }
  }
  k.sgemm(R, D, H, 1.0f, y, H, 1, w_.W_q.w, D, 1, 0.0f, q_.data(), D, nt);
  k.sgemm(R, D, H, 1.0f, c_.data(), H, 1, w_.W_q.w + H * D, D, 1, 1.0f, q_.data(), D, nt);
  return q_.data();
}

void AttentionReadout::backward(const Window& win, float* dq, float* dx, int nt) {
  const int64_t T = win.T, B = win.B, H = H_, A = A_, D = D_, R = T * B;
  const float* y = y_;
  const Kernels& k = K();
  // dW_q = [y ; c]^T dq, then dy = dq W_q[:H]^T, dc = dq W_q[H:]^T.
  k.sgemm(H, D, R, 1.0f, y, 1, H, dq, D, 1, 0.0f, dWq_.data(), D, nt);
  k.sgemm(H, D, R, 1.0f, c_.data(), 1, H, dq, D, 1, 0.0f, dWq_.data() + H * D, D, nt);
  k.sgemm(R, H, D, 1.0f, dq, D, 1, w_.W_q.w, 1, D, 0.0f, dy_.data(), H, nt);
  k.sgemm(R, H, D, 1.0f, dq, D, 1, w_.W_q.w + H * D, 1, D, 0.0f, dc_.data(), H, nt);
  std::fill(da1_.begin(), da1_.begin() + R * A, 0.0f);
  std::fill(da2_.begin(), da2_.begin() + R * A, 0.0f);
  std::fill(dvb_.begin(), dvb_.begin() + B * A, 0.0f);
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1 && B > 1)
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t t = T - 1; t >= 0; --t) {
      const int64_t r = t * B + b;
      if (!ok_[r]) continue;
      attend_backward(dy_.data() + b * H, &da1_[r * A], &da2_[b * A], &dvb_[b * A],
                      &dc_[r * H], &alpha_[r * Tmax_], y + b * H, B * H, &a1_[r * A],
                      &a2_[b * A], B * A, w_.v.w, t + 1, H, A, &scratch_[b * Tmax_]);
    }
  }
  std::fill(dv_.begin(), dv_.end(), 0.0f);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t j = 0; j < A; ++j) dv_[j] += dvb_[b * A + j];
  // dA = y^T da;  dy += da1 A1^T + da2 A2^T.
  k.sgemm(H, A, R, 1.0f, y, 1, H, da1_.data(), A, 1, 0.0f, dA1_.data(), A, nt);
  k.sgemm(H, A, R, 1.0f, y, 1, H, da2_.data(), A, 1, 0.0f, dA2_.data(), A, nt);
  k.sgemm(R, H, A, 1.0f, da1_.data(), A, 1, w_.A1.w, 1, A, 1.0f, dy_.data(), H, nt);
  k.sgemm(R, H, A, 1.0f, da2_.data(), A, 1, w_.A2.w, 1, A, 1.0f, dy_.data(), H, nt);
  // Padding rows: zero (the inner encoder's contract).
  for (int64_t r = 0; r < R; ++r)
    if (!ok_[r]) std::fill(&dy_[r * H], &dy_[r * H] + H, 0.0f);
  inner_->backward(win, dy_.data(), dx, nt);
}

void AttentionReadout::apply(const SparseOptimizer& opt, int nt) {
  inner_->apply(opt, nt);
  opt.dense(w_.A1, dA1_.data());
  opt.dense(w_.A2, dA2_.data());
  opt.dense(w_.v, dv_.data());
  opt.dense(w_.W_q, dWq_.data());
}

}  // namespace grurec
