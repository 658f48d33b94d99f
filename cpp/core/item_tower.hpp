// The item tower: the input vectors of items by id, with embedding dropout,
// and the way their gradients go back into the item tables.
//
// Three id-only forms (train.hpp's input modes):
//   one-hot (0): a row of layer 0's W_ih [N, 3H0], i.e. the input already
//                projected (x W_ih0 for a one-hot x); dropout drops the
//                single active input, one mask value per row;
//   embedding (1): a row of a separate table [N, E];
//   shared (2): the item's output row W_y [N, D]; its gradient joins the
//                output rows' gradients of the sampled head.
// n rows per call, I = dim() wide; items are valid ids (a window's -1
// padding is left out by the caller).
//
// FeatureTower wraps any of them and adds the item's features
// (core/item_features.hpp):
//   row = keep * id_row + sum_f mean_{c in cats_f(item)} T_f[c] + z[item] W_z
// keep is 0 with probability id_dropout during training (else 1), so the
// feature path learns to stand alone for items without a trained id row.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "core/item_features.hpp"
#include "core/optim.hpp"
#include "core/rng.hpp"

namespace grurec {

class ItemTower {
 public:
  virtual ~ItemTower() = default;
  // Width I of a gathered row.
  int64_t dim() const { return dim_; }
  // True when rows are layer-0 pre-activations (x W_ih, without bias), not inputs.
  bool projected() const { return projected_; }
  // x [n, I] = the rows of items, dropout applied (the mask is drawn from rng).
  virtual void gather(const int32_t* items, int64_t n, float* x, Rng& rng) = 0;
  // Accumulates the gradient dx [n, I] of the gathered rows (dx is consumed).
  virtual void scatter_grad(const int32_t* items, int64_t n, float* dx) = 0;
  // Updates the touched rows (a tower that shares the head's rows leaves it
  // to the head).
  virtual void apply(const SparseOptimizer& opt, int nt) = 0;
  // keep [max_rows]: scatter_grad leaves out row b where keep[b] == 0 (a
  // FeatureTower's dropped id parts: never touched, as a touched row with a
  // zero gradient would still move by momentum). null: every row.
  void skip_rows(const float* keep) { keep_rows_ = keep; }

 protected:
  int64_t dim_ = 0;
  bool projected_ = false;
  const float* keep_rows_ = nullptr;
};

// Mode 0: rows of W_ih0 [N, 3H0].
class OneHotTower final : public ItemTower {
 public:
  OneHotTower(const Param& W_ih0, float dropout, int64_t max_rows);
  void gather(const int32_t* items, int64_t n, float* x, Rng& rng) override;
  void scatter_grad(const int32_t* items, int64_t n, float* dx) override;
  void apply(const SparseOptimizer& opt, int nt) override;

 private:
  Param table_;
  float dropout_;
  std::vector<float> mask_;  // [max_rows]
  SparseGrad grads_;         // [max_rows, 3H0]
};

// Modes 1 and 2: rows of a table [N, I]; shared != null: the table is W_y and
// the gradients go to *shared (the head's rows), else to the tower's own.
class TableTower final : public ItemTower {
 public:
  TableTower(const Param& table, float dropout, int64_t max_rows, SparseGrad* shared);
  void gather(const int32_t* items, int64_t n, float* x, Rng& rng) override;
  void scatter_grad(const int32_t* items, int64_t n, float* dx) override;
  void apply(const SparseOptimizer& opt, int nt) override;

 private:
  Param table_;
  float dropout_;
  std::vector<float> mask_;  // [max_rows, I]
  SparseGrad own_;           // [max_rows, I] when not shared
  SparseGrad* grads_;
};

// The id tower's rows plus the feature projection. For a projected id tower
// (one-hot input) the tables and W_z are in the same projected space [., 3H0].
class FeatureTower final : public ItemTower {
 public:
  // f (and the arrays it points to) must outlive the tower; nt threads for
  // the z products.
  FeatureTower(std::unique_ptr<ItemTower> id, const ItemFeatureInputs& f, int64_t max_rows,
               int nt);
  void gather(const int32_t* items, int64_t n, float* x, Rng& rng) override;
  void scatter_grad(const int32_t* items, int64_t n, float* dx) override;
  void apply(const SparseOptimizer& opt, int nt) override;

  // For tests: the accumulated gradients since the last apply.
  const SparseGrad& field_grad(size_t f) const { return grads_[f]; }
  const float* dW_z() const { return dWz_.data(); }
  const float* keep() const { return keep_.data(); }

 private:
  std::unique_ptr<ItemTower> id_;
  ItemFeatureInputs f_;
  int nt_;
  std::vector<float> keep_;        // [max_rows] 1: id part kept, 0: dropped
  std::vector<float> zb_;          // [max_rows, Z] gathered z rows
  std::vector<float> dWz_;         // [Z, I]
  std::vector<SparseGrad> grads_;  // per field: touched rows [cap_f, I]
};

}  // namespace grurec
