#include "core/item_tower.hpp"

#include <cstring>

#include "kernels.hpp"

namespace grurec {

OneHotTower::OneHotTower(const Param& W_ih0, float dropout, int64_t max_rows)
    : table_(W_ih0), dropout_(dropout) {
  dim_ = W_ih0.cols;
  projected_ = true;
  mask_.resize(max_rows);
  grads_.init(W_ih0.rows, dim_, max_rows);
}

void OneHotTower::gather(const int32_t* items, int64_t n, float* x, Rng& rng) {
  const int64_t I = dim_;
  if (dropout_ > 0) {
    draw_mask(rng, dropout_, mask_.data(), n);
    for (int64_t b = 0; b < n; ++b) {
      const float m = mask_[b];
      const float* row = table_.w + static_cast<int64_t>(items[b]) * I;
      float* xb = x + b * I;
      for (int64_t j = 0; j < I; ++j) xb[j] = m * row[j];
    }
  } else {
    for (int64_t b = 0; b < n; ++b)
      std::memcpy(x + b * I, table_.w + static_cast<int64_t>(items[b]) * I, I * sizeof(float));
  }
}

void OneHotTower::scatter_grad(const int32_t* items, int64_t n, float* dx) {
  const int64_t I = dim_;
  for (int64_t b = 0; b < n; ++b) {
    const float m = dropout_ > 0 ? mask_[b] : 1.0f;
    if (m == 0.0f) continue;
    float* g = grads_.touch(items[b]);
    const float* d = dx + b * I;
    for (int64_t j = 0; j < I; ++j) g[j] += m * d[j];
  }
}

void OneHotTower::apply(const SparseOptimizer& opt, int nt) {
  opt.rows(table_, grads_, nt);
  grads_.clear();
}

TableTower::TableTower(const Param& table, float dropout, int64_t max_rows, SparseGrad* shared)
    : table_(table), dropout_(dropout), grads_(shared ? shared : &own_) {
  dim_ = table.cols;
  mask_.resize(max_rows * dim_);
  if (!shared) own_.init(table.rows, dim_, max_rows);
}

void TableTower::gather(const int32_t* items, int64_t n, float* x, Rng& rng) {
  const int64_t I = dim_;
  for (int64_t b = 0; b < n; ++b)
    std::memcpy(x + b * I, table_.w + static_cast<int64_t>(items[b]) * I, I * sizeof(float));
  if (dropout_ > 0) {
    draw_mask(rng, dropout_, mask_.data(), n * I);
    mul_into(x, mask_.data(), x, n * I);
  }
}

void TableTower::scatter_grad(const int32_t* items, int64_t n, float* dx) {
  const Kernels& k = K();
  const int64_t I = dim_;
  if (dropout_ > 0) mul_into(dx, mask_.data(), dx, n * I);
  // Shared: an input row adds to its output row when the item is also a
  // candidate, else it becomes a touched row of its own.
  for (int64_t b = 0; b < n; ++b) k.add(I, dx + b * I, grads_->touch(items[b]));
}

void TableTower::apply(const SparseOptimizer& opt, int nt) {
  if (grads_ != &own_) return;
  opt.rows(table_, own_, nt);
  own_.clear();
}

}  // namespace grurec
