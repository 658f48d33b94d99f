#include "core/bidir.hpp"

#include <algorithm>
#include <cstring>
#include <numeric>
#include <utility>

#include "gru.hpp"
#include "kernels.hpp"

namespace grurec {

void ReverseRuns::forward(const BiWeights& w, const float* y, int64_t M, int64_t H,
                          int64_t step, const int64_t* end, const int64_t* len, int64_t N,
                          float* out, int nt) {
  const int64_t Hr = w.Hr(), H3 = 3 * Hr;
  y_ = y;
  M_ = M;
  H_ = H;
  Hr_ = Hr;
  N_ = N;
  step_ = step;
  if (N <= 0) {
    S_ = 0;
    return;
  }
  order_.resize(N);
  std::iota(order_.begin(), order_.end(), int64_t{0});
  std::stable_sort(order_.begin(), order_.end(),
                   [&](int64_t a, int64_t b) { return len[a] > len[b]; });
  end_.resize(N);
  len_.resize(N);
  for (int64_t i = 0; i < N; ++i) {
    end_[i] = end[order_[i]];
    len_[i] = len[order_[i]];
  }
  S_ = len_[0];
  Bs_.assign(S_, 0);
  off_.assign(S_, 0);
  for (int64_t i = 0; i < N; ++i)
    for (int64_t s = 0; s < len_[i]; ++s) ++Bs_[s];
  int64_t rows = 0;
  for (int64_t s = 0; s < S_; ++s) {
    off_[s] = rows;
    rows += Bs_[s];
  }
  h_.resize(rows * Hr);
  gates_.resize(rows * H3);
  rh_.resize(rows * Hr);
  zero_.assign(N * Hr, 0.0f);
  // G = b + y W_ih once per row of y; every step copies its spans' rows.
  G_.resize(M * H3);
  for (int64_t r = 0; r < M; ++r) std::memcpy(&G_[r * H3], w.b.w, H3 * sizeof(float));
  K().sgemm(M, H3, H, 1.0f, y, H, 1, w.W_ih.w, H3, 1, 1.0f, G_.data(), H3, nt);
  for (int64_t s = 0; s < S_; ++s) {
    const int64_t B = Bs_[s];
    float* g = &gates_[off_[s] * H3];
    for (int64_t i = 0; i < B; ++i)
      std::memcpy(g + i * H3, &G_[(end_[i] - s * step) * H3], H3 * sizeof(float));
    const float* h0 = s == 0 ? zero_.data() : &h_[off_[s - 1] * Hr];
    gru_forward(&h_[off_[s] * Hr], g, &rh_[off_[s] * Hr], nullptr, h0, nullptr, w.W_hh.w,
                nullptr, w.b_hh.w, 1, B, H, Hr, nt);
  }
  for (int64_t i = 0; i < N; ++i)
    std::memcpy(out + order_[i] * Hr, &h_[(off_[len_[i] - 1] + i) * Hr], Hr * sizeof(float));
}

void ReverseRuns::backward(const BiWeights& w, const float* dout, float* dy, float* dW_ih,
                           float* dW_hh, float* db, float* dbh, int nt) {
  const int64_t M = M_, H = H_, Hr = Hr_, H3 = 3 * Hr;
  if (N_ <= 0) return;
  const int64_t rows = off_[S_ - 1] + Bs_[S_ - 1];
  dh_.assign(rows * Hr, 0.0f);  // dL/dh of every step; step s + 1 adds into step s
  for (int64_t i = 0; i < N_; ++i)
    std::memcpy(&dh_[(off_[len_[i] - 1] + i) * Hr], dout + order_[i] * Hr, Hr * sizeof(float));
  dA_.resize(Bs_[0] * H3);
  std::fill(G_.begin(), G_.begin() + M * H3, 0.0f);  // now dG: summed per row of y
  for (int64_t s = S_ - 1; s >= 0; --s) {
    const int64_t B = Bs_[s];
    const float* h0 = s == 0 ? zero_.data() : &h_[off_[s - 1] * Hr];
    float* dh0 = s == 0 ? nullptr : &dh_[off_[s - 1] * Hr];
    gru_backward(nullptr, dh0, nullptr, dW_hh, db, dbh, dA_.data(), &dh_[off_[s] * Hr],
                 &gates_[off_[s] * H3], &rh_[off_[s] * Hr], nullptr, h0, &h_[off_[s] * Hr],
                 nullptr, w.W_hh.w, 1, B, H, Hr, nt);
    for (int64_t i = 0; i < B; ++i) {
      float* d = &G_[(end_[i] - s * step_) * H3];
      const float* g = &dA_[i * H3];
      for (int64_t j = 0; j < H3; ++j) d[j] += g[j];
    }
  }
  // dW_ih += y^T dG;  dy += dG W_ih^T.
  const Kernels& k = K();
  k.sgemm(H, H3, M, 1.0f, y_, 1, H, G_.data(), H3, 1, 1.0f, dW_ih, H3, nt);
  k.sgemm(M, H, H3, 1.0f, G_.data(), H3, 1, w.W_ih.w, 1, H3, 1.0f, dy, H, nt);
}

void bi_queries(const BiWeights& w, const float* y, int64_t n, int64_t T, int64_t H, float* q,
                ReverseRuns& rr, std::vector<float>& scratch) {
  if (n <= 0) return;
  const int64_t Hr = w.Hr(), D = w.W_q.cols;
  std::vector<int64_t> end(n), len(n);
  for (int64_t t = 0; t < n; ++t) {
    const int64_t s0 = T > 0 ? (t / T) * T : 0;
    end[t] = t;
    len[t] = t - s0 + 1;
  }
  scratch.resize(n * Hr);
  rr.forward(w, y, n, H, 1, end.data(), len.data(), n, scratch.data(), 1);
  const Kernels& k = K();
  k.sgemm(n, D, H, 1.0f, y, H, 1, w.W_q.w, D, 1, 0.0f, q, D, 1);
  k.sgemm(n, D, Hr, 1.0f, scratch.data(), Hr, 1, w.W_q.w + H * D, D, 1, 1.0f, q, D, 1);
}

void bi_last(const BiWeights& w, const float* y, int64_t n, int64_t T, int64_t H, float* q,
             float* emb, ReverseRuns& rr, std::vector<float>& scratch) {
  if (n <= 0) return;
  const int64_t Hr = w.Hr(), D = w.W_q.cols;
  const int64_t s0 = T > 0 ? ((n - 1) / T) * T : 0;
  const int64_t end = n - 1 - s0, len = n - s0;  // rows of y + s0 * H
  scratch.resize(Hr);
  rr.forward(w, y + s0 * H, n - s0, H, 1, &end, &len, 1, scratch.data(), 1);
  const float* yl = y + (n - 1) * H;
  if (q) {
    const Kernels& k = K();
    k.sgemm(1, D, H, 1.0f, yl, H, 1, w.W_q.w, D, 1, 0.0f, q, D, 1);
    k.sgemm(1, D, Hr, 1.0f, scratch.data(), Hr, 1, w.W_q.w + H * D, D, 1, 1.0f, q, D, 1);
  }
  if (emb) {
    std::memcpy(emb, yl, H * sizeof(float));
    std::memcpy(emb + H, scratch.data(), Hr * sizeof(float));
  }
}

BiReadout::BiReadout(std::unique_ptr<Encoder> inner, const BiWeights& w, int64_t H,
                     int64_t Bmax, int64_t Tmax)
    : inner_(std::move(inner)), w_(w), H_(H), Hr_(w.Hr()), D_(w.W_q.cols) {
  const int64_t R = Tmax * Bmax, Hr = Hr_;
  ok_.resize(R);
  end_.resize(R);
  len_.resize(R);
  row_.resize(R);
  bn_.resize(R * Hr);
  bf_.resize(R * Hr);
  q_.resize(R * D_);
  dy_.resize(R * H);
  dbf_.resize(R * Hr);
  dbn_.resize(R * Hr);
  dW_ih_.resize(H * 3 * Hr);
  dW_hh_.resize(Hr * 3 * Hr);
  db_.resize(3 * Hr);
  dbh_.resize(3 * Hr);
  dWq_.resize((H + Hr) * D_);
}

const float* BiReadout::forward(const Window& win, const float* x, Rng& rng, int nt) {
  const int64_t T = win.T, B = win.B, H = H_, Hr = Hr_, D = D_, R = T * B;
  y_ = inner_->forward(win, x, rng, nt);
  int64_t N = 0;
  for (int64_t r = 0; r < R; ++r) {
    ok_[r] = win.target[r] >= 0;
    if (!ok_[r]) continue;
    end_[N] = r;  // position t = r / B of slot b = r % B reads rows r, r - B, ..., b
    len_[N] = r / B + 1;
    row_[N] = r;
    ++N;
  }
  rr_.forward(w_, y_, R, H, B, end_.data(), len_.data(), N, bn_.data(), nt);
  std::fill(bf_.begin(), bf_.begin() + R * Hr, 0.0f);
  for (int64_t i = 0; i < N; ++i)
    std::memcpy(&bf_[row_[i] * Hr], &bn_[i * Hr], Hr * sizeof(float));
  const Kernels& k = K();
  k.sgemm(R, D, H, 1.0f, y_, H, 1, w_.W_q.w, D, 1, 0.0f, q_.data(), D, nt);
  k.sgemm(R, D, Hr, 1.0f, bf_.data(), Hr, 1, w_.W_q.w + H * D, D, 1, 1.0f, q_.data(), D, nt);
  n_ = N;
  return q_.data();
}

void BiReadout::backward(const Window& win, float* dq, float* dx, int nt) {
  const int64_t T = win.T, B = win.B, H = H_, Hr = Hr_, D = D_, R = T * B;
  const Kernels& k = K();
  // dW_q = [y ; b]^T dq, then dy = dq W_q[:H]^T, db = dq W_q[H:]^T.
  k.sgemm(H, D, R, 1.0f, y_, 1, H, dq, D, 1, 0.0f, dWq_.data(), D, nt);
  k.sgemm(Hr, D, R, 1.0f, bf_.data(), 1, Hr, dq, D, 1, 0.0f, dWq_.data() + H * D, D, nt);
  k.sgemm(R, H, D, 1.0f, dq, D, 1, w_.W_q.w, 1, D, 0.0f, dy_.data(), H, nt);
  k.sgemm(R, Hr, D, 1.0f, dq, D, 1, w_.W_q.w + H * D, 1, D, 0.0f, dbf_.data(), Hr, nt);
  for (int64_t i = 0; i < n_; ++i)
    std::memcpy(&dbn_[i * Hr], &dbf_[row_[i] * Hr], Hr * sizeof(float));
  std::fill(dW_ih_.begin(), dW_ih_.end(), 0.0f);
  std::fill(dW_hh_.begin(), dW_hh_.end(), 0.0f);
  std::fill(db_.begin(), db_.end(), 0.0f);
  std::fill(dbh_.begin(), dbh_.end(), 0.0f);
  // The reversed GRU's BPTT: into its weights and every forward state it read.
  rr_.backward(w_, dbn_.data(), dy_.data(), dW_ih_.data(), dW_hh_.data(), db_.data(),
               dbh_.data(), nt);
  // Padding rows: zero (the inner encoder's contract).
  for (int64_t r = 0; r < R; ++r)
    if (!ok_[r]) std::fill(&dy_[r * H], &dy_[r * H] + H, 0.0f);
  inner_->backward(win, dy_.data(), dx, nt);
}

void BiReadout::apply(const SparseOptimizer& opt, int nt) {
  inner_->apply(opt, nt);
  opt.dense(w_.W_ih, dW_ih_.data());
  opt.dense(w_.W_hh, dW_hh_.data());
  opt.dense(w_.b, db_.data());
  opt.dense(w_.b_hh, dbh_.data());
  opt.dense(w_.W_q, dWq_.data());
}

}  // namespace grurec
