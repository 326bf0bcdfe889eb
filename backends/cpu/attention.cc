#include "attention.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <type_traits>

#include "kernels.h"

namespace zaya::cpu {
namespace {

// Chunks of one wave of tokens at most: their partials (nh (hd + 2) floats each, 4 KiB for
// ZAYA1) stay within a few MiB however long a prompt chunk is.
constexpr int64_t kMaxChunksPerWave = 1024;

// Positions [p0, p1) of one sequence, whole cache blocks but the last.
struct ChunkJob {
  int64_t p0, p1;
  const int32_t* blocks;  // the sequence's table row
};

// Query tokens of one sequence that attend over the same chunk: a prompt's tokens past the chunk
// all do. Each run of rows is taken for all of them while it is in L1, where one token at a time
// read the chunk from L2 once per token (~30 ns a token, position and KV head on two threads,
// against ~10 for the kernels in L1). A token's arithmetic is the same as alone.
constexpr int64_t kTileTokens = 4;

struct ChunkTokens {
  int64_t n = 0;
  const float* q[kTileTokens];  // [nh][hd] each, already scaled
  float* scores[kTileTokens];   // [nh][p1 - p0] scratch each
  float* m[kTileTokens];        // [nh]: each token's partial softmax, as AttendChunk documents
  float* l[kTileTokens];
  float* acc[kTileTokens];  // [nh][hd]
};

// Which block kernels run: the AVX-512 or AVX2 ones of attention.h, or DotRows/AxpyRows per head.
enum class Kernels { kAvx512, kAvx2, kPerHead };

struct Geometry {
  int64_t nh, nkv, hd, g, bt, row;  // g query heads per KV head; row = nkv hd
  Kernels kernels;
  const float* k_scale;  // int8 caches: [blocks, bt, nkv]; else null
  const float* v_scale;
};

// The run of up to 16 rows from position p: its first row (KV head 0) and its length, within
// one cache block.
template <class Row>
const Row* RunAt(const Geometry& geo, const ChunkJob& c, const Row* base, int64_t p, int64_t* n) {
  const int64_t in_block = p % geo.bt;
  *n = std::min({geo.bt - in_block, c.p1 - p, int64_t{16}});
  return base + (static_cast<int64_t>(c.blocks[p / geo.bt]) * geo.bt + in_block) * geo.row;
}

// The next run's bytes, which the current run fetches into L1 while it computes, in parts: part
// k of `parts` before the k-th KV head's kernel. A run of 16 bf16 rows is 8 KiB for ZAYA1; without
// the fetch a run waited on DRAM (~2x its time in cache), and fetched in one burst before the
// run it was 15-20% slower than in a part per KV head (session 16, one process, alternated).
struct NextRun {
  const char* at = nullptr;
  int64_t bytes = 0;
  void Fetch(int64_t k, int64_t parts) const {
    const int64_t part = (bytes / parts + 63) / 64 * 64;
    for (int64_t o = k * part; o < std::min(bytes, (k + 1) * part); o += 64) {
      __builtin_prefetch(at + o, 0, 3);
    }
  }
};

// The scales of the run of rows from position p (int8 caches): KV head h's of its row j at
// [j nkv + h].
inline const float* RunScales(const Geometry& geo, const ChunkJob& c, const float* scale,
                              int64_t p) {
  return scale + (static_cast<int64_t>(c.blocks[p / geo.bt]) * geo.bt + p % geo.bt) * geo.nkv;
}

// int8 rows: w[h][p] *= the scale of row p of KV head kvh, for the g heads of kvh and the run's
// cnt rows (the kernels' dot products and weights are the bytes' own until then).
// The run's scales are gathered first: read in place at their stride of nkv, the loop ran scalar
// (~12 of an int8 chunk's ~72 cycles a position and KV head in cache, without it 61); gathered, the
// multiplies run in SIMD lanes, each product the same as before (session 17, `cpu_kernel_bench
// --attend --kv int8`: 4 tokens in cache 0.545-0.548 -> 0.521-0.526 ms, 16 from DRAM 2-4%).
inline void ScaleRun(const Geometry& geo, const float* scales, int64_t kvh, int64_t cnt, float* w,
                     int64_t w_stride) {
  alignas(64) float s[16];
  for (int64_t p = 0; p < cnt; ++p) s[p] = scales[p * geo.nkv + kvh];
  for (int64_t hh = 0; hh < geo.g; ++hh) {
    float* row = w + (kvh * geo.g + hh) * w_stride;
#pragma omp simd
    for (int64_t p = 0; p < cnt; ++p) row[p] *= s[p];
  }
}

// Calls fn(rows, n <= 16, offset of the first of them in the chunk, next run) over the chunk's
// positions in order, 16 rows (or a block's rest) at a time; rows points at KV head 0 of the
// first row, so the KV heads of a run are one contiguous stretch of the cache.
template <class Row, class Fn>
void ForRows(const Geometry& geo, const ChunkJob& c, const Row* base, const Fn& fn) {
  int64_t n = 0;
  const Row* rows = RunAt(geo, c, base, c.p0, &n);
  for (int64_t p = c.p0; p < c.p1;) {
    const int64_t next_p = p + n;
    int64_t next_n = 0;
    const Row* next = next_p < c.p1 ? RunAt(geo, c, base, next_p, &next_n) : nullptr;
    fn(rows, n, p - c.p0,
       NextRun{reinterpret_cast<const char*>(next),
               next == nullptr ? 0 : next_n * geo.row * static_cast<int64_t>(sizeof(Row))});
    p = next_p;
    rows = next;
    n = next_n;
  }
}

// The chunk's softmax per head, for each of the tokens: m[h] its largest score, l[h] the sum of
// exp(score - m[h]) and acc[h][hd] the values weighted by those exps. Each run of rows is taken
// for all KV heads at once: a ZAYA1 position's K (or V) is one 512-byte stretch of both heads,
// which a pass per KV head read as two strided halves (session 16: one pass per head stalled on
// memory, 175-185 cycles a position and KV head).
template <class Row>
void AttendChunk(const Geometry& geo, const ChunkJob& c, const Row* kbase, const Row* vbase,
                 const ChunkTokens& tok) {
  const int64_t n = c.p1 - c.p0;
  ForRows(geo, c, kbase, [&](const Row* rows, int64_t cnt, int64_t off, const NextRun& next) {
    for (int64_t kvh = 0; kvh < geo.nkv; ++kvh) {
      const int64_t h0 = kvh * geo.g;
      next.Fetch(kvh, geo.nkv);
      for (int64_t u = 0; u < tok.n; ++u) {
        const float* q = tok.q[u];
        float* scores = tok.scores[u];
        if (geo.kernels == Kernels::kAvx512) {
          avx512::KvScores(q + h0 * geo.hd, geo.g, geo.hd, rows + kvh * geo.hd, geo.row, cnt,
                           scores + h0 * n + off, n);
        } else if (geo.kernels == Kernels::kAvx2) {
          avx2::KvScores(q + h0 * geo.hd, geo.g, geo.hd, rows + kvh * geo.hd, geo.row, cnt,
                         scores + h0 * n + off, n);
        } else {
          for (int64_t h = h0; h < h0 + geo.g; ++h) {
            DotRows(q + h * geo.hd, rows + kvh * geo.hd, geo.row, cnt, geo.hd,
                    scores + h * n + off);
          }
        }
        if constexpr (std::is_same_v<Row, int8_t>) {
          ScaleRun(geo, RunScales(geo, c, geo.k_scale, c.p0 + off), kvh, cnt, scores + off, n);
        }
      }
    }
  });
  {  // the V pass's first run, while the softmax computes (+3-4% in the same harness)
    int64_t v0 = 0;
    const Row* first = RunAt(geo, c, vbase, c.p0, &v0);
    NextRun{reinterpret_cast<const char*>(first), v0 * geo.row * static_cast<int64_t>(sizeof(Row))}
        .Fetch(0, 1);
  }
  for (int64_t u = 0; u < tok.n; ++u) {
    for (int64_t h = 0; h < geo.nh; ++h) {
      float* s = tok.scores[u] + h * n;
      const float mx = *std::max_element(s, s + n);
      tok.m[u][h] = mx;
      tok.l[u][h] = ExpShifted(s, n, mx);
    }
    std::fill(tok.acc[u], tok.acc[u] + geo.nh * geo.hd, 0.f);
  }
  ForRows(geo, c, vbase, [&](const Row* rows, int64_t cnt, int64_t off, const NextRun& next) {
    for (int64_t kvh = 0; kvh < geo.nkv; ++kvh) {
      const int64_t h0 = kvh * geo.g;
      next.Fetch(kvh, geo.nkv);
      for (int64_t u = 0; u < tok.n; ++u) {
        float* scores = tok.scores[u];
        float* acc = tok.acc[u];
        if constexpr (std::is_same_v<Row, int8_t>) {  // the weights, now that l has summed them
          ScaleRun(geo, RunScales(geo, c, geo.v_scale, c.p0 + off), kvh, cnt, scores + off, n);
        }
        if (geo.kernels == Kernels::kAvx512) {
          avx512::KvAccumulate(scores + h0 * n + off, n, geo.g, geo.hd, rows + kvh * geo.hd,
                               geo.row, cnt, acc + h0 * geo.hd);
        } else if (geo.kernels == Kernels::kAvx2) {
          avx2::KvAccumulate(scores + h0 * n + off, n, geo.g, geo.hd, rows + kvh * geo.hd, geo.row,
                             cnt, acc + h0 * geo.hd);
        } else {
          for (int64_t h = h0; h < h0 + geo.g; ++h) {
            AxpyRows(scores + h * n + off, rows + kvh * geo.hd, geo.row, cnt, geo.hd,
                     acc + h * geo.hd);
          }
        }
      }
    }
  });
}

}  // namespace

void Attend(ThreadPool& pool, const float* q, int64_t t, int64_t nh, const KvCacheView& kv,
            const int32_t* table, int64_t max_blocks, const int32_t* seq_of_token,
            const int32_t* position, float scale, float* out, AttendScratch* scratch) {
  const Isa isa = MatVecIsa();
  const Kernels kernels = isa >= Isa::kAvx512 && avx512::AttendFits(kv.hd) ? Kernels::kAvx512
                          : isa == Isa::kAvx2 && avx2::AttendFits(kv.hd)   ? Kernels::kAvx2
                                                                           : Kernels::kPerHead;
  const Geometry geo{nh,      kv.nkv,     kv.hd,     nh / kv.nkv, kv.block_tokens, kv.nkv * kv.hd,
                     kernels, kv.k_scale, kv.v_scale};
  const int64_t chunk_positions =
      std::max<int64_t>(1, kAttendChunkPositions / geo.bt) * geo.bt;  // whole blocks
  const int64_t hd = geo.hd, partial_floats = nh * (hd + 2);
  auto chunks_of = [&](int64_t i) { return (position[i] + chunk_positions) / chunk_positions; };
  auto& sc = *scratch;
  for (int64_t i0 = 0; i0 < t;) {
    // A wave: tokens i0 .. i1 - 1, their chunks numbered in token order.
    sc.chunk_token.clear();
    sc.chunk_begin.clear();
    sc.first_chunk.clear();
    int64_t i1 = i0;
    while (i1 < t && (i1 == i0 || static_cast<int64_t>(sc.chunk_token.size()) + chunks_of(i1) <=
                                      kMaxChunksPerWave)) {
      sc.first_chunk.push_back(static_cast<int64_t>(sc.chunk_token.size()));
      for (int64_t c = 0; c < chunks_of(i1); ++c) {
        sc.chunk_token.push_back(i1);
        sc.chunk_begin.push_back(c * chunk_positions);
      }
      ++i1;
    }
    sc.first_chunk.push_back(static_cast<int64_t>(sc.chunk_token.size()));
    const int64_t chunks = static_cast<int64_t>(sc.chunk_token.size());
    sc.partial.resize(static_cast<size_t>(chunks * partial_floats));
    // The chunks run by sequence, then by position, then by token: a prompt's tokens take each
    // chunk of its history one after another while its K/V rows (256 KiB of bf16 for ZAYA1) are
    // in L2. In token order each token streamed its whole history from L3 or DRAM again, ~130
    // cycles a position and KV head against ~41 for the kernels in L1 (prefill of 8,192 tokens
    // ran 2.6x slower per token than of 512). A decode step has one token per sequence, so its
    // order stays that of the tokens' chunks, which read each history as one stream. Each chunk's
    // result goes where it did, so the outputs are unchanged.
    sc.order.resize(static_cast<size_t>(chunks));
    std::iota(sc.order.begin(), sc.order.end(), int64_t{0});
    auto before = [&](int64_t a, int64_t b) {
      const int32_t sa = seq_of_token[sc.chunk_token[a]], sb = seq_of_token[sc.chunk_token[b]];
      return sa != sb ? sa < sb : sc.chunk_begin[a] < sc.chunk_begin[b];
    };
    if (!std::is_sorted(sc.order.begin(), sc.order.end(), before)) {  // decode steps usually are
      std::stable_sort(sc.order.begin(), sc.order.end(), before);
    }
    // Each thread takes a run of that order holding an equal share of the positions: a prompt's
    // early chunks are whole and its last ones short, so equal counts of chunks were not equal
    // work (512 tokens at 1,024 positions ran 2x slower split by count).
    const int64_t parts = std::min<int64_t>(pool.size(), chunks);
    sc.part_begin.assign(static_cast<size_t>(parts + 1), chunks);
    sc.part_begin[0] = 0;
    {
      auto work = [&](int64_t c) {
        const int64_t i = sc.chunk_token[c];
        return std::min<int64_t>(chunk_positions, position[i] + 1 - sc.chunk_begin[c]);
      };
      int64_t total = 0;
      for (int64_t c = 0; c < chunks; ++c) total += work(c);
      int64_t done = 0, part = 1;
      for (int64_t k = 0; k < chunks && part < parts; ++k) {
        done += work(sc.order[k]);
        while (part < parts && done * parts >= total * part) sc.part_begin[part++] = k + 1;
      }
    }
    auto range_of = [&](int64_t c) {
      const int64_t i = sc.chunk_token[c], p0 = sc.chunk_begin[c];
      return ChunkJob{p0, std::min<int64_t>(p0 + chunk_positions, position[i] + 1),
                      table + static_cast<int64_t>(seq_of_token[i]) * max_blocks};
    };
    pool.ParallelFor(parts, 1, [&](int64_t part0, int64_t part1, int) {
      thread_local std::vector<float> qs, scores;
      qs.resize(static_cast<size_t>(kTileTokens * nh * hd));
      scores.resize(static_cast<size_t>(kTileTokens * nh * chunk_positions));
      const int64_t end = sc.part_begin[part1];
      for (int64_t k = sc.part_begin[part0]; k < end;) {
        // The next chunks of this thread's run over the same positions of the same sequence.
        const ChunkJob job = range_of(sc.order[k]);
        ChunkTokens tok;
        for (; k < end && tok.n < kTileTokens; ++k) {
          const int64_t c = sc.order[k];
          const ChunkJob other = range_of(c);
          const bool same = other.p0 == job.p0 && other.p1 == job.p1 && other.blocks == job.blocks;
          if (tok.n > 0 && !same) break;
          const int64_t i = sc.chunk_token[c];
          float* qu = qs.data() + tok.n * nh * hd;
          for (int64_t j = 0; j < nh * hd; ++j) qu[j] = q[i * nh * hd + j] * scale;
          float* part = sc.partial.data() + c * partial_floats;
          tok.q[tok.n] = qu;
          tok.scores[tok.n] = scores.data() + tok.n * nh * chunk_positions;
          tok.m[tok.n] = part;
          tok.l[tok.n] = part + nh;
          tok.acc[tok.n] = part + 2 * nh;
          ++tok.n;
        }
        if (kv.type == KvType::kBf16) {
          AttendChunk(geo, job, static_cast<const uint16_t*>(kv.k),
                      static_cast<const uint16_t*>(kv.v), tok);
        } else if (kv.type == KvType::kI8) {
          AttendChunk(geo, job, static_cast<const int8_t*>(kv.k), static_cast<const int8_t*>(kv.v),
                      tok);
        } else {
          AttendChunk(geo, job, static_cast<const float*>(kv.k), static_cast<const float*>(kv.v),
                      tok);
        }
      }
    });
    // Merge each token's chunks in order: out = sum_c e_c acc_c / sum_c e_c l_c, with
    // e_c = exp(m_c - max_c m_c) (1 for a token of one chunk).
    pool.ParallelFor(i1 - i0, 1, [&](int64_t w0, int64_t w1, int) {
      for (int64_t w = w0; w < w1; ++w) {
        const int64_t i = i0 + w, c_begin = sc.first_chunk[w], c_end = sc.first_chunk[w + 1];
        for (int64_t h = 0; h < nh; ++h) {
          float mx = -std::numeric_limits<float>::infinity();
          for (int64_t c = c_begin; c < c_end; ++c)
            mx = std::max(mx, sc.partial[c * partial_floats + h]);
          float* o = out + (i * nh + h) * hd;
          std::fill(o, o + hd, 0.f);
          float denom = 0.f;
          for (int64_t c = c_begin; c < c_end; ++c) {
            const float* part = sc.partial.data() + c * partial_floats;
            const float e = std::exp(part[h] - mx);
            denom += e * part[nh + h];
            const float* a = part + 2 * nh + h * hd;
            for (int64_t j = 0; j < hd; ++j) o[j] += e * a[j];
          }
          const float inv = 1.f / denom;
          for (int64_t j = 0; j < hd; ++j) o[j] *= inv;
        }
      }
    });
    i0 = i1;
  }
}

}  // namespace zaya::cpu
