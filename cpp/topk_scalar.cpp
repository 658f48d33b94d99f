// The scalar level of the top-k table (see topk_impl.hpp).
#define GRUREC_LEVEL_SCALAR 1
#define GRUREC_NS grurec_topk_scalar
#define GRUREC_LEVEL_NAME "scalar"
#define GRUREC_TOPK_FN topk_kernels_scalar
#define GRUREC_TOPK_MI1 8  // items per block, one query
#define GRUREC_TOPK_MI4 4  // items per block, four queries
#include "topk_impl.hpp"
