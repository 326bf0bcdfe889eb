// What AMX would give the CPU backend's prefill (docs/performance.md, session 19): a bf16 GEMM
// y[t][n] = x[t][:] . w[n][:] for t = 512 tokens and a 2048 x 2048 matrix, with w in the bf16
// tile layout that PackBf16Tiles writes (kernels.h), which is AMX's B-tile layout as it is: 16
// rows x 64 bytes at a stride of 64. Tiles of 2 x 2 (32 tokens x 32 rows) per pass; each thread
// takes a share of the rows. A ceiling to compare the backend's AMX path (backends/cpu/
// kernels_amx.h, which adds the K tail, the bias and partial tiles) with, not that path.
#pragma once

#include <string>

namespace zaya::bench {

// Empty when this CPU and kernel can run AMX BF16 (the backend's amx::TileDataUnavailable, which
// requests the tile data for the process); else the reason.
std::string AmxUnavailable();

// Runs the GEMM on `threads` threads (best of 5) and prints the time, GFLOP/s, and the largest
// error against a double-precision reference over a sample of outputs; false when that error is
// 1e-4 or more (the layout or the tiles misread). Needs AmxUnavailable() to be empty.
bool RunAmxGemm(int threads);

}  // namespace zaya::bench
