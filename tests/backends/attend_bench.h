// Decode attention over a long KV cache on its own (zaya::cpu::Attend, ZAYA1's heads: 8 query
// heads on 2 KV heads of 128, blocks of 16 positions), for the cache's dtype and for where a
// sequence's blocks lie: consecutive ids (what the KV pool hands a sequence since session 17), or
// interleaved (sequence s's j-th block is j x S + s: what sequences decoding together got from a
// pool that handed out the lowest free id). Reports the time of one op for S tokens, each at
// `context` positions, and the KV bytes it read per second.
#pragma once

namespace zaya::bench {

// argv after "--attend": [--kv bf16|int8] [--context N] [--sequences S]
// [--blocks consecutive|interleaved] [--reps R] [--threads P] [--prefill N]. With --prefill N each
// sequence has N query tokens (its last N positions, as a prompt's prefill step holds them)
// instead of one, and the time is also given per (token, position, KV head). Returns the exit
// code (2: usage).
int RunAttendBench(int argc, char** argv);

}  // namespace zaya::bench
