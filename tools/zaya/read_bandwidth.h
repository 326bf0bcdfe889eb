// The read-bandwidth measure behind `zaya bench`'s roofline: how many bytes per second this
// machine's cores can read from memory, the best of several access patterns (read_bandwidth.cc
// says which and why). A roofline must be a peak: if a decode step ever reads faster than this,
// the measure is wrong, not the kernel fast.
//
// Thread safety: the functions share no state; ReadBandwidthOn starts and joins its own threads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "backends/common/large_pages.h"

namespace zaya::cli {

// Words on huge pages from 2 MiB on, like the CPU backend's weights (large_pages.h): a roofline
// read from small pages sat 13% below what the weights can be read at (session 23).
using BandwidthWords = std::vector<uint64_t, backend_common::StreamedAllocator<uint64_t>>;

// A buffer of bytes / 8 words, each written once so that no measured pass pays for page faults.
BandwidthWords BandwidthBuffer(size_t bytes);

// The wrapping (mod 2^64) sum of words [0, n) of base, read as `streams` interleaved streams
// (1, 2, 4 or 8; anything else throws std::invalid_argument), each stream `skew` cache lines
// shorter than n / streams (unskewed where the slice is too short), the words past the streams
// read plainly. Equal to the plain sum of the n words for every n, streams and skew: the
// measure's patterns must read every byte exactly once.
uint64_t SumAsStreams(const uint64_t* base, size_t n, size_t streams, size_t skew);

// Bytes per second: `threads` threads each read their slice of buf in every pattern; the best of
// `reps` passes of each. buf should be far larger than the last-level cache.
double ReadBandwidthOn(const BandwidthWords& buf, int threads, int reps);

}  // namespace zaya::cli
