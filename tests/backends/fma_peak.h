// The CPU's AVX2 FMA throughput: `threads` threads each run independent 8-lane FMAs on registers
// for ~0.1 s; returns the total in GMAC/s (one FMA lane = one multiply-accumulate). The ceiling
// the matvec tiles' arithmetic is compared with in docs/performance.md. Requires AVX2 + FMA.
#pragma once

namespace zaya::bench {

double FmaPeakGmacs(int threads);

}  // namespace zaya::bench
