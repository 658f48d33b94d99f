// GRU4Rec training, one epoch per call (Hidasi et al. ICLR 2016; Hidasi &
// Karatzoglou CIKM 2018).
//
// Session-parallel mini-batches: B slots each walk one session; at every
// step a slot's input is its current item and its target the next item. A
// slot whose session has no next item takes the next unused session and its
// hidden state (all layers) is reset to zero; when no session is left the
// slot retires and the batch shrinks, so every event of the epoch is used.
// Hidden states carry over between mini-batches; gradients do not (one-step
// back-propagation, as in GRU4Rec).
//
// Scores: the targets of the mini-batch (in-batch negatives for each other)
// plus n_sample items shared by the mini-batch, drawn with probability
// proportional to popularity^sample_alpha:  R[B, C] = y W_y[cand]^T + b_y[cand],
// C = B + n_sample. Losses: see kernels.hpp. logQ correction (cross-entropy)
// subtracts logq * log q_j from candidate j's logit, with q_j the item's
// training count for the in-batch part (targets occur in proportion to
// popularity) and count^sample_alpha for the sampled part, both
// unnormalised: the convention of the published GRU4Rec settings (logq = 1
// was tuned with it; normalising each part separately measured 0.3 points
// lower MRR@20 on rsc15-100k).
//
// Input modes: 0 = one-hot (W_ih of layer 0 is an item table [N, 3H0]),
// 1 = separate embedding table [N, E], 2 = shared ("constrained"): the input
// vector of an item is its output row W_y[item]. Dropout: dropout_embed on the
// input vector (for one-hot input, on the single active input), dropout_hidden
// on every layer's output; the dropped output is both what the next layer (or
// the scoring) reads and the state the layer starts from at the next step, as
// in the official GRU4Rec.
//
// GRU cell: reset-after (cuDNN form, gru.hpp) for every layer with a recurrent
// bias b_hh, reset-before for the others (always for layer 0 of one-hot input).
//
// Optimizer: Adagrad with heavy-ball (or Nesterov) momentum (kernels.hpp), or
// Adam, dense for the GRU weights, and for the item tables only on the rows the
// mini-batch touched (a row's gradient: the sum of its gradients in the batch).
//
// The parts live in core/ (slots, sampler, item_tower, gru_stack, head,
// optim, epoch) and are put together in models/gru4rec.cpp.
#pragma once

#include <atomic>
#include <cstdint>
#include <vector>

#include "core/attention.hpp"  // AttentionWeights
#include "core/bidir.hpp"  // BiWeights
#include "core/epoch.hpp"  // EpochStats, Progress
#include "core/item_features.hpp"
#include "core/optim.hpp"  // Param

namespace grurec {

struct TrainConfig {
  int loss = 0;  // LossKind
  float elu = 0.0f, bpreg = 0.0f, logq = 0.0f;
  int64_t batch_size = 32, n_sample = 2048;
  float sample_alpha = 0.75f;
  int mode = 2;  // 0 one-hot, 1 separate embedding, 2 shared
  float dropout_embed = 0.0f, dropout_hidden = 0.0f;
  OptimizerConfig opt;  // Adagrad (lr, momentum and its form, eps) or Adam
  // Adam's step counter, shared by the workers and kept across epochs by the
  // caller (its value: steps taken so far). Null for Adagrad.
  std::atomic<int64_t>* opt_step = nullptr;
  uint64_t seed = 0;
  int num_threads = 1;
  // Streams of mini-batches run at once (Hogwild: each thread its own
  // sessions, lock-free updates of the shared tables). 1 = one stream whose
  // kernels use num_threads threads. Capped at num_threads.
  int workers = 1;
  // Truncated BPTT window (UserGRU's bptt): each mini-batch is T steps of
  // every slot, gradients through all of them; 1 = GRU4Rec.
  int64_t bptt = 1;
  // Optional per-event loss weights [E] (UserGRU's value column): the loss
  // of predicting items[e] is multiplied by weights[e]. Data, not owned.
  const float* weights = nullptr;
};

struct Net {
  int64_t n_items = 0;
  std::vector<int64_t> layers;  // hidden sizes H_l
  Param emb;                    // mode 1: [N, E]
  std::vector<Param> W_ih;      // [I_l, 3H_l]; mode 0: layer 0 is [N, 3H_0]
  std::vector<Param> W_hh;      // [H_l, 3H_l]
  std::vector<Param> b;         // [1, 3H_l]
  std::vector<Param> b_hh;      // [1, 3H_l] reset-after layers; w null for reset-before
  Param W_y, b_y;               // [N, H_L], [N, 1]
  // Item features added to the input rows (a FeatureTower around the input
  // mode's tower) when active(); tables and W_z are as wide as those rows.
  ItemFeatureInputs features;
  // Item features added to the output rows (a FeatureTower over W_y that the
  // sampled head gathers candidates from) when active(); tables [V_f+1, H_L].
  ItemFeatureInputs out_features;
  // NARM's attention readout between the GRU stack and the head (the query
  // is [h_t ; c_t] W_q, core/attention.hpp) when active(); its spans are the
  // bptt windows.
  AttentionWeights readout;
  // The bidirectional readout (a reversed GRU over each prefix's span, the
  // query [h_t ; b_t] W_q, core/bidir.hpp) when active(); at most one of
  // readout and bidir is.
  BiWeights bidir;
  // The active readout's query width, 0 without one.
  int64_t query_width() const {
    return readout.active() ? readout.W_q.cols : bidir.active() ? bidir.W_q.cols : 0;
  }
};

// offsets [S+1] into items [E]: sessions in training order, each of length
// >= 2; pop [N]: item popularity (> 0 for every item used as a sample).
EpochStats train_epoch(Net& net, const TrainConfig& cfg, const int64_t* offsets,
                       int64_t n_sessions, const int32_t* items, const float* pop,
                       const Progress& progress);

// The negative sampler on its own (for tests): n draws with probability
// proportional to pop^alpha.
void sample_popularity(int32_t* out, int64_t n, const float* pop, int64_t n_items,
                       float alpha, uint64_t seed);

}  // namespace grurec
