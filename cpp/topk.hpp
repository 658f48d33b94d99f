// Top-k scoring of queries against an item table, and the rank counts that
// evaluation needs, with bounded memory (never a queries x items matrix).
//
// Dimension names: Q queries, N items, D dimensions, K results per query,
// R rows of a dense score block. Scores are the canonical float32 scores of
// topk_kernels.hpp: score(q, i) = dot(queries[q], items[i]) (+ bias[i]),
// identical for every batch size, block position and thread count.
//
// Work is split into tasks (a block of queries x a contiguous range of items),
// run by OpenMP threads (dynamic schedule). Few queries: the item table is
// split into ranges and each thread keeps a partial top-k per query, merged at
// the end; many queries: each task owns whole query rows and writes its
// results directly. Inside a task the items go by in blocks (L2-sized); the
// scores of a block of queries against a block of items land in a small
// per-thread tile, and only scores above the query's running K-th best (the
// threshold filter) become candidates; a candidate buffer of K + extra slots
// is cut back to the best K (nth_element) when full, raising the threshold.
// Ties are broken by the lower item index: within a task items arrive in
// increasing index order, so a later item that only ties the K-th best never
// qualifies.
//
// With many queries per task (>= 20) at the avx512 level on a CPU with
// AVX512_BF16, a block goes through the bf16 prefilter instead (once the
// task's thresholds are finite): every pair is scored approximately in bf16,
// and only the pairs whose approximation, widened by a rigorous error bound,
// could still beat the threshold (or, with targets, could be on either side
// of the target's score) get their canonical score and go on as above. The
// results are the same bit for bit; see topk_kernels.hpp for the bound.
// Tasks that split a query's items share the threshold: the highest K-th
// best any of them has reached lets the prefilter skip items in all of them.
//
// These functions never throw and never let an exception out of an OpenMP
// region; they report failures by status code. Arguments are validated by the
// caller (bindings.cpp).
#pragma once

#include <cstdint>
#include <vector>

#include "interrupt.hpp"

namespace grurec {

// A prepared int8 copy of an item table (and its bias) for the int8
// prefilter of topk (topk_kernels.hpp for the layout and the bound): items
// in groups of 16, x8[g][d][16]; per item (padded to whole groups) the scale
// sc, the bound per unit of query norm E and bp = bias + slack. Items past N
// in the last group have sc = E = 0 and bp = -inf (never pass).
struct TopkInt8 {
  int64_t N = 0, D = 0, D2 = 0, NG = 0;  // D2 = ceil(D / 2) pairs of dims
  std::vector<int8_t> x8;                 // [NG][D2][16][2] (topk_kernels.hpp)
  std::vector<float> sc, E, F, bp;        // [NG * 16] per item
};

// Fills t from items[N, D] and bias[N] (or null); false when memory ran out.
// Non-finite items are allowed (their E is inf: topk scores them exactly and
// reports them as before).
bool topk_int8_build(TopkInt8& t, const float* items, const float* bias, int64_t N, int64_t D,
                     int num_threads);

enum TopkStatus {
  kTopkOk = 0,
  kTopkNonFinite = 1,  // some score was NaN or +-inf (bad input or float32 overflow)
  kTopkNoMemory = 2,   // a scratch allocation failed
  kTopkStopped = 3,    // *stop was set (interrupt.hpp): the outputs are incomplete
};

// out_idx[Q,K], out_score[Q,K]: per query the K best items, best first (score
// descending, then item index ascending). Excluded items (excl_off[Q+1],
// excl_idx[excl_off[Q]]: CSR lists of item indices, ascending within each row,
// duplicates allowed; both null for none) and items with allowed[i] == 0
// (allowed[N] or null) are never returned; a query with fewer than K eligible
// items gets index -1 and score -inf in the remaining slots.
// Requires 1 <= K <= N, Q >= 0, D >= 0, num_threads >= 1.
// With targets[Q] (-1 or an item index) and greater[Q], equal[Q] given, the
// same pass also writes what rank_counts (below) writes for every query whose
// target is >= 0, counted over all N items (exclusions and allowed do not
// apply to the counts), and -1, -1 for the others: evaluation gets a
// prediction's top-K list and its target's rank from one read of the table.
int topk(int64_t* out_idx, float* out_score, const float* queries, const float* items,
         const float* bias, int64_t Q, int64_t N, int64_t D, int64_t K,
         const int64_t* excl_off, const int64_t* excl_idx, const uint8_t* allowed,
         int num_threads, const int64_t* targets = nullptr, int64_t* greater = nullptr,
         int64_t* equal = nullptr, const TopkInt8* i8 = nullptr,
         const StopFlag* stop = nullptr);
// stop: polled once per block of items in every task (and by rank_counts*
// below); once set, the call returns kTopkStopped soon.
// i8: the int8 copy of exactly these items and bias (topk_int8_build), or
// null. Tasks without rank-count targets then scan it instead of the float32
// rows (after their first block) and score only the pairs it cannot rule
// out; the results are the same. kInt8MaxQueries is the most queries a task
// holds (make_plan's 256), so every such task uses it: single queries (the
// rows it skips are memory not read) and batches (its integer products beat
// the bf16 and int16 prefilters, which pack the float rows on every call:
// docs/performance.md).
constexpr int64_t kInt8MaxQueries = 256;

// Totals since the last reset of the int8 prefilter: pairs it bounded,
// pairs scored exactly after it, item blocks it scanned.
struct TopkInt8Stats {
  int64_t pairs = 0, exact = 0, blocks = 0;
};
TopkInt8Stats int8_stats(bool reset);

// For tests of the bound: the number of pairs (q, i) whose scan bit is clear
// with the threshold set to their own canonical score scores[q * N + i]
// (dot + bias, as topk returns it): each one would be a wrongly skipped item.
int64_t int8_probe(const float* queries, const float* scores, const TopkInt8& t, int64_t Q);

// greater[Q], equal[Q]: for query q with target item t = targets[q] (0 <= t < N),
// the number of items scoring strictly higher than t and the number scoring
// equal to t, t itself not counted.
int rank_counts(int64_t* greater, int64_t* equal, const float* queries, const float* items,
                const float* bias, const int64_t* targets, int64_t Q, int64_t N, int64_t D,
                int num_threads, const StopFlag* stop = nullptr);

// The same for a dense score block scores[R,N] with targets[R].
int rank_counts_dense(int64_t* greater, int64_t* equal, const float* scores,
                      const int64_t* targets, int64_t R, int64_t N, int num_threads,
                      const StopFlag* stop = nullptr);

// max of x[0..n), read once by num_threads threads (a memory-bandwidth probe).
float stream_max(const float* x, int64_t n, int num_threads);

// --- the bf16 prefilter (topk_kernels.hpp, topk_bf16.cpp) -------------------
// topk and rank_counts run it at the avx512 level, on CPUs with AVX512_BF16,
// for tasks of at least 20 queries; it changes the work, never the results.

// Whether the CPU and build have it.
bool bf16_prefilter_available();
// Whether topk uses it where it can: on unless GRUREC_TOPK_BF16=0 was in the
// environment at the first call; bf16_prefilter_set switches it (tests
// compare both ways; not while another thread is inside topk).
bool bf16_prefilter_enabled();
void bf16_prefilter_set(bool on);

// Totals since the last reset: query x item pairs the prefilter scored
// approximately, pairs it passed on to the exact score, item blocks scored
// with it and without it (a task's first block, before its thresholds are
// finite) in tasks that used it.
struct TopkPrefilterStats {
  int64_t pairs = 0, exact = 0, blocks_used = 0, blocks_plain = 0;
};
using TopkBf16Stats = TopkPrefilterStats;  // blocks_used: blocks scored with bf16
TopkBf16Stats bf16_stats(bool reset);

// --- the int16 prefilter (topk_kernels.hpp, topk_i16.cpp) ------------------
// topk runs it at the avx2 level for top-k tasks of at least 22 queries
// without rank-count targets; it changes the work, never the results.
bool i16_prefilter_available();
// On unless GRUREC_TOPK_I16=0 was in the environment at the first call.
bool i16_prefilter_enabled();
void i16_prefilter_set(bool on);
using TopkI16Stats = TopkPrefilterStats;  // (topk_i16_stats: "blocks_i16")
TopkI16Stats i16_stats(bool reset);
// U[Q,N]: the int16 prefilter's upper bound of every score (dot + bias),
// for tests. False (nothing written) when it is not available or D is out
// of its range.
bool i16_probe(float* U, const float* queries, const float* items, const float* bias, int64_t Q,
               int64_t N, int64_t D);

// The prefilter's bounds for every pair, for tests: U[Q,N] and L[Q,N] with
// L <= score <= U for the canonical avx512 score (dot + bias). False (nothing
// written) when the prefilter is not available or D is out of its range.
bool bf16_probe(float* U, float* L, const float* queries, const float* items, const float* bias,
                int64_t Q, int64_t N, int64_t D);

}  // namespace grurec
