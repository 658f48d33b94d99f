// The sampled output head: scores of B query vectors against C = B + S
// candidates (the B targets, in-batch negatives for each other, plus S items
// shared by the mini-batch from the negative sampler), the loss, the query
// gradient and the gradients of the candidates' output rows.
//
//   R[B, C] = q W_y[cand]^T + b_y[cand]   (- logQ, cross-entropy only)
//
// With an output tower (item features on the output side, set_output) the
// candidates' rows come from it instead of W_y:
//   R[B, C] = q S[cand]^T + keep[cand] b_y[cand],
//   S[i] = keep_i W_y[i] + feature projection of i   (FeatureTower)
// keep_i is 0 with probability id_dropout (a training draw per distinct
// candidate): the row is then scored as a cold item is, by its features
// alone and without its bias, and its W_y row and bias stay untouched.
//
// Duplicate candidates (a popular item drawn twice, a target also drawn)
// are scored as separate columns (each with its own copy of the row) and
// share one summed gradient row. Losses: Kernels::loss (cross-entropy, bpr-max, top1-max).
//
// D: query width (the output rows' width), N items, S n_sample.
#pragma once

#include <cstdint>
#include <vector>

#include "core/item_tower.hpp"
#include "core/optim.hpp"
#include "core/rng.hpp"
#include "core/sampler.hpp"
#include "kernels.hpp"

namespace grurec {

struct HeadConfig {
  int loss = 0;  // LossKind
  float elu = 0.0f, bpreg = 0.0f;
  int64_t n_sample = 0;
  // The loss is the sum over a mini-batch's rows divided by batch_size (the
  // configured size), also when fewer slots are live.
  int64_t batch_size = 1;
};

class SampledHead {
 public:
  // W_y [N, D], b_y [N, 1]; up to Bmax queries; room for extra_rows more
  // touched rows (gradients added by an item tower that shares W_y).
  void init(const Param& W_y, const Param& b_y, const NegativeSampler& sampler,
            const HeadConfig& cfg, int64_t Bmax, int64_t extra_rows);

  // Scoring rows from out (a FeatureTower over W_y whose id tower adds into
  // rows(); it must outlive the head) instead of W_y alone. Call after init.
  void set_output(FeatureTower* out);

  // Candidates of a mini-batch: targets [B], then S draws from rng (with an
  // output tower, also their rows: its id dropout draws from rng after the
  // S samples).
  void draw(const int32_t* target, int64_t B, Rng& rng);
  // A ranking loss with no negative column (n_sample = 0 and B = 1) is 0/0:
  // such a mini-batch only advances the state.
  bool degenerate() const { return cfg_.loss != kCrossEntropy && C_ < 2; }
  // Scores and loss of the queries q [B, D] (the gradients are those of the
  // sum over rows / batch_size). Returns the sum of the per-row losses;
  // when it is not finite, only clear() may follow.
  // row_w [B] (optional): per-row weights of the loss (each row's loss and
  // gradient are multiplied by its weight).
  double loss(const float* q, int nt, const float* row_w = nullptr);
  // dq [B, D] (overwritten) and the output rows' gradients.
  void backward(const float* q, float* dq, int nt);
  // Touched rows of W_y and their gradients (an item tower sharing W_y adds
  // its input-side gradients here after backward).
  SparseGrad& rows() { return rows_; }
  // Updates W_y's touched rows and b_y's scored rows, then clear().
  void apply(const SparseOptimizer& opt, int nt);
  void clear() {
    rows_.clear();
    cands_.clear();
  }

  // For tests: the candidates [C] of the last draw, the distinct ones [Uo]
  // (the order of the bias gradient), the bias gradient [Uo], and the
  // output tower's keep [Uo] (null without one).
  const int32_t* cand() const { return cand_.data(); }
  int64_t n_cand() const { return C_; }
  const int32_t* uniq() const { return out_ ? cands_.rows.data() : rows_.rows.data(); }
  int64_t n_uniq() const { return Uo_; }
  const float* db() const { return dbu_.data(); }
  const float* keep() const { return out_ ? out_->keep() : nullptr; }

 private:
  Param W_y_, b_y_;
  const NegativeSampler* sampler_ = nullptr;
  HeadConfig cfg_;
  int64_t D_ = 0, B_ = 0, C_ = 0, Uo_ = 0;  // Uo: distinct candidates
  SparseGrad rows_;                          // [C + extra, D]: rows [0, Uo) are the candidates
  std::vector<int32_t> cand_, col_;          // [C]: item, its row in rows_
  std::vector<float> Wc_, dWc_;              // [C, D]: each column's output row, its gradient
  std::vector<float> dbu_;                   // [C]: each distinct row's bias gradient
  std::vector<float> bc_, dbc_, qc_;         // [C]: column bias, its gradient, logQ
  std::vector<float> R_, dR_;                // [Bmax, C]: scores, their gradient
  // Output tower: candidates de-duplicated apart from rows_ (which then only
  // holds the W_y rows that get a gradient), the rows' gradient, the kept
  // rows' bias indices and gradients.
  FeatureTower* out_ = nullptr;
  SparseGrad cands_;          // [C] rows only (D = 0)
  std::vector<float> Wu_;     // [C, D]: the distinct rows, from the tower
  std::vector<float> bu_;     // [C]: their biases (0 where the id part is dropped)
  std::vector<float> dWu_;    // [C, D]: their gradient
  std::vector<int32_t> bk_;   // [C]
  std::vector<float> dbk_;    // [C]
};

}  // namespace grurec
