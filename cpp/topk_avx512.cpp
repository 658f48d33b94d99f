// The avx512 level of the top-k table (see topk_impl.hpp).
#define GRUREC_LEVEL_AVX512 1
#define GRUREC_NS grurec_topk_avx512
#define GRUREC_LEVEL_NAME "avx512"
#define GRUREC_TOPK_FN topk_kernels_avx512
#define GRUREC_TOPK_MI1 16  // items per block, one query
#define GRUREC_TOPK_MI4 4  // items per block, four queries
#include "topk_impl.hpp"
