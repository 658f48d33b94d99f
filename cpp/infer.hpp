// Inference: the GRU run over whole sessions, for recommend() (the state
// after a session's last event) and evaluate() (the state after every
// prefix). The hidden state starts at zero for every session; no dropout.
//
// Dimensions: S sessions, E events, L layers, H_l hidden units, HL = H_L.
#pragma once

#include <cstdint>

#include "interrupt.hpp"
#include "train.hpp"

namespace grurec {

// offsets [S+1] into items [E]; items are item indices, or -1 for an item
// the model does not know: such an event leaves the state unchanged.
// mode: input mode of the net (0 one-hot, 1 embedding, 2 shared; train.hpp).
//
// all_prefixes == false: out [S, HL] = last layer's state after the
//   session's last event (zero for an empty session).
// all_prefixes == true: out [E - S, HL]; every session must have at least
//   one event. For session s and position t < len_s - 1, row
//   (offsets[s] - s) + t is the state after events 0..t: the query that
//   predicts event t + 1.
// Threads split blocks of sessions; each block runs the layers as batched
// one-step products over its live sessions.
// stop (interrupt.hpp): polled every step of a block; once set, the call
// returns early and out is incomplete.
// h0 [S, sum H_l] (optional): every layer's initial state of each session
// (layer 0's H_0 values first), instead of zero. out_all [S, sum H_l]
// (optional): every layer's state after the session's last event, in that
// layout (out may then be null unless all_prefixes).
void session_states(const Net& net, int mode, const int64_t* offsets, int64_t n_sessions,
                    const int32_t* items, bool all_prefixes, float* out, int num_threads,
                    const StopFlag* stop = nullptr, const float* h0 = nullptr,
                    float* out_all = nullptr);

// session_states for a net with a readout (net.readout: attention,
// core/attention.hpp; net.bidir: bidirectional, core/bidir.hpp): out holds
// queries [., D] in place of states, in the
// same rows (all_prefixes or not). Unknown items (-1) are no positions: the
// attention reads the states after known events only, and a prefix's query
// is that of its last known event (zero when it has none). window: the
// readout's spans (the training bptt; <= 0: whole sessions).
// embed (bidir only, not all_prefixes): out [S, HL + Hr] holds the session
// embeddings [h_last ; b_last] (b_last over the last position's span) in
// place of queries; zero for a session without known items.
void session_queries(const Net& net, int mode, const int64_t* offsets, int64_t n_sessions,
                     const int32_t* items, bool all_prefixes, int64_t window, float* out,
                     int num_threads, const StopFlag* stop = nullptr, bool embed = false);

// Leave-one-click-out queries of one sequence of n known items (every item
// >= 0), for explanations: q [n + 1, D], row 0 the query after the whole
// sequence, row 1 + i the query after the sequence without click i. One
// batched run: the variant without click i starts from the full run's state
// before click i (the prefix is shared), so step t advances the full run and
// the variants without clicks 0..t-1 together, t + 1 rows, all reading click
// t. With the readout (window as in session_queries) the queries are
// attention queries and alpha [n] (optional) receives the full sequence's
// attention weights of its last position. Single-threaded.
void drop_one_queries(const Net& net, int mode, const int32_t* items, int64_t n,
                      int64_t window, float* q, float* alpha);

}  // namespace grurec
