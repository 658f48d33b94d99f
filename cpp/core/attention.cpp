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
    const int64_t s0 = w.span_start(t, T);
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
  const int64_t s0 = w.span_start(n - 1, T), m = n - s0;
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
    : inner_(std::move(inner)),
      w_(w),
      H_(H),
      A_(w.A1.cols),
      D_(w.W_q.cols),
      Tmax_(Tmax),
      M_(w.memory),
      K_(w.memory + Tmax) {
  const int64_t R = Tmax * Bmax;
  ok_.resize(R);
  a1_.resize(R * A_);
  a2_.resize(R * A_);
  alpha_.resize(R * K_);
  mem_n_.assign(Bmax, 0);
  key_y_.assign(Bmax * K_ * H, 0.0f);
  key_a2_.assign(Bmax * K_ * A_, 0.0f);
  key_dy_.resize(Bmax * K_ * H);
  key_da2_.resize(Bmax * K_ * A_);
  c_.resize(R * H);
  q_.resize(R * D_);
  dy_.resize(R * H);
  dc_.resize(R * H);
  da1_.resize(R * A_);
  da2_.resize(R * A_);
  dvb_.resize(Bmax * A_);
  scratch_.resize(Bmax * K_);
  dA1_.resize(H * A_);
  dA2_.resize(H * A_);
  dv_.resize(A_);
  dWq_.resize(2 * H * D_);
}

const float* AttentionReadout::forward(const Window& win, const float* x, Rng& rng, int nt) {
  const int64_t T = win.T, B = win.B, H = H_, A = A_, D = D_, R = T * B, M = M_, NK = K_;
  B_ = B;
  T_ = T;
  y_ = inner_->forward(win, x, rng, nt);
  for (int64_t r = 0; r < R; ++r) ok_[r] = win.target[r] >= 0;
  const Kernels& k = K();
  k.sgemm(R, A, H, 1.0f, y_, H, 1, w_.A1.w, A, 1, 0.0f, a1_.data(), A, nt);
  k.sgemm(R, A, H, 1.0f, y_, H, 1, w_.A2.w, A, 1, 0.0f, a2_.data(), A, nt);
  const float* y = y_;
  // Slots are independent: each writes only its own rows.
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1 && B > 1)
  for (int64_t b = 0; b < B; ++b) {
    // The slot's key rows: its memory (already in place; a2 from the
    // current A2), then the window's states.
    const int64_t m = mem_n_[b], k0 = M - m;
    float* ky = &key_y_[b * NK * H];
    float* ka = &key_a2_[b * NK * A];
    if (m > 0) k.sgemm(m, A, H, 1.0f, ky + k0 * H, H, 1, w_.A2.w, A, 1, 0.0f, ka + k0 * A, A, 1);
    for (int64_t t = 0; t < T; ++t) {
      const int64_t r = t * B + b;
      std::memcpy(ky + (M + t) * H, y + r * H, H * sizeof(float));
      std::memcpy(ka + (M + t) * A, &a2_[r * A], A * sizeof(float));
    }
    for (int64_t t = 0; t < T; ++t) {
      const int64_t r = t * B + b;
      float* c = &c_[r * H];
      if (!ok_[r]) {
        std::fill(c, c + H, 0.0f);
        continue;
      }
      attend_forward(c, &alpha_[r * NK], ky + k0 * H, H, &a1_[r * A], ka + k0 * A, A, w_.v.w,
                     m + t + 1, H, A);
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
  std::fill(dvb_.begin(), dvb_.begin() + B * A, 0.0f);
  const int64_t M = M_, NK = K_;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1 && B > 1)
  for (int64_t b = 0; b < B; ++b) {
    const int64_t m = mem_n_[b], k0 = M - m;
    float* kdy = &key_dy_[b * NK * H];
    float* kda = &key_da2_[b * NK * A];
    std::fill(kdy, kdy + NK * H, 0.0f);
    std::fill(kda, kda + NK * A, 0.0f);
    for (int64_t t = T - 1; t >= 0; --t) {
      const int64_t r = t * B + b;
      if (!ok_[r]) continue;
      attend_backward(kdy + k0 * H, &da1_[r * A], kda + k0 * A, &dvb_[b * A], &dc_[r * H],
                      &alpha_[r * NK], &key_y_[(b * NK + k0) * H], H, &a1_[r * A],
                      &key_a2_[(b * NK + k0) * A], A, w_.v.w, m + t + 1, H, A,
                      &scratch_[b * NK]);
    }
    // The window's rows: into dy and da2; the memory's stay in key_da2_
    // (for A2's gradient) and get no dy (constants).
    for (int64_t t = 0; t < T; ++t) {
      const int64_t r = t * B + b;
      float* dyr = &dy_[r * H];
      const float* src = kdy + (M + t) * H;
      for (int64_t h = 0; h < H; ++h) dyr[h] += src[h];
      std::memcpy(&da2_[r * A], kda + (M + t) * A, A * sizeof(float));
    }
  }
  std::fill(dv_.begin(), dv_.end(), 0.0f);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t j = 0; j < A; ++j) dv_[j] += dvb_[b * A + j];
  // dA = y^T da;  dy += da1 A1^T + da2 A2^T.
  k.sgemm(H, A, R, 1.0f, y, 1, H, da1_.data(), A, 1, 0.0f, dA1_.data(), A, nt);
  k.sgemm(H, A, R, 1.0f, y, 1, H, da2_.data(), A, 1, 0.0f, dA2_.data(), A, nt);
  if (M > 0)  // the memory keys' share: sum over slots of mem_y^T da2_mem (empty rows: 0)
    for (int64_t b = 0; b < B; ++b)
      if (mem_n_[b] > 0) {
        const int64_t m = mem_n_[b], k0 = M - m;
        k.sgemm(H, A, m, 1.0f, &key_y_[(b * NK + k0) * H], 1, H, &key_da2_[(b * NK + k0) * A], A,
                1, 1.0f, dA2_.data(), A, nt);
      }
  k.sgemm(R, H, A, 1.0f, da1_.data(), A, 1, w_.A1.w, 1, A, 1.0f, dy_.data(), H, nt);
  k.sgemm(R, H, A, 1.0f, da2_.data(), A, 1, w_.A2.w, 1, A, 1.0f, dy_.data(), H, nt);
  // Padding rows: zero (the inner encoder's contract).
  for (int64_t r = 0; r < R; ++r)
    if (!ok_[r]) std::fill(&dy_[r * H], &dy_[r * H] + H, 0.0f);
  inner_->backward(win, dy_.data(), dx, nt);
}

void AttentionReadout::carry(const SlotUpdate& u) {
  const int64_t M = M_, H = H_, B = B_, T = T_, NK = K_;
  if (M == 0) return inner_->carry(u);
  // Append each slot's valid window states (a prefix of the window, also in
  // its key rows M .. M + v - 1), keep the last M, right-aligned in rows
  // 0 .. M - 1.
  for (int64_t b = 0; b < B; ++b) {
    int64_t v = 0;
    while (v < T && ok_[v * B + b]) ++v;
    if (v == 0) continue;
    float* mem = &key_y_[b * NK * H];
    const int64_t add = std::min(v, M), keep = std::min(mem_n_[b], M - add);
    if (keep > 0)
      std::memmove(mem + (M - keep - add) * H, mem + (M - keep) * H, keep * H * sizeof(float));
    std::memmove(mem + (M - add) * H, mem + (M + v - add) * H, add * H * sizeof(float));
    mem_n_[b] = keep + add;
  }
  for (int64_t i = 0; i < u.n_moves; ++i) {
    std::memcpy(&key_y_[u.to[i] * NK * H], &key_y_[u.from[i] * NK * H], M * H * sizeof(float));
    mem_n_[u.to[i]] = mem_n_[u.from[i]];
  }
  for (int64_t b = 0; b < u.B; ++b)
    if (u.reset[b]) mem_n_[b] = 0;
  inner_->carry(u);
}

void AttentionReadout::apply(const SparseOptimizer& opt, int nt) {
  inner_->apply(opt, nt);
  opt.dense(w_.A1, dA1_.data());
  opt.dense(w_.A2, dA2_.data());
  opt.dense(w_.v, dv_.data());
  opt.dense(w_.W_q, dWq_.data());
}

}  // namespace grurec
