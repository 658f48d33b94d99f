#include "core/item_tower.hpp"

#include <algorithm>
#include <cstring>
#include <utility>

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
    if (m == 0.0f || (keep_rows_ && keep_rows_[b] == 0.0f)) continue;
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
  for (int64_t b = 0; b < n; ++b)
    if (!keep_rows_ || keep_rows_[b] != 0.0f) k.add(I, dx + b * I, grads_->touch(items[b]));
}

void TableTower::apply(const SparseOptimizer& opt, int nt) {
  if (grads_ != &own_) return;
  opt.rows(table_, own_, nt);
  own_.clear();
}

}  // namespace grurec

namespace grurec {

FeatureTower::FeatureTower(std::unique_ptr<ItemTower> id, const ItemFeatureInputs& f,
                           int64_t max_rows, int nt)
    : id_(std::move(id)), f_(f), nt_(nt) {
  dim_ = id_->dim();
  projected_ = id_->projected();
  keep_.assign(max_rows, 1.0f);
  if (f_.id_dropout > 0) id_->skip_rows(keep_.data());
  zb_.resize(max_rows * f_.Z);
  dWz_.assign(f_.Z * dim_, 0.0f);
  grads_.resize(f_.fields.size());
  for (size_t k = 0; k < f_.fields.size(); ++k) {
    const FeatureField& fd = f_.fields[k];
    // At most V + 1 distinct rows, and at most max_rows * (longest list).
    int64_t longest = 0;
    for (int64_t i = 0; i < f_.n_items; ++i)
      longest = std::max<int64_t>(longest, fd.offsets[i + 1] - fd.offsets[i]);
    const int64_t cap = std::max<int64_t>(1, std::min<int64_t>(fd.table.rows, max_rows * longest));
    grads_[k].init(fd.table.rows, dim_, cap);
  }
}

void FeatureTower::gather(const int32_t* items, int64_t n, float* x, Rng& rng) {
  const int64_t I = dim_, Z = f_.Z;
  id_->gather(items, n, x, rng);
  if (f_.id_dropout > 0) {
    const uint64_t thr = static_cast<uint64_t>(static_cast<double>(f_.id_dropout) * 4294967296.0);
    for (int64_t b = 0; b < n; ++b) {
      keep_[b] = (rng.next() >> 32) < thr ? 0.0f : 1.0f;
      if (keep_[b] == 0.0f) std::fill(x + b * I, x + (b + 1) * I, 0.0f);
    }
  }
  for (const FeatureField& fd : f_.fields) {
    for (int64_t b = 0; b < n; ++b) {
      const int64_t o0 = fd.offsets[items[b]], o1 = fd.offsets[items[b] + 1];
      if (o1 == o0) continue;
      const float inv = 1.0f / static_cast<float>(o1 - o0);
      float* xb = x + b * I;
      for (int64_t c = o0; c < o1; ++c) {
        if (fd.ids[c] == 0) continue;  // the zero row
        const float* row = fd.table.w + static_cast<int64_t>(fd.ids[c]) * I;
        for (int64_t j = 0; j < I; ++j) xb[j] += inv * row[j];
      }
    }
  }
  if (Z > 0) {
    for (int64_t b = 0; b < n; ++b)
      std::memcpy(&zb_[b * Z], f_.z + static_cast<int64_t>(items[b]) * Z, Z * sizeof(float));
    // x[n, I] += zb[n, Z] W_z[Z, I]
    K().sgemm(n, I, Z, 1.0f, zb_.data(), Z, 1, f_.W_z.w, I, 1, 1.0f, x, I, nt_);
  }
}

void FeatureTower::scatter_grad(const int32_t* items, int64_t n, float* dx) {
  const int64_t I = dim_, Z = f_.Z;
  for (size_t k = 0; k < f_.fields.size(); ++k) {
    const FeatureField& fd = f_.fields[k];
    for (int64_t b = 0; b < n; ++b) {
      const int64_t o0 = fd.offsets[items[b]], o1 = fd.offsets[items[b] + 1];
      if (o1 == o0) continue;
      const float inv = 1.0f / static_cast<float>(o1 - o0);
      const float* d = dx + b * I;
      for (int64_t c = o0; c < o1; ++c) {
        if (fd.ids[c] == 0) continue;
        float* g = grads_[k].touch(fd.ids[c]);
        for (int64_t j = 0; j < I; ++j) g[j] += inv * d[j];
      }
    }
  }
  // dW_z[Z, I] += zb[n, Z]^T dx[n, I]
  if (Z > 0) K().sgemm(Z, I, n, 1.0f, zb_.data(), 1, Z, dx, I, 1, 1.0f, dWz_.data(), I, nt_);
  id_->scatter_grad(items, n, dx);  // skips the dropped rows (skip_rows)
}

void FeatureTower::apply(const SparseOptimizer& opt, int nt) {
  id_->apply(opt, nt);
  for (size_t k = 0; k < f_.fields.size(); ++k) {
    opt.rows(f_.fields[k].table, grads_[k], nt);
    grads_[k].clear();
  }
  if (f_.Z > 0) {
    opt.dense(f_.W_z, dWz_.data());
    std::fill(dWz_.begin(), dWz_.end(), 0.0f);
  }
}

}  // namespace grurec
