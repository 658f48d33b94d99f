#include "models/gru4rec.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/attention.hpp"
#include "core/bidir.hpp"
#include "core/gru_stack.hpp"
#include "core/head.hpp"
#include "core/item_tower.hpp"
#include "core/optim.hpp"
#include "core/rng.hpp"
#include "core/slots.hpp"

namespace grurec {
namespace {

GruStackWeights stack_weights(const Net& net) {
  GruStackWeights w;
  w.layers = net.layers;
  w.W_ih = net.W_ih;
  w.W_hh = net.W_hh;
  w.b = net.b;
  w.b_hh = net.b_hh;
  return w;
}

// The input mode's tower over the head's row set (mode 2 shares W_y).
std::unique_ptr<ItemTower> make_id_tower(Net& net, const TrainConfig& cfg, int64_t Bmax,
                                         SampledHead& head) {
  if (cfg.mode == 0) return std::make_unique<OneHotTower>(net.W_ih[0], cfg.dropout_embed, Bmax);
  if (cfg.mode == 1) return std::make_unique<TableTower>(net.emb, cfg.dropout_embed, Bmax, nullptr);
  return std::make_unique<TableTower>(net.W_y, cfg.dropout_embed, Bmax, &head.rows());
}

// With item features, the id tower wrapped in a FeatureTower.
std::unique_ptr<ItemTower> make_tower(Net& net, const TrainConfig& cfg, int64_t Bmax,
                                      SampledHead& head, int kt) {
  std::unique_ptr<ItemTower> t = make_id_tower(net, cfg, Bmax, head);
  if (!net.features.active()) return t;
  return std::make_unique<FeatureTower>(std::move(t), net.features, Bmax, kt);
}

class Gru4RecStream final : public Stream {
 public:
  Gru4RecStream(Net& net, const TrainConfig& cfg, const int64_t* offsets, int64_t n_sessions,
                const int32_t* items, const NegativeSampler& sampler, int64_t first,
                int64_t stride, uint64_t seed, int kt)
      : kt_(kt), rng_(seed), opt_(cfg.opt), opt_step_(cfg.opt_step) {
    const int64_t n_mine = first < n_sessions ? (n_sessions - first + stride - 1) / stride : 0;
    const int64_t Bmax = std::min<int64_t>(cfg.batch_size, n_mine);
    if (Bmax <= 0) return;
    T_ = std::max<int64_t>(1, cfg.bptt);
    const int64_t R = T_ * Bmax;  // rows of a window
    slots_.init(offsets, items, first, stride, n_mine, Bmax, T_);
    // The loss of a window is its sum over positions / (batch_size T).
    head_.init(net.W_y, net.b_y, sampler,
               HeadConfig{cfg.loss, cfg.elu, cfg.bpreg, cfg.n_sample, cfg.batch_size * T_}, R,
               R);
    if (net.out_features.active()) {
      // Output rows: W_y's id rows (gradients into the head's rows) + features.
      const int64_t Cmax = R + cfg.n_sample;
      out_ = std::make_unique<FeatureTower>(
          std::make_unique<TableTower>(net.W_y, 0.0f, Cmax, &head_.rows()), net.out_features,
          Cmax, kt);
      head_.set_output(out_.get());
    }
    tower_ = make_tower(net, cfg, R, head_, kt);
    enc_ = std::make_unique<GruStack>(stack_weights(net), tower_->dim(), tower_->projected(),
                                      cfg.dropout_hidden, Bmax, T_);
    if (net.readout.active())
      enc_ = std::make_unique<AttentionReadout>(std::move(enc_), net.readout, net.layers.back(),
                                                Bmax, T_);
    else if (net.bidir.active())
      enc_ = std::make_unique<BiReadout>(std::move(enc_), net.bidir, net.layers.back(), Bmax,
                                         T_);
    D_ = net.W_y.cols;
    weights_ = cfg.weights;
    if (weights_) w_c_.resize(R);
    x_.resize(R * tower_->dim());
    dx_.resize(R * tower_->dim());
    dq_.resize(R * D_);
    pos_.resize(R);
    in_c_.resize(R);
    tg_c_.resize(R);
    if (T_ > 1) {  // compaction buffers: only windows can have padding
      xc_.resize(R * tower_->dim());
      qc_.resize(R * D_);
      dqc_.resize(R * D_);
    }
  }

  int64_t batch() const override { return slots_.batch(); }

  // The draws keep GRU4Rec's order: negatives, the embedding dropout mask,
  // then the hidden masks step by step, layer by layer.
  //
  // The window's positions with an event go through the tower and the head
  // as one batch in row order t * B + b. A window with padding (T > 1, a
  // sequence that ends inside it) is compacted first: its rows pos_[0..n)
  // are copied to and from the tower's and head's buffers, and padding gets
  // zero input and zero gradient. Without padding (always at T = 1, GRU4Rec)
  // the window's own buffers are used as they are.
  bool step() override {
    const Window& w = slots_.window();
    const int64_t TB = w.T * w.B, I = tower_->dim(), D = D_;
    int64_t n = 0;
    for (int64_t r = 0; r < TB; ++r)
      if (w.target[r] >= 0) {
        pos_[n] = r;
        in_c_[n] = w.in[r];
        tg_c_[n] = w.target[r];
        if (weights_) w_c_[n] = weights_[w.tpos[r]];
        ++n;
      }
    const bool compact = n < TB;
    float* xc = compact ? xc_.data() : x_.data();
    head_.draw(tg_c_.data(), n, rng_);
    tower_->gather(in_c_.data(), n, xc, rng_);
    if (compact) {
      std::fill(x_.begin(), x_.begin() + TB * I, 0.0f);
      for (int64_t i = 0; i < n; ++i)
        std::memcpy(&x_[pos_[i] * I], &xc_[i * I], I * sizeof(float));
    }
    const float* q = enc_->forward(w, x_.data(), rng_, kt_);
    last_events = n;
    if (head_.degenerate()) {
      head_.clear();
      next();
      return true;
    }
    if (compact)
      for (int64_t i = 0; i < n; ++i)
        std::memcpy(&qc_[i * D], q + pos_[i] * D, D * sizeof(float));
    const float* qh = compact ? qc_.data() : q;
    float* dqh = compact ? dqc_.data() : dq_.data();
    const double total = head_.loss(qh, kt_, weights_ ? w_c_.data() : nullptr);
    if (!std::isfinite(total)) return false;
    head_.backward(qh, dqh, kt_);
    if (compact) {
      std::fill(dq_.begin(), dq_.begin() + TB * D, 0.0f);
      for (int64_t i = 0; i < n; ++i)
        std::memcpy(&dq_[pos_[i] * D], &dqc_[i * D], D * sizeof(float));
    }
    enc_->backward(w, dq_.data(), dx_.data(), kt_);
    if (compact)
      for (int64_t i = 0; i < n; ++i)
        std::memcpy(&xc_[i * I], &dx_[pos_[i] * I], I * sizeof(float));
    tower_->scatter_grad(in_c_.data(), n, compact ? xc_.data() : dx_.data());
    if (opt_step_) opt_.begin_step(opt_step_->fetch_add(1) + 1);
    enc_->apply(opt_, kt_);
    head_.apply(opt_, kt_);
    tower_->apply(opt_, kt_);
    loss_sum += total;
    next();
    return true;
  }

 private:
  void next() { enc_->carry(slots_.advance()); }

  int kt_;
  Rng rng_;
  SparseOptimizer opt_;
  std::atomic<int64_t>* opt_step_;  // Adam's step counter (shared), or null
  SlotScheduler slots_;
  std::unique_ptr<FeatureTower> out_;  // output-side features, or null
  SampledHead head_;
  std::unique_ptr<ItemTower> tower_;
  std::unique_ptr<Encoder> enc_;  // a GruStack, or a readout (attention, bidir) around one
  std::vector<float> x_, dx_;  // [T, Bmax, I]: gathered rows, their gradient
  std::vector<float> dq_;      // [T, Bmax, D]
  int64_t T_ = 1, D_ = 0;
  // The positions with an event, their items and targets; with padding
  // (T > 1 only) the compacted rows.
  std::vector<int64_t> pos_;
  std::vector<int32_t> in_c_, tg_c_;
  std::vector<float> xc_, qc_, dqc_;
  const float* weights_ = nullptr;  // per-event loss weights, or null
  std::vector<float> w_c_;          // the weights of a window's rows
};

}  // namespace

std::unique_ptr<Stream> make_gru4rec_stream(Net& net, const TrainConfig& cfg,
                                            const int64_t* offsets, int64_t n_sessions,
                                            const int32_t* items,
                                            const NegativeSampler& sampler, int64_t first,
                                            int64_t stride, uint64_t seed, int kt) {
  return std::make_unique<Gru4RecStream>(net, cfg, offsets, n_sessions, items, sampler, first,
                                         stride, seed, kt);
}

}  // namespace grurec
