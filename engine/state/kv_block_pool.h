// Accounting for the sequence-state memory of all running sequences (docs/architecture.md,
// budgets): a pool of fixed-size, reference-counted KV blocks plus one fixed-size CCA state slot
// per sequence, carved from one byte budget (memory.state).
//
// The pool hands out indices; it owns no memory. The backend owns two arenas and addresses them by
// these indices:
//   KV arena    [blocks_total][block_bytes]   block b holds block_tokens token slots of K and V for
//                                              every layer (block_bytes = layers x kv_heads x
//                                              head_dim x 2 x dtype size x block_tokens);
//   state arena [max_sequences][state_bytes]  the fixed CCA conv/V state of one sequence.
// Budget split: max_sequences x state_bytes is reserved first (the state is small and fixed: every
// admitted sequence needs exactly one slot, so reserving it up front keeps admission exact); the
// rest is divided into blocks: blocks_total = (budget - max_sequences x state_bytes) / block_bytes.
//
// Placement: a sequence's next block is the one after its last where that is free, else the
// middle of the longest run of free blocks (the run's start at block 0), so that each sequence's
// blocks form long runs of consecutive ids. The attention op reads a sequence's K and V rows block
// by block; when sequences decoding together took blocks in turn (lowest id first, until session
// 17), each of their 8 KiB blocks of a layer lay 128 KiB from the next (16 sequences), and the CPU
// backend read them at half the rate of consecutive ones (docs/performance.md, session 17).
//
// Sharing: Fork(seq) makes a new sequence whose table references every block of seq (refcount + 1).
// Writes go only into a sequence's last, partially filled block; when that block is shared, Append
// first gives the sequence a private copy (copy-on-write) and reports the (src, dst) pair, which
// the caller must copy in the backend before writing new tokens. Full shared blocks are never
// copied. Fork also reports the state slot pair (src, dst) whose CCA state the caller must copy.
//
// Errors are Status values, never crashes: an exhausted budget is kOverBudget and leaves the pool
// unchanged (Append is all-or-nothing); an unknown or already freed SeqId is kNotFound.
//
// Thread-compatible: owned and driven by the one scheduler thread.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "base/status.h"

namespace zaya {

struct KvPoolOptions {
  uint64_t budget_bytes = 0;  // memory.state
  int block_tokens = 16;      // memory.kv_block_tokens
  uint64_t block_bytes = 0;   // bytes of one block (all layers, K and V, block_tokens tokens)
  uint64_t state_bytes = 0;   // fixed CCA state bytes per sequence (0 = the model has none)
  int max_sequences = 64;     // sequences alive at once (running + forked RSA members)
};

// Opaque handle: slot index in the low 32 bits, a generation in the high bits so that a stale
// handle of a freed sequence is detected even after its slot is reused.
using SeqId = uint64_t;

struct BlockCopy {
  int32_t src = -1;  // copy this block ...
  int32_t dst = -1;  // ... into this one (the first `tokens` token slots are meaningful)
  int tokens = 0;
};

struct StateCopy {
  int32_t src_slot = -1;
  int32_t dst_slot = -1;
};

struct BlockTable {
  std::vector<int32_t> blocks;  // block ids, in token order
  int64_t tokens = 0;           // token slots in use; blocks.size() == ceil(tokens / block_tokens)
};

struct KvPoolStats {
  int64_t blocks_total = 0;
  int64_t blocks_used = 0;    // blocks with refcount >= 1
  int64_t blocks_shared = 0;  // blocks with refcount >= 2
  int64_t blocks_peak = 0;    // most blocks_used ever
  int64_t sequences = 0;      // live sequences (= state slots in use)
  int64_t sequences_peak = 0;
  int64_t max_sequences = 0;
  uint64_t budget_bytes = 0;
  uint64_t reserved_state_bytes = 0;  // max_sequences x state_bytes
  uint64_t bytes_used = 0;            // blocks_used x block_bytes + sequences x state_bytes
  uint64_t bytes_peak = 0;
};

class KvBlockPool {
 public:
  // Errors: block_tokens < 1, block_bytes == 0, max_sequences < 1, or a budget too small for the
  // state slots plus at least one block (the message gives the numbers).
  static Result<KvBlockPool> Create(const KvPoolOptions& options);

  // A new empty sequence holding one state slot. kOverBudget when max_sequences are alive.
  Result<SeqId> CreateSequence();

  // Grows `seq` by `tokens` token slots, allocating blocks as needed. If the last block is shared
  // and partially filled, it is first replaced by a private copy, returned in *copy (else
  // copy->src == -1); the caller performs that copy before writing. kOverBudget (nothing changed)
  // when the free blocks do not suffice.
  Status Append(SeqId seq, int64_t tokens, BlockCopy* copy);

  // A new sequence sharing every block of `src` (no block is allocated). *state gets the slot pair
  // to copy. kOverBudget when no state slot is free.
  Result<SeqId> Fork(SeqId src, StateCopy* state);

  // Releases the sequence's slot and its references; blocks whose refcount reaches 0 are free.
  Status Free(SeqId seq);

  // Table and state slot of a live sequence; kNotFound for unknown or freed ids.
  Result<const BlockTable*> Table(SeqId seq) const;
  Result<int32_t> StateSlot(SeqId seq) const;

  // Blocks holding `tokens` tokens: ceil(tokens / block_tokens).
  int64_t BlocksForTokens(int64_t tokens) const;

  // Exact: true iff a new sequence of `tokens` tokens can be created and appended now.
  bool CanAdmit(int64_t tokens) const;

  // Peak blocks of the RSA pattern "prefill one sequence of prefix_tokens, fork it into `members`
  // sequences in total (the original is one of them), grow each by up to member_tokens": the shared
  // full prefix blocks once plus each member's private blocks (its copy of a partial last prefix
  // block included; the last writer keeps the original, so exactly one copy is saved).
  int64_t BlocksForPopulation(int64_t prefix_tokens, int members, int64_t member_tokens) const;
  bool CanAdmitPopulation(int64_t prefix_tokens, int members, int64_t member_tokens) const;

  int64_t free_blocks() const { return free_count_; }
  int64_t free_slots() const { return static_cast<int64_t>(free_slots_.size()); }
  int block_tokens() const { return options_.block_tokens; }
  KvPoolStats Stats() const;

  // Recomputes refcounts from the tables and checks them and every counter; kInternal on mismatch.
  // O(blocks + table entries); for tests and debug builds.
  Status CheckInvariants() const;

 private:
  struct Slot {
    BlockTable table;
    uint32_t generation = 0;
    bool live = false;
  };

  explicit KvBlockPool(const KvPoolOptions& options, int64_t blocks_total);

  Result<Slot*> Find(SeqId seq);
  Result<const Slot*> Find(SeqId seq) const;
  // A free block for a sequence whose last block is `after` (-1: none): after + 1 where it is free,
  // else the start of a new run (NewRunStart, a scan of every block: O(blocks_total), once per run
  // a sequence starts; a pool fragmented into single blocks pays it per block). There must be a
  // free block.
  int32_t TakeBlock(int32_t after);
  int32_t NewRunStart() const;
  void Release(int32_t block);
  void UpdatePeaks();

  KvPoolOptions options_;
  std::vector<int32_t> refcount_;     // [blocks_total]
  std::vector<uint8_t> free_map_;     // [blocks_total]: 1 where the block is free
  int64_t free_count_ = 0;
  std::vector<Slot> slots_;           // [max_sequences]
  std::vector<int32_t> free_slots_;   // stack
  int64_t blocks_used_ = 0;
  int64_t blocks_shared_ = 0;
  int64_t blocks_peak_ = 0;
  int64_t sequences_peak_ = 0;
  uint64_t bytes_peak_ = 0;
};

}  // namespace zaya
