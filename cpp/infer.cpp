#include "infer.hpp"

#include <algorithm>
#include <cstring>
#include <vector>

#include "core/attention.hpp"
#include "core/bidir.hpp"
#include "gru.hpp"
#include "kernels.hpp"

namespace grurec {
namespace {

constexpr int64_t kBlock = 256;  // sessions per block

// One block of sessions [s0, s1), stepped event by event; the kernels run
// single-threaded (threads split blocks).
void run_block(const Net& net, int mode, const int64_t* offsets, int64_t s0, int64_t s1,
               const int32_t* items, bool all_prefixes, float* out, const float* h0,
               float* out_all, const StopFlag* stop, float* every = nullptr) {
  const int64_t L = static_cast<int64_t>(net.layers.size());
  const int64_t HL = net.layers.back(), nb = s1 - s0;
  const int64_t I0 = mode == 1 ? net.emb.cols : (mode == 2 ? HL : 0);
  std::vector<std::vector<float>> st(L), h(L), gates(L), rh(L), hp(L);
  int64_t Hsum = 0;  // width of a row of h0 / out_all: every layer's state
  for (int64_t l = 0; l < L; ++l) Hsum += net.layers[l];
  for (int64_t l = 0, off = 0; l < L; off += net.layers[l], ++l) {
    const int64_t H = net.layers[l];
    st[l].assign(nb * H, 0.0f);  // [nb, H] state of every session of the block
    if (h0)
      for (int64_t b = 0; b < nb; ++b)
        std::memcpy(&st[l][b * H], h0 + (s0 + b) * Hsum + off, H * sizeof(float));
    h[l].resize(nb * H);         // [live, H] compacted step buffers
    gates[l].resize(nb * 3 * H);
    rh[l].resize(nb * H);
    hp[l].resize(nb * H);
  }
  std::vector<float> x(nb * std::max<int64_t>(I0, 1));
  std::vector<int64_t> live(nb);
  int64_t T = 0;
  for (int64_t s = s0; s < s1; ++s) T = std::max(T, offsets[s + 1] - offsets[s]);

  for (int64_t t = 0; t < T; ++t) {
    if (stop_requested(stop)) return;
    // Sessions with a known item at position t step; the others keep state.
    int64_t n = 0;
    for (int64_t b = 0; b < nb; ++b) {
      const int64_t s = s0 + b;
      if (offsets[s] + t < offsets[s + 1] && items[offsets[s] + t] >= 0) live[n++] = b;
    }
    if (n > 0) {
      if (mode == 0) {
        const int64_t H3 = 3 * net.layers[0];
        for (int64_t i = 0; i < n; ++i) {
          const int64_t s = s0 + live[i];
          const float* row = net.W_ih[0].w + static_cast<int64_t>(items[offsets[s] + t]) * H3;
          float* g = gates[0].data() + i * H3;
          for (int64_t j = 0; j < H3; ++j) g[j] = net.b[0].w[j] + row[j];
        }
      } else {
        const float* table = mode == 1 ? net.emb.w : net.W_y.w;
        for (int64_t i = 0; i < n; ++i) {
          const int64_t s = s0 + live[i];
          std::memcpy(&x[i * I0], table + static_cast<int64_t>(items[offsets[s] + t]) * I0,
                      I0 * sizeof(float));
        }
      }
      const float* xin = mode == 0 ? nullptr : x.data();
      for (int64_t l = 0; l < L; ++l) {
        const int64_t H = net.layers[l];
        const int64_t I = l == 0 ? I0 : net.layers[l - 1];
        for (int64_t i = 0; i < n; ++i)
          std::memcpy(&hp[l][i * H], &st[l][live[i] * H], H * sizeof(float));
        gru_forward(h[l].data(), gates[l].data(), rh[l].data(), xin, hp[l].data(),
                    net.W_ih[l].w, net.W_hh[l].w, net.b[l].w, net.b_hh[l].w, 1, n, I,
                    H, 1);
        for (int64_t i = 0; i < n; ++i)
          std::memcpy(&st[l][live[i] * H], &h[l][i * H], H * sizeof(float));
        xin = h[l].data();
      }
    }
    if (every) {  // [block events, HL]: the state after every event
      for (int64_t b = 0; b < nb; ++b) {
        const int64_t s = s0 + b;
        if (offsets[s] + t < offsets[s + 1])
          std::memcpy(every + (offsets[s] - offsets[s0] + t) * HL, &st[L - 1][b * HL],
                      HL * sizeof(float));
      }
    }
    if (all_prefixes) {
      for (int64_t b = 0; b < nb; ++b) {
        const int64_t s = s0 + b;
        if (offsets[s] + t + 1 < offsets[s + 1])
          std::memcpy(out + (offsets[s] - s + t) * HL, &st[L - 1][b * HL], HL * sizeof(float));
      }
    }
  }
  if (!all_prefixes && out)
    std::memcpy(out + s0 * HL, st[L - 1].data(), nb * HL * sizeof(float));
  if (out_all)
    for (int64_t l = 0, off = 0; l < L; off += net.layers[l], ++l)
      for (int64_t b = 0; b < nb; ++b)
        std::memcpy(out_all + (s0 + b) * Hsum + off, &st[l][b * net.layers[l]],
                    net.layers[l] * sizeof(float));
}

}  // namespace

void session_states(const Net& net, int mode, const int64_t* offsets, int64_t n_sessions,
                    const int32_t* items, bool all_prefixes, float* out, int num_threads,
                    const StopFlag* stop, const float* h0, float* out_all) {
  const int64_t nblocks = (n_sessions + kBlock - 1) / kBlock;
  const int nt = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(num_threads, nblocks)));
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1) if (nt > 1)
  for (int64_t blk = 0; blk < nblocks; ++blk) {
    const int64_t s0 = blk * kBlock, s1 = std::min(n_sessions, s0 + kBlock);
    if (stop_requested(stop)) continue;
    run_block(net, mode, offsets, s0, s1, items, all_prefixes, out, h0, out_all, stop);
  }
}

void session_queries(const Net& net, int mode, const int64_t* offsets, int64_t n_sessions,
                     const int32_t* items, bool all_prefixes, int64_t window, float* out,
                     int num_threads, const StopFlag* stop, bool embed) {
  const int64_t nblocks = (n_sessions + kBlock - 1) / kBlock;
  const int64_t HL = net.layers.back();
  const int64_t D = embed ? HL + net.bidir.Hr() : net.query_width();
  const bool bi = net.bidir.active();
  const int nt = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(num_threads, nblocks)));
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1) if (nt > 1)
  for (int64_t blk = 0; blk < nblocks; ++blk) {
    const int64_t s0 = blk * kBlock, s1 = std::min(n_sessions, s0 + kBlock);
    if (stop_requested(stop)) continue;
    std::vector<float> every((offsets[s1] - offsets[s0]) * HL), y, q, scratch;
    ReverseRuns rr;
    run_block(net, mode, offsets, s0, s1, items, false, nullptr, nullptr, nullptr, stop,
              every.data());
    if (stop_requested(stop)) continue;
    for (int64_t s = s0; s < s1; ++s) {
      const int64_t len = offsets[s + 1] - offsets[s];
      // The known positions' states, in order; known[t]: index of the last
      // known position <= t, -1 if none.
      std::vector<int64_t> last(len);
      int64_t nk = 0;
      y.resize(len * HL);
      for (int64_t t = 0; t < len; ++t) {
        if (items[offsets[s] + t] >= 0) {
          std::memcpy(&y[nk * HL], &every[(offsets[s] - offsets[s0] + t) * HL],
                      HL * sizeof(float));
          ++nk;
        }
        last[t] = nk - 1;
      }
      if (!all_prefixes) {
        float* o = out + s * D;
        if (nk == 0)
          std::fill(o, o + D, 0.0f);
        else if (embed)
          bi_last(net.bidir, y.data(), nk, window, HL, nullptr, o, rr, scratch);
        else if (bi)
          bi_last(net.bidir, y.data(), nk, window, HL, o, nullptr, rr, scratch);
        else
          attention_last(net.readout, y.data(), nk, window, HL, o, nullptr, scratch);
        continue;
      }
      q.resize(std::max<int64_t>(nk, 1) * D);
      if (bi)
        bi_queries(net.bidir, y.data(), nk, window, HL, q.data(), rr, scratch);
      else
        attention_queries(net.readout, y.data(), nk, window, HL, q.data(), nullptr, scratch);
      for (int64_t t = 0; t + 1 < len; ++t) {
        float* o = out + (offsets[s] - s + t) * D;
        if (last[t] < 0)
          std::fill(o, o + D, 0.0f);
        else
          std::memcpy(o, &q[last[t] * D], D * sizeof(float));
      }
    }
  }
}

void drop_one_queries(const Net& net, int mode, const int32_t* items, int64_t n,
                      int64_t window, float* q, float* alpha) {
  const int64_t L = static_cast<int64_t>(net.layers.size()), HL = net.layers.back();
  const int64_t R = n + 1;  // row 0: the whole sequence; row 1 + i: without click i
  const int64_t I0 = mode == 1 ? net.emb.cols : (mode == 2 ? HL : 0);
  const bool bi = net.bidir.active(), att = net.readout.active() || bi;
  const int64_t D = att ? net.query_width() : HL;
  std::vector<std::vector<float>> st(L), h(L), gates(L), rh(L);
  for (int64_t l = 0; l < L; ++l) {
    const int64_t H = net.layers[l];
    st[l].assign(R * H, 0.0f);  // [R, H]
    h[l].resize(R * H);
    gates[l].resize(R * 3 * H);
    rh[l].resize(R * H);
  }
  // With the readout: every row's top-layer states by position [R, n, HL].
  std::vector<float> ys(att ? R * n * HL : 0), g0(3 * net.layers[0]), scratch;
  ReverseRuns rr;
  const Kernels& k = K();
  for (int64_t t = 0; t < n; ++t) {
    // Row t + 1 (the sequence without click t) is born with the state before t.
    for (int64_t l = 0; l < L; ++l) {
      const int64_t H = net.layers[l];
      std::memcpy(&st[l][(t + 1) * H], &st[l][0], H * sizeof(float));
    }
    if (att) std::memcpy(&ys[(t + 1) * n * HL], &ys[0], t * HL * sizeof(float));
    const int64_t B = t + 1;  // rows 0..t read click t
    // Layer 0's input pre-activations, the same for every row: b0 + x W_ih0.
    const int64_t H03 = 3 * net.layers[0];
    const int64_t it = items[t];
    if (mode == 0) {
      const float* row = net.W_ih[0].w + it * H03;
      for (int64_t j = 0; j < H03; ++j) g0[j] = net.b[0].w[j] + row[j];
    } else {
      const float* x = (mode == 1 ? net.emb.w : net.W_y.w) + it * I0;
      std::memcpy(g0.data(), net.b[0].w, H03 * sizeof(float));
      k.sgemm(1, H03, I0, 1.0f, x, I0, 1, net.W_ih[0].w, H03, 1, 1.0f, g0.data(), H03, 1);
    }
    for (int64_t b = 0; b < B; ++b)
      std::memcpy(&gates[0][b * H03], g0.data(), H03 * sizeof(float));
    const float* xin = nullptr;
    for (int64_t l = 0; l < L; ++l) {
      const int64_t H = net.layers[l];
      const int64_t I = l == 0 ? I0 : net.layers[l - 1];
      gru_forward(h[l].data(), gates[l].data(), rh[l].data(), xin, st[l].data(),
                  net.W_ih[l].w, net.W_hh[l].w, net.b[l].w, net.b_hh[l].w, 1, B, I, H, 1);
      std::memcpy(st[l].data(), h[l].data(), B * H * sizeof(float));
      xin = h[l].data();
    }
    if (att)
      for (int64_t b = 0; b < B; ++b)  // row 0 at position t, the others at t - 1
        std::memcpy(&ys[(b * n + (b == 0 ? t : t - 1)) * HL], &st[L - 1][b * HL],
                    HL * sizeof(float));
  }
  for (int64_t r = 0; r < R; ++r) {
    const int64_t len = r == 0 ? n : n - 1;
    float* o = q + r * D;
    if (!att)
      std::memcpy(o, &st[L - 1][r * HL], HL * sizeof(float));
    else if (len == 0)
      std::fill(o, o + D, 0.0f);
    else if (bi)
      bi_last(net.bidir, &ys[r * n * HL], len, window, HL, o, nullptr, rr, scratch);
    else
      attention_last(net.readout, &ys[r * n * HL], len, window, HL, o, r == 0 ? alpha : nullptr,
                     scratch);
  }
}

}  // namespace grurec
