// One GRU layer, forward and backward over T steps (T = 1 is a single step),
// for a batch of B independent sequences.
//
// Two cell forms (Cho et al. 2014), row vectors, so x W:
//
// reset-before (GRU4Rec's original Theano form; one bias b):
//   r_t  = sigmoid(x_t W_r + h_{t-1} U_r + b_r)            reset gate
//   z_t  = sigmoid(x_t W_z + h_{t-1} U_z + b_z)            update gate
//   n_t  = tanh(x_t W_n + (r_t * h_{t-1}) U_n + b_n)       candidate
// reset-after (cuDNN / torch.nn.GRU, and the official PyTorch GRU4Rec for
// every layer not fed by one-hot ids; biases b = b_ih and b_hh):
//   [a_r | a_z | a_n] = x_t W_ih + b_ih,  [p_r | p_z | p_n] = h_{t-1} W_hh + b_hh
//   r_t = sigmoid(a_r + p_r),  z_t = sigmoid(a_z + p_z)
//   n_t = tanh(a_n + r_t * p_n)        (the reset gate scales the product, bias included)
// both:
//   h_t  = (1 - z_t) * h_{t-1} + z_t * n_t
// z_t weights the new candidate and 1 - z_t keeps the old state (torch names
// the complement z; with symmetric initialisation the two are the same model).
//
// Weight layout, gate order [r | z | n] along the last axis:
//   W_ih [I, 3H]  = [W_r | W_z | W_n]   (a one-hot input selects a row)
//   W_hh [H, 3H]  = [U_r | U_z | U_n]
//   b    [3H]     = [b_r | b_z | b_n]   (input side)
//   b_hh [3H]     recurrent side, reset-after only
//
// Cache written by forward and read by backward:
//   gates [T, B, 3H]  the activations [r | z | n] of every step
//   rh    [T, B, H]   reset-before: r_t * h_{t-1};  reset-after: p_n
// Backward ADDS into every gradient buffer (dx, dh0, dW_ih, dW_hh, db, db_hh);
// zero them first for a plain gradient. The whole input product of all T
// steps (and its gradients) is one large GEMM; only the recurrent products
// run step by step (reset-after: one [B,H]x[H,3H] product per step).
#pragma once

#include <cstdint>

namespace grurec {

// h_out [T,B,H]; gates, rh: cache (above); x [T,B,I]; h0 [B,H].
// x may be null: gates then already hold x W_ih + b (one-hot input is a row
// lookup of W_ih, done by the caller) and W_ih, b are not read.
// b_hh null: reset-before; else reset-after.
void gru_forward(float* h_out, float* gates, float* rh, const float* x,
                 const float* h0, const float* W_ih, const float* W_hh,
                 const float* b, const float* b_hh, int64_t T, int64_t B, int64_t I,
                 int64_t H, int num_threads);

// dh_out [T,B,H]: gradient of the loss w.r.t. every h_t (zero where the loss
// does not read h_t). dx [T,B,I] and dW_ih may be null (skipped; they are
// when x or W_ih is null); dA, if not
// null, receives the pre-activation gradients [T,B,3H] (what a sparse
// embedding update needs), otherwise scratch is used. dh0 may be null (no
// gradient into the initial state, as in one-step training). db_hh non-null
// means the forward ran reset-after (the cache differs), null reset-before.
void gru_backward(float* dx, float* dh0, float* dW_ih, float* dW_hh, float* db,
                  float* db_hh, float* dA, const float* dh_out, const float* gates,
                  const float* rh, const float* x, const float* h0,
                  const float* h_out, const float* W_ih, const float* W_hh,
                  int64_t T, int64_t B, int64_t I, int64_t H, int num_threads);

// The input side over R = T B rows, for callers that run the recurrence step
// by step (GruStack) and for gru_forward / gru_backward themselves:
// gates [R,3H] = b + x W_ih, and the gradients of that product from
// dA [R,3H]: dW_ih += x^T dA, dx += dA W_ih^T (each skipped when null).
void gru_input_forward(float* gates, const float* x, const float* W_ih, const float* b,
                       int64_t R, int64_t I, int64_t H, int num_threads);
void gru_input_backward(float* dx, float* dW_ih, const float* dA, const float* x,
                        const float* W_ih, int64_t R, int64_t I, int64_t H, int num_threads);

// Number of threads "0 = all cores" resolves to.
int default_num_threads();

}  // namespace grurec
