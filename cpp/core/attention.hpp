// The attention readout of NARM (Li et al., CIKM 2017): the query that
// scores the items after position t of a sequence is built from the last
// hidden state h_t (NARM's global encoder) and an attention-weighted sum of
// the states h_j the attention can see (its local encoder):
//
//   e_tj = v . sigmoid(A1^T h_t + A2^T h_j)     j in span(t)
//   alpha_tj = softmax_j(e_tj)                   (NARM's paper leaves e unnormalised)
//   c_t = sum_j alpha_tj h_j
//   q_t = [h_t ; c_t] W_q                        (NARM's bilinear decoder: W_q maps
//                                                 into the item space, W_y stays the head)
//
// span(t): the positions of t's window, j = floor(t / T) T .. t (T the
// training window, bptt), plus up to M = memory positions before the window:
// j = max(0, floor(t / T) T - M) .. t. In training a slot takes a new
// sequence only at a window boundary, so a window holds a sequence's
// positions kT .. kT + T - 1; back-propagation reaches the window's states,
// and the M earlier ones (states of earlier windows, kept per slot) are read
// as constants: the weights get their gradients (A2, v, W_q), the GRU gets
// none through them (Transformer-XL's memory). M = 0: the window only.
// Inference (infer.cpp) uses the same spans, so both see the same thing.
// T >= the sequence's length, or M >= it: attention over the whole sequence.
//
// H: top-layer width, A: attention width, D: query width (W_y's columns),
// T steps of a window, B slots, n positions of one sequence.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <vector>

#include "core/encoder.hpp"
#include "core/optim.hpp"

namespace grurec {

struct AttentionWeights {
  Param A1;   // [H, A] query side
  Param A2;   // [H, A] key side
  Param v;    // [A, 1]
  Param W_q;  // [2H, D]: rows 0..H-1 read h_t, rows H..2H-1 read c_t
  int64_t memory = 0;  // M: earlier states read as constants (see above)
  bool active() const { return W_q.w != nullptr; }
  // The first position of span(t) for window T (T <= 0: the whole sequence).
  int64_t span_start(int64_t t, int64_t T) const {
    return T > 0 ? std::max<int64_t>(0, (t / T) * T - memory) : 0;
  }
};

// One position: alpha [n] and c [H] from the states y (row j at y + j * ys),
// a1 [A] (= A1^T h_t) and a2 (row j at a2 + j * a2s), over j < n.
void attend_forward(float* c, float* alpha, const float* y, int64_t ys, const float* a1,
                    const float* a2, int64_t a2s, const float* v, int64_t n, int64_t H,
                    int64_t A);
// Its backward from dc [H]: adds into dy rows (stride ys), da1 [A], da2 rows
// (stride a2s) and dv [A]. scratch: [n] floats.
void attend_backward(float* dy, float* da1, float* da2, float* dv, const float* dc,
                     const float* alpha, const float* y, int64_t ys, const float* a1,
                     const float* a2, int64_t a2s, const float* v, int64_t n, int64_t H,
                     int64_t A, float* scratch);

// Inference over one sequence of n states y [n, H]: q [n, D], the query
// after every position (spans of window T; T <= 0: the whole sequence).
// alpha_last [n] (optional): the attention weights of the last position
// (zero outside its span). Spans as above, with w.memory. Single-threaded;
// scratch is resized as needed.
void attention_queries(const AttentionWeights& w, const float* y, int64_t n, int64_t T,
                       int64_t H, float* q, float* alpha_last, std::vector<float>& scratch);

// Only the query after the last position, q [D] (alpha [n] optional, as
// alpha_last above).
void attention_last(const AttentionWeights& w, const float* y, int64_t n, int64_t T, int64_t H,
                    float* q, float* alpha, std::vector<float>& scratch);

// The readout as an encoder around another one (a GruStack): forward runs
// the inner encoder, then the attention over every valid position of each
// slot's window (valid: target >= 0; a slot's valid positions are a prefix
// of the window, so span(t) is the slot's memory + 0..t); backward sends the
// gradients of every window state the attention read back into the inner
// encoder; carry appends the window's valid states to the slot's memory
// (the last M kept), moves it with the slot and clears it on a reset.
class AttentionReadout final : public Encoder {
 public:
  AttentionReadout(std::unique_ptr<Encoder> inner, const AttentionWeights& w, int64_t H,
                   int64_t Bmax, int64_t Tmax);
  const float* forward(const Window& w, const float* x, Rng& rng, int nt) override;
  void backward(const Window& w, float* dq, float* dx, int nt) override;
  void apply(const SparseOptimizer& opt, int nt) override;
  void carry(const SlotUpdate& u) override;

 private:
  std::unique_ptr<Encoder> inner_;
  AttentionWeights w_;
  int64_t H_, A_, D_, Tmax_, M_, K_;  // K_ = M_ + Tmax_: key rows per slot
  int64_t B_ = 0, T_ = 0;       // the last forward's window
  const float* y_ = nullptr;    // [T, B, H] the inner encoder's outputs
  const uint8_t* valid_ = nullptr;
  std::vector<uint8_t> ok_;     // [T, Bmax] position has a target
  std::vector<float> a1_, a2_;  // [T, Bmax, A]
  std::vector<float> alpha_;    // [T, Bmax, K] row (t, b): weights over the span
  // Per slot b, K key rows: the memory right-aligned in rows M - m_b .. M - 1
  // (kept there between windows: key_y_ is the memory's storage), the
  // window's states in rows M .. M + T - 1 (states y and a2 = A2^T y).
  std::vector<int64_t> mem_n_;  // [Bmax] the memory's rows m_b
  std::vector<float> key_y_, key_a2_;    // [Bmax, K, H], [Bmax, K, A]
  std::vector<float> key_dy_, key_da2_;  // [Bmax, K, H], [Bmax, K, A]
  std::vector<float> c_, q_;    // [T, Bmax, H], [T, Bmax, D]
  std::vector<float> dy_, dc_;  // [T, Bmax, H]
  std::vector<float> da1_, da2_;  // [T, Bmax, A]
  std::vector<float> dvb_;      // [Bmax, A] per slot, summed in slot order
  std::vector<float> scratch_;  // [Bmax, K]
  std::vector<float> dA1_, dA2_, dv_, dWq_;
};

}  // namespace grurec
