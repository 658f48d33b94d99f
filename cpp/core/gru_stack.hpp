// A stack of GRU layers (gru.hpp) as an encoder, trained with one-step
// back-propagation (T = 1, no gradient into the carried state), as GRU4Rec.
//
// Dropout: dropout_hidden on every layer's output; the dropped output is both
// what the next layer (or the head) reads and the state the layer starts from
// at the next step, as in the official GRU4Rec. A slot's state is zero after
// a reset.
//
// Layer l: H_l units, input width I_l (I_0 = the tower's width; a projected
// tower gives layer 0's input pre-activations, so W_ih0 is not multiplied
// here and its rows are updated by the tower).
#pragma once

#include <cstdint>
#include <vector>

#include "core/encoder.hpp"

namespace grurec {

struct GruStackWeights {
  std::vector<int64_t> layers;  // H_l
  std::vector<Param> W_ih;      // [I_l, 3H_l]
  std::vector<Param> W_hh;      // [H_l, 3H_l]
  std::vector<Param> b;         // [1, 3H_l]
  std::vector<Param> b_hh;      // [1, 3H_l] reset-after; w null: reset-before
};

class GruStack final : public Encoder {
 public:
  // I0: input width; projected: x of forward is layer 0's x W_ih0 [B, 3H_0].
  GruStack(const GruStackWeights& w, int64_t I0, bool projected, float dropout_hidden,
           int64_t Bmax);
  const float* forward(const Window& w, const float* x, Rng& rng, int nt) override;
  void backward(const Window& w, float* dq, float* dx, int nt) override;
  void apply(const SparseOptimizer& opt, int nt) override;
  void carry(const SlotUpdate& u) override;

 private:
  GruStackWeights w_;
  int64_t L_ = 0, I0_ = 0;
  bool projected_;
  float dropout_;
  const float* x_ = nullptr;  // forward's x (layer 0 input; null when projected)
  // Per layer, [Bmax, H] or [Bmax, 3H], and the weight gradients.
  std::vector<std::vector<float>> state_, out_, gates_, rh_, mask_h_, y_, dy_;
  std::vector<std::vector<float>> dW_ih_, dW_hh_, db_, dbh_;
};

}  // namespace grurec
