/* The portable path: the compiler's baseline target (SSE2 on x86-64, NEON on arm64), 4 lanes (one
 * native register of either). */
#define NK_W 4
#define NK_SUFFIX portable
#include "kernels_body.h"
