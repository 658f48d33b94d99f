// The neon level of the top-k table (see topk_impl.hpp): AArch64 only.
#define GRUREC_LEVEL_NEON 1
#define GRUREC_NS grurec_topk_neon
#define GRUREC_LEVEL_NAME "neon"
#define GRUREC_TOPK_FN topk_kernels_neon
#include "topk_impl.hpp"
