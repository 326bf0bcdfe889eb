// Throughput of the instructions and instruction mixes the matvec tiles are built from, on one
// core: each loop runs 12 independent copies (no dependency between them) 10^8 times and reports
// instructions (or mixes) per nanosecond and per cycle, the clock taken from a chain of dependent
// integer adds (one cycle each). How docs/performance.md knows,
// for instance, that Zen 4 issues one zmm FMA or one vdpbf16ps per cycle but two ymm FMAs.
// AVX-512 loops run only where the CPU has AVX-512 F/BW + BF16 + VNNI.
#pragma once

namespace zaya::bench {

void PrintIsaLoops();

}  // namespace zaya::bench
