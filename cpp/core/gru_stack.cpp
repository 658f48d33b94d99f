#include "core/gru_stack.hpp"

#include <algorithm>
#include <cstring>
#include <utility>

#include "gru.hpp"

namespace grurec {

GruStack::GruStack(const GruStackWeights& w, int64_t I0, bool projected, float dropout_hidden,
                   int64_t Bmax, int64_t Tmax)
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
  dA_.resize(L_);
  const int64_t R = Tmax * Bmax;
  for (int64_t l = 0; l < L_; ++l) {
    const int64_t H = w.layers[l];
    state_[l].assign(Bmax * H, 0.0f);
    out_[l].resize(R * H);
    gates_[l].resize(R * 3 * H);
    rh_[l].resize(R * H);
    if (dropout_hidden > 0) mask_h_[l].resize(R * H);
    y_[l].resize(R * H);
    if (l < L_ - 1) dy_[l].resize(R * H);  // the top layer's is dq
    if (!(l == 0 && projected)) {
      dW_ih_[l].resize(w.W_ih[l].rows * w.W_ih[l].cols);
      dA_[l].resize(R * 3 * H);
    }
    dW_hh_[l].resize(H * 3 * H);
    db_[l].resize(3 * H);
    if (w.b_hh[l].w) dbh_[l].resize(3 * H);
  }
}

const float* GruStack::forward(const Window& win, const float* x, Rng& rng, int nt) {
  const int64_t B = win.B, T = win.T;
  T_ = T;
  B_ = B;
  x_ = projected_ ? nullptr : x;
  if (projected_) {
    // Layer 0's pre-activations of every step: b + the tower's row (x W_ih0).
    const int64_t H3 = 3 * w_.layers[0];
    const float* b0 = w_.b[0].w;
    for (int64_t r = 0; r < T * B; ++r) {
      float* g = gates_[0].data() + r * H3;
      const float* xr = x + r * H3;
      for (int64_t j = 0; j < H3; ++j) g[j] = b0[j] + xr[j];
    }
  } else if (x_) {
    // Layer 0's input pre-activations b + x W_ih0 of every step in one
    // product of T B rows (the steps below skip theirs): per element the
    // arithmetic of a step's own product.
    gru_input_forward(gates_[0].data(), x_, w_.W_ih[0].w, w_.b[0].w, T * B, I0_, w_.layers[0],
                      nt);
  }
  // Step by step (the next step starts from this step's dropped output),
  // layer by layer within a step: the mask draws go step-major, layer-minor,
  // which for T = 1 is GRU4Rec's order.
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t l = 0; l < L_; ++l) {
      const int64_t H = w_.layers[l];
      const int64_t I = l == 0 ? (projected_ ? 0 : I0_) : w_.layers[l - 1];
      // Layer 0's input product is done (above), or it has none.
      const float* xl = l == 0 ? nullptr : y_[l - 1].data() + t * B * I;
      const float* h0 = t == 0 ? state_[l].data() : y_[l].data() + (t - 1) * B * H;
      float* out = out_[l].data() + t * B * H;
      gru_forward(out, gates_[l].data() + t * B * 3 * H, rh_[l].data() + t * B * H, xl, h0,
                  w_.W_ih[l].w, w_.W_hh[l].w, w_.b[l].w, w_.b_hh[l].w, 1, B, I, H, nt);
      float* y = y_[l].data() + t * B * H;
      if (dropout_ > 0) {
        float* m = mask_h_[l].data() + t * B * H;
        draw_mask(rng, dropout_, m, B * H);
        mul_into(out, m, y, B * H);
      } else {
        std::memcpy(y, out, B * H * sizeof(float));
      }
    }
  }
  return y_[L_ - 1].data();
}

void GruStack::backward(const Window& win, float* dq, float* dx, int nt) {
  const int64_t B = win.B, T = win.T;
  for (int64_t l = L_ - 1; l >= 0; --l) {
    const int64_t H = w_.layers[l];
    const bool proj = (l == 0 && projected_);
    const int64_t I = l == 0 ? (proj ? 0 : I0_) : w_.layers[l - 1];
    // dy [T, B, H]: the gradient of this layer's dropped outputs y_t from
    // above; the step after t adds its gradient w.r.t. y_t (its h0) here.
    float* dy = l == L_ - 1 ? dq : dy_[l].data();
    float* dxl = l > 0 ? dy_[l - 1].data() : (proj ? nullptr : dx);
    if (dxl) std::fill(dxl, dxl + T * B * I, 0.0f);
    if (!proj) std::fill(dW_ih_[l].begin(), dW_ih_[l].end(), 0.0f);
    std::fill(dW_hh_[l].begin(), dW_hh_[l].end(), 0.0f);
    std::fill(db_[l].begin(), db_[l].end(), 0.0f);
    std::fill(dbh_[l].begin(), dbh_[l].end(), 0.0f);
    // Step by step, the input pre-activations' gradients go to dA (the
    // caller's dx when projected); dW_ih += x^T dA and dx += dA W_ih^T then
    // take one product each over the window's T B rows.
    float* dA = proj ? dx : dA_[l].data();
    for (int64_t t = T - 1; t >= 0; --t) {
      float* d = dy + t * B * H;  // complete now: step t+1 has added its part
      if (dropout_ > 0) mul_into(d, mask_h_[l].data() + t * B * H, d, B * H);
      const float* h0 = t == 0 ? state_[l].data() : y_[l].data() + (t - 1) * B * H;
      // Truncated: no gradient into the carried state (t = 0).
      float* dh0 = t == 0 ? nullptr : dy + (t - 1) * B * H;
      gru_backward(nullptr, dh0, nullptr, dW_hh_[l].data(), db_[l].data(),
                   w_.b_hh[l].w ? dbh_[l].data() : nullptr, dA + t * B * 3 * H, d,
                   gates_[l].data() + t * B * 3 * H, rh_[l].data() + t * B * H, nullptr, h0,
                   out_[l].data() + t * B * H, nullptr, w_.W_hh[l].w, 1, B, I, H, nt);
    }
    if (!proj)
      gru_input_backward(dxl, dW_ih_[l].data(), dA, l == 0 ? x_ : y_[l - 1].data(),
                         w_.W_ih[l].w, T * B, I, H, nt);
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
  const int64_t last = T_ - 1, Bw = B_;  // the window's last step, its slot count
  for (int64_t l = 0; l < L_; ++l) {
    const int64_t H = w_.layers[l];
    float* s = state_[l].data();
    std::memcpy(s, y_[l].data() + last * Bw * H, Bw * H * sizeof(float));
    for (int64_t i = 0; i < u.n_moves; ++i)
      std::memcpy(s + u.to[i] * H, s + u.from[i] * H, H * sizeof(float));
    for (int64_t b = 0; b < u.B; ++b)
      if (u.reset[b]) std::fill(s + b * H, s + (b + 1) * H, 0.0f);
  }
}

}  // namespace grurec
