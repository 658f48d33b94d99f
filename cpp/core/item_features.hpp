// Item features as the feature tower reads them (python/grurec/features.py
// encodes them; bindings.cpp checks every array before training).
//
// N items, I the tower's row width, V_f the vocabulary size of field f,
// Z the width of the numeric + dense block.
#pragma once

#include <cstdint>
#include <vector>

#include "core/optim.hpp"

namespace grurec {

// A categorical field: item i's categories are ids[offsets[i] .. offsets[i+1])
// (offsets [N+1], ids in [0, V]); table [V+1, I], whose row 0 (a category not
// in the vocabulary) is zero and never updated.
struct FeatureField {
  const int64_t* offsets = nullptr;
  const int32_t* ids = nullptr;
  Param table;
};

struct ItemFeatureInputs {
  int64_t n_items = 0;  // N
  std::vector<FeatureField> fields;
  const float* z = nullptr;  // [N, Z] standardised numeric columns, then dense vectors
  int64_t Z = 0;
  Param W_z;                 // [Z, I]
  // Probability that a training row's id part is dropped entirely (the row
  // is then its features alone, as for a cold item); no rescaling.
  float id_dropout = 0.0f;
  bool active() const { return !fields.empty() || Z > 0; }
};

}  // namespace grurec
