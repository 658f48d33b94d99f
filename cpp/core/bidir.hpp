// A bidirectional readout: beside the forward GRU stack, a reversed GRU reads
// the forward top-layer states of a span backwards and its final state joins
// the query (Schuster & Paliwal's bidirectional RNN, applied to the prefix a
// next-item query may see):
//
//   b_t = the reversed GRU over h_t, h_{t-1}, ..., h_{s0} from a zero state
//         (s0 = floor(t / T) T: span(t), the aligned spans of the attention
//         readout, core/attention.hpp; T <= 0 in inference: s0 = 0)
//   q_t = [h_t ; b_t] W_q                    scores: q_t W_y^T + b_y
//
// b_t is a summary of the prefix read from its newest click to its oldest,
// so it ends on the session's start. Every prefix is re-encoded: the
// queries of a window of T positions cost T (T + 1) / 2 reversed GRU steps
// beside the forward stack's T. W_q starts as [I; 0]: an untrained model
// scores as GRU4Rec.
//
// The reversed GRU is one reset-after layer (gru.hpp) of Hr units over
// inputs of width H (the forward top layer). It runs many spans as one
// batch: the spans sorted by length, longest first, so at step s the spans
// still running are a prefix of the batch and each step is one gru_forward
// call of T = 1 over them (the same kernels as the forward stack). Spans
// share their inputs (position j's state is read by every span that
// covers j), so the input product h_j W_ih + b is computed once per state,
// not once per reversed step, and its gradients are summed per state before
// the two weight products of backward: the O(T^2) part is only the
// recurrent product and the gate arithmetic.
//
// H: forward top-layer width, Hr: reversed width, D: query width (W_y's
// columns), N spans, T window steps, B slots.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "core/encoder.hpp"
#include "core/optim.hpp"

namespace grurec {

struct BiWeights {
  Param W_ih;  // [H, 3Hr]
  Param W_hh;  // [Hr, 3Hr]
  Param b;     // [1, 3Hr] input side
  Param b_hh;  // [1, 3Hr] recurrent side (reset-after)
  Param W_q;   // [H + Hr, D]: rows 0..H-1 read h_t, rows H.. read b_t
  bool active() const { return W_q.w != nullptr; }
  int64_t Hr() const { return W_hh.rows; }
};

// The reversed GRU over N spans of the M rows of y [M, H]: span n reads
// rows end[n], end[n] - step, ..., end[n] - (len[n] - 1) step, in that
// order, from a zero state; out [N, Hr] its final states. Keeps what
// backward needs (and y's address) until the next forward.
class ReverseRuns {
 public:
  void forward(const BiWeights& w, const float* y, int64_t M, int64_t H, int64_t step,
               const int64_t* end, const int64_t* len, int64_t N, float* out, int nt);
  // From dout [N, Hr] (the final states' gradients): adds into dy [M, H] and
  // into the weight gradients dW_ih [H, 3Hr], dW_hh [Hr, 3Hr], db, dbh [3Hr].
  void backward(const BiWeights& w, const float* dout, float* dy, float* dW_ih, float* dW_hh,
                float* db, float* dbh, int nt);

 private:
  const float* y_ = nullptr;
  int64_t M_ = 0, H_ = 0, Hr_ = 0, N_ = 0, S_ = 0, step_ = 0;
  std::vector<int64_t> order_;   // [N] span of batch row i (longest first)
  std::vector<int64_t> end_, len_;  // [N] by batch row
  std::vector<int64_t> Bs_, off_;   // [S] running spans at step s, their first row
  std::vector<float> G_;            // [M, 3Hr] y W_ih + b per row of y; backward: its gradient
  std::vector<float> h_, gates_, rh_;  // [sum Bs, Hr], [., 3Hr], [., Hr]
  std::vector<float> dh_, dA_, zero_;  // [sum Bs, Hr], [max Bs, 3Hr], [N, Hr]
};

// Inference over one sequence of n states y [n, H]: q [n, D], the query
// after every position (spans of window T; T <= 0: the whole prefix).
void bi_queries(const BiWeights& w, const float* y, int64_t n, int64_t T, int64_t H, float* q,
                ReverseRuns& rr, std::vector<float>& scratch);
// Only the query after the last position, q [D] (may be null); emb [H + Hr]
// (optional): the session embedding [h_last ; b_last].
void bi_last(const BiWeights& w, const float* y, int64_t n, int64_t T, int64_t H, float* q,
             float* emb, ReverseRuns& rr, std::vector<float>& scratch);

// The readout as an encoder around a GruStack: forward runs the stack, then
// the reversed GRU over span(t) of every position with a target (a slot's
// valid positions are a prefix of the window, so span(t) is 0..t of the
// window) as one batch; backward sends the gradients of every state a span
// read, plus the query's own, into the stack's BPTT.
class BiReadout final : public Encoder {
 public:
  BiReadout(std::unique_ptr<Encoder> inner, const BiWeights& w, int64_t H, int64_t Bmax,
            int64_t Tmax);
  const float* forward(const Window& w, const float* x, Rng& rng, int nt) override;
  void backward(const Window& w, float* dq, float* dx, int nt) override;
  void apply(const SparseOptimizer& opt, int nt) override;
  void carry(const SlotUpdate& u) override { inner_->carry(u); }

 private:
  std::unique_ptr<Encoder> inner_;
  BiWeights w_;
  int64_t H_, Hr_, D_;
  const float* y_ = nullptr;      // [T, B, H] the stack's outputs
  int64_t n_ = 0;                 // spans of the last forward
  std::vector<uint8_t> ok_;       // [T, Bmax] position has a target
  std::vector<int64_t> end_, len_, row_;  // [N] the spans: last row, length; row of b_t
  ReverseRuns rr_;
  std::vector<float> bn_;         // [N, Hr] the spans' final states
  std::vector<float> bf_;         // [T, Bmax, Hr] b_t by row (zero without a target)
  std::vector<float> q_, dy_;     // [T, Bmax, D], [T, Bmax, H]
  std::vector<float> dbf_, dbn_;  // [T, Bmax, Hr], [N, Hr]
  std::vector<float> dW_ih_, dW_hh_, db_, dbh_, dWq_;
};

}  // namespace grurec
