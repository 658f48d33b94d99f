// The avx2 level of the top-k table (see topk_impl.hpp).
#define GRUREC_LEVEL_AVX2 1
#define GRUREC_NS grurec_topk_avx2
#define GRUREC_LEVEL_NAME "avx2"
#define GRUREC_TOPK_FN topk_kernels_avx2
#define GRUREC_TOPK_MI1 8  // items per block, one query
#define GRUREC_TOPK_MI4 2  // items per block, four queries
#include "topk_impl.hpp"
