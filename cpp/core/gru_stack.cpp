#include "core/gru_stack.hpp"

#include <algorithm>
#include <cstring>
#include <utility>

#include "gru.hpp"

namespace grurec {

GruStack::GruStack(const GruStackWeights& w, int64_t I0, bool projected, float dropout_hidden,
                   int64_t Bmax)
    : w_(w), I0_(I0), projected_(projected), dropout_(dropout_hidden) {
  L_ = static_cast<int64_t>(w.layers.size());
  state_.resize(L_);
  out_.resize(L_);
  gates_.resize(L_);
  rh_.resize(L_);
  mask_h_.resize(L_);
  y_.resize(L_);
  dy_.resize(L_);
  dW_ih_.resize(L_);
  dW_hh_.resize(L_);
  db_.resize(L_);
  dbh_.resize(L_);
  for (int64_t l = 0; l < L_; ++l) {
    const int64_t H = w.layers[l];
    state_[l].assign(Bmax * H, 0.0f);
    out_[l].resize(Bmax * H);
    gates_[l].resize(Bmax * 3 * H);
    rh_[l].resize(Bmax * H);
    mask_h_[l].resize(Bmax * H);
    y_[l].resize(Bmax * H);
    if (l < L_ - 1) dy_[l].resize(Bmax * H);  // the top layer's is dq
    if (!(l == 0 && projected)) dW_ih_[l].resize(w.W_ih[l].rows * w.W_ih[l].cols);
    dW_hh_[l].resize(H * 3 * H);
    db_[l].resize(3 * H);
    if (w.b_hh[l].w) dbh_[l].resize(3 * H);
  }
}

const float* GruStack::forward(const Window& win, const float* x, Rng& rng, int nt) {
  const int64_t B = win.B;
  x_ = projected_ ? nullptr : x;
  if (projected_) {
    // Layer 0's pre-activations: b + the tower's row (x W_ih0).
    const int64_t H3 = 3 * w_.layers[0];
    const float* b0 = w_.b[0].w;
    for (int64_t b = 0; b < B; ++b) {
      float* g = gates_[0].data() + b * H3;
      const float* xb = x + b * H3;
      for (int64_t j = 0; j < H3; ++j) g[j] = b0[j] + xb[j];
    }
  }
  for (int64_t l = 0; l < L_; ++l) {
    const int64_t H = w_.layers[l];
    const int64_t I = l == 0 ? (projected_ ? 0 : I0_) : w_.layers[l - 1];
    const float* xl = l == 0 ? x_ : y_[l - 1].data();
    gru_forward(out_[l].data(), gates_[l].data(), rh_[l].data(), xl, state_[l].data(),
                w_.W_ih[l].w, w_.W_hh[l].w, w_.b[l].w, w_.b_hh[l].w, 1, B, I, H, nt);
    if (dropout_ > 0) {
      draw_mask(rng, dropout_, mask_h_[l].data(), B * H);
      mul_into(out_[l].data(), mask_h_[l].data(), y_[l].data(), B * H);
    } else {
      std::memcpy(y_[l].data(), out_[l].data(), B * H * sizeof(float));
    }
  }
  return y_[L_ - 1].data();
}

void GruStack::backward(const Window& win, float* dq, float* dx, int nt) {
  const int64_t B = win.B;
  for (int64_t l = L_ - 1; l >= 0; --l) {
    const int64_t H = w_.layers[l];
    const bool proj = (l == 0 && projected_);
    const int64_t I = l == 0 ? (proj ? 0 : I0_) : w_.layers[l - 1];
    float* dy = l == L_ - 1 ? dq : dy_[l].data();
    if (dropout_ > 0) mul_into(dy, mask_h_[l].data(), dy, B * H);
    float* dxl = l > 0 ? dy_[l - 1].data() : (proj ? nullptr : dx);
    if (dxl) std::fill(dxl, dxl + B * I, 0.0f);
    if (!proj) std::fill(dW_ih_[l].begin(), dW_ih_[l].end(), 0.0f);
    std::fill(dW_hh_[l].begin(), dW_hh_[l].end(), 0.0f);
    std::fill(db_[l].begin(), db_[l].end(), 0.0f);
    std::fill(dbh_[l].begin(), dbh_[l].end(), 0.0f);
    const float* xl = l == 0 ? x_ : y_[l - 1].data();
    gru_backward(dxl, nullptr, proj ? nullptr : dW_ih_[l].data(), dW_hh_[l].data(),
                 db_[l].data(), w_.b_hh[l].w ? dbh_[l].data() : nullptr, proj ? dx : nullptr,
                 dy, gates_[l].data(), rh_[l].data(), xl, state_[l].data(), out_[l].data(),
                 proj ? nullptr : w_.W_ih[l].w, w_.W_hh[l].w, 1, B, I, H, nt);
  }
}

void GruStack::apply(const SparseOptimizer& opt, int /*nt*/) {
  for (int64_t l = 0; l < L_; ++l) {
    if (!(l == 0 && projected_)) opt.dense(w_.W_ih[l], dW_ih_[l].data());
    opt.dense(w_.W_hh[l], dW_hh_[l].data());
    opt.dense(w_.b[l], db_[l].data());
    if (w_.b_hh[l].w) opt.dense(w_.b_hh[l], dbh_[l].data());
  }
}

void GruStack::carry(const SlotUpdate& u) {
  for (int64_t l = 0; l < L_; ++l) {
    std::swap(state_[l], y_[l]);
    const int64_t H = w_.layers[l];
    float* s = state_[l].data();
    for (int64_t i = 0; i < u.n_moves; ++i)
      std::memcpy(s + u.to[i] * H, s + u.from[i] * H, H * sizeof(float));
    for (int64_t b = 0; b < u.B; ++b)
      if (u.reset[b]) std::fill(s + b * H, s + (b + 1) * H, 0.0f);
  }
}

}  // namespace grurec
