#include "core/head.hpp"

#include <algorithm>
#include <cstring>

#include "core/parallel.hpp"
#include "kernels.hpp"

namespace grurec {

void SampledHead::init(const Param& W_y, const Param& b_y, const NegativeSampler& sampler,
                       const HeadConfig& cfg, int64_t Bmax, int64_t extra_rows) {
  W_y_ = W_y;
  b_y_ = b_y;
  sampler_ = &sampler;
  cfg_ = cfg;
  D_ = W_y.cols;
  const int64_t Cmax = Bmax + cfg.n_sample;
  rows_.init(W_y.rows, D_, Cmax + extra_rows);
  cand_.resize(Cmax);
  col_.resize(Cmax);
  Wc_.resize(Cmax * D_);
  dWc_.resize(Cmax * D_);
  dbu_.resize(Cmax);
  bc_.resize(Cmax);
  dbc_.resize(Cmax);
  qc_.resize(Cmax);
  R_.resize(Bmax * Cmax);
  dR_.resize(Bmax * Cmax);
}

void SampledHead::set_output(FeatureTower* out) {
  out_ = out;
  const int64_t Cmax = static_cast<int64_t>(cand_.size());
  cands_.init(W_y_.rows, 0, Cmax);
  Wu_.resize(Cmax * D_);
  bu_.resize(Cmax);
  dWu_.resize(Cmax * D_);
  bk_.resize(Cmax);
  dbk_.resize(Cmax);
}

void SampledHead::draw(const int32_t* target, int64_t B, Rng& rng) {
  const int64_t S = cfg_.n_sample, C = B + S;
  B_ = B;
  C_ = C;
  std::copy(target, target + B, cand_.begin());
  for (int64_t s = 0; s < S; ++s) cand_[B + s] = sampler_->draw(rng);
  SparseGrad& seen = out_ ? cands_ : rows_;
  for (int64_t j = 0; j < C; ++j) col_[j] = static_cast<int32_t>(seen.index(cand_[j]));
  Uo_ = seen.n;
  if (!out_) return;
  // The weights do not change before loss(): gather the rows now, with rng.
  const int32_t* uniq = cands_.rows.data();
  out_->gather(uniq, Uo_, Wu_.data(), rng);
  const float* keep = out_->keep();
  for (int64_t u = 0; u < Uo_; ++u) bu_[u] = keep[u] != 0.0f ? b_y_.w[uniq[u]] : 0.0f;
}

double SampledHead::loss(const float* q, int nt, const float* row_w) {
  const Kernels& k = K();
  const int64_t B = B_, C = C_, D = D_;
  // Every column's output row and bias, a duplicate candidate copied: the
  // product over C columns costs C / Uo more FMAs than one over the distinct
  // rows (5% with 2048 pop^0.5 draws), but the [B, C] scores need no gather
  // from a [B, Uo] block, nor their gradients a scatter back: two passes
  // over B C floats that cost more (UserGRU, bptt 8: 11% of a step).
  // (Output tower: the distinct rows Wu and biases bu were gathered by draw.)
  for (int64_t j = 0; j < C; ++j) {
    float* w = &Wc_[j * D];
    if (out_) {
      std::memcpy(w, &Wu_[col_[j] * D], D * sizeof(float));
      bc_[j] = bu_[col_[j]];
    } else {
      if (j + kPrefetch < C) prefetch_row(W_y_.w + int64_t(cand_[j + kPrefetch]) * D, D, false);
      std::memcpy(w, W_y_.w + static_cast<int64_t>(cand_[j]) * D, D * sizeof(float));
      bc_[j] = b_y_.w[cand_[j]];
    }
  }
  // R[b, j] = b_y[cand_j] + q_b . Wc_j: each row starts as the biases.
  for (int64_t b = 0; b < B; ++b) std::memcpy(&R_[b * C], bc_.data(), C * sizeof(float));
  k.sgemm(B, C, D, 1.0f, q, D, 1, Wc_.data(), 1, D, 1.0f, R_.data(), C, nt);
  // logQ goes to the loss kernel, which subtracts it after the final
  // activation (cross-entropy only).
  const float* qcorr = nullptr;
  const float* lq_in = sampler_->logq_in();
  if (lq_in) {  // built for cross-entropy only
    const float* lq_s = sampler_->logq_sampled();
    for (int64_t j = 0; j < C; ++j) qc_[j] = j < B ? lq_in[cand_[j]] : lq_s[cand_[j]];
    qcorr = qc_.data();
  }
  double total = 0.0;
  // Dividing by the live rows instead would scale the gradients of an
  // epoch's shrinking last batches up to batch_size times, and Adagrad's
  // accumulators keep such a step for the rest of training.
  const float scale = 1.0f / static_cast<float>(cfg_.batch_size);
  const int lnt = B >= 8 ? nt : 1;
  const int kind = cfg_.loss;
  const float elu = cfg_.elu, bpreg = cfg_.bpreg;
  const float* R = R_.data();
  float* dR = dR_.data();
  if (row_w) {  // one kernel call per row, each with its weight in the scale
#pragma omp parallel for num_threads(lnt) reduction(+ : total) schedule(static) if (lnt > 1)
    for (int64_t b = 0; b < B; ++b)
      total += row_w[b] * k.loss(kind, b, b + 1, C, R, qcorr, elu, bpreg, scale * row_w[b], dR);
    return total;
  }
#pragma omp parallel for num_threads(lnt) reduction(+ : total) schedule(static) if (lnt > 1)
  for (int64_t t = 0; t < lnt; ++t)
    total += k.loss(kind, B * t / lnt, B * (t + 1) / lnt, C, R, qcorr, elu, bpreg, scale, dR);
  return total;
}

void SampledHead::backward(const float* q, float* dq, int nt) {
  const Kernels& k = K();
  const int64_t B = B_, C = C_, Uo = Uo_, D = D_;
  const float* dR = dR_.data();
  k.sgemm(B, D, C, 1.0f, dR, C, 1, Wc_.data(), D, 1, 0.0f, dq, D, nt);
  // Every column's row gradient dWc = dR^T q and bias gradient, then summed
  // per distinct row: straight into rows_ (id only), or through the tower.
  k.sgemm(C, D, B, 1.0f, dR, 1, C, q, D, 1, 0.0f, dWc_.data(), D, nt);
  std::fill(dbc_.begin(), dbc_.begin() + C, 0.0f);
  k.colsum_add(B, 0, C, dR, C, dbc_.data());
  // A distinct row's gradient is 0 + its first column's, plus its later
  // columns' in column order. draw() numbered the distinct rows in order of
  // first column, so column j is its row's first exactly when col_[j] is
  // the next number: that row is written, not zeroed and added to (a
  // memset and a read of Uo D floats less). x + 0.0f is 0 + x to the bit
  // (also for x = -0), which the compiler may not fold (no -ffast-math).
  float* dW = out_ ? dWu_.data() : rows_.g.data();
  int64_t next = 0;
  for (int64_t j = 0; j < C; ++j) {
    const int64_t u = col_[j];
    float* dst = dW + u * D;
    const float* src = &dWc_[j * D];
    if (u == next) {
      for (int64_t d = 0; d < D; ++d) dst[d] = src[d] + 0.0f;
      dbu_[u] = dbc_[j] + 0.0f;
      ++next;
    } else {
      k.add(D, src, dst);
      dbu_[u] += dbc_[j];
    }
  }
  if (out_) out_->scatter_grad(cands_.rows.data(), Uo, dWu_.data());
}

void SampledHead::apply(const SparseOptimizer& opt, int nt) {
  opt.rows(W_y_, rows_, nt);
  if (!out_) {
    opt.rows(b_y_, rows_.rows.data(), Uo_, dbu_.data(), nt);
  } else {
    // Bias of the candidates whose id part was kept.
    const float* keep = out_->keep();
    int64_t nk = 0;
    for (int64_t u = 0; u < Uo_; ++u)
      if (keep[u] != 0.0f) {
        bk_[nk] = cands_.rows[u];
        dbk_[nk++] = dbu_[u];
      }
    opt.rows(b_y_, bk_.data(), nk, dbk_.data(), nt);
    out_->apply(opt, nt);  // the feature tables (its id rows are in rows_)
  }
  clear();
}

}  // namespace grurec
