#include "engine/state/kv_block_pool.h"

#include <algorithm>
#include <string>

namespace zaya {
namespace {

constexpr uint32_t kSlotBits = 32;

SeqId MakeSeqId(int32_t slot, uint32_t generation) {
  return (static_cast<uint64_t>(generation) << kSlotBits) | static_cast<uint32_t>(slot);
}

std::string SeqName(SeqId seq) {
  return "sequence " + std::to_string(seq & 0xffffffffu) + "/" + std::to_string(seq >> kSlotBits);
}

}  // namespace

Result<KvBlockPool> KvBlockPool::Create(const KvPoolOptions& o) {
  if (o.block_tokens < 1) {
    return InvalidArgument("kv block_tokens = " + std::to_string(o.block_tokens) +
                           " is not allowed; use at least 1 token per block");
  }
  if (o.block_bytes == 0) {
    return InvalidArgument("kv block_bytes is 0; the model's KV size per block must be positive");
  }
  if (o.max_sequences < 1) {
    return InvalidArgument("max_sequences = " + std::to_string(o.max_sequences) +
                           " is not allowed; use at least 1");
  }
  const uint64_t reserved = static_cast<uint64_t>(o.max_sequences) * o.state_bytes;
  if (o.state_bytes != 0 && reserved / o.state_bytes != static_cast<uint64_t>(o.max_sequences)) {
    return InvalidArgument("max_sequences x state_bytes overflows");
  }
  const uint64_t blocks =
      o.budget_bytes > reserved ? (o.budget_bytes - reserved) / o.block_bytes : 0;
  if (blocks == 0) {
    return OverBudget("memory.state = " + std::to_string(o.budget_bytes) +
                      " bytes cannot hold the CCA state of " + std::to_string(o.max_sequences) +
                      " sequences (" + std::to_string(reserved) + " bytes) plus one KV block (" +
                      std::to_string(o.block_bytes) +
                      " bytes); raise memory.state or lower the sequence limit");
  }
  if (blocks > static_cast<uint64_t>(INT32_MAX)) {
    return InvalidArgument("memory.state would give " + std::to_string(blocks) +
                           " KV blocks, more than 2^31-1; raise memory.kv_block_tokens");
  }
  return KvBlockPool(o, static_cast<int64_t>(blocks));
}

KvBlockPool::KvBlockPool(const KvPoolOptions& options, int64_t blocks_total)
    : options_(options), refcount_(blocks_total, 0), slots_(options.max_sequences) {
  free_map_.assign(static_cast<size_t>(blocks_total), 1);
  free_count_ = blocks_total;
  free_slots_.reserve(options.max_sequences);
  for (int s = options.max_sequences - 1; s >= 0; --s) free_slots_.push_back(s);
}

Result<KvBlockPool::Slot*> KvBlockPool::Find(SeqId seq) {
  const uint64_t index = seq & 0xffffffffu;
  if (index >= slots_.size() || !slots_[index].live ||
      slots_[index].generation != static_cast<uint32_t>(seq >> kSlotBits)) {
    return NotFound(SeqName(seq) + " is not a live sequence of the KV pool (freed or never made)");
  }
  return &slots_[index];
}

Result<const KvBlockPool::Slot*> KvBlockPool::Find(SeqId seq) const {
  auto found = const_cast<KvBlockPool*>(this)->Find(seq);
  if (!found.ok()) return found.status();
  return static_cast<const Slot*>(*found);
}

int32_t KvBlockPool::NewRunStart() const {
  const int64_t total = static_cast<int64_t>(free_map_.size());
  int64_t best = -1, best_len = 0;
  for (int64_t b = 0; b < total;) {
    if (!free_map_[b]) {
      ++b;
      continue;
    }
    int64_t e = b;
    while (e < total && free_map_[e]) ++e;
    if (e - b > best_len) {
      best = b;
      best_len = e - b;
    }
    b = e;
  }
  // The first half of a run behind a used block is left to that block's sequence to grow into.
  return static_cast<int32_t>(best == 0 ? 0 : best + best_len / 2);
}

int32_t KvBlockPool::TakeBlock(int32_t after) {
  const bool next_free = after >= 0 && after + 1 < static_cast<int64_t>(free_map_.size()) &&
                         free_map_[static_cast<size_t>(after) + 1];
  const int32_t b = next_free ? after + 1 : NewRunStart();
  free_map_[b] = 0;
  --free_count_;
  refcount_[b] = 1;
  ++blocks_used_;
  return b;
}

void KvBlockPool::Release(int32_t block) {
  int32_t& rc = refcount_[block];
  if (rc == 2) --blocks_shared_;
  if (--rc == 0) {
    --blocks_used_;
    free_map_[block] = 1;
    ++free_count_;
  }
}

void KvBlockPool::UpdatePeaks() {
  blocks_peak_ = std::max(blocks_peak_, blocks_used_);
  const int64_t seqs = static_cast<int64_t>(slots_.size() - free_slots_.size());
  sequences_peak_ = std::max(sequences_peak_, seqs);
  bytes_peak_ = std::max(bytes_peak_, Stats().bytes_used);
}

Result<SeqId> KvBlockPool::CreateSequence() {
  if (free_slots_.empty()) {
    return OverBudget("all " + std::to_string(options_.max_sequences) +
                      " sequence state slots are in use; wait for sequences to finish");
  }
  const int32_t index = free_slots_.back();
  free_slots_.pop_back();
  Slot& slot = slots_[index];
  slot.live = true;
  slot.table = {};
  UpdatePeaks();
  return MakeSeqId(index, slot.generation);
}

int64_t KvBlockPool::BlocksForTokens(int64_t tokens) const {
  return tokens <= 0 ? 0 : (tokens + options_.block_tokens - 1) / options_.block_tokens;
}

Status KvBlockPool::Append(SeqId seq, int64_t tokens, BlockCopy* copy) {
  if (copy != nullptr) *copy = {};
  ZAYA_ASSIGN_OR_RETURN(Slot * slot, Find(seq));
  if (tokens < 0) return InvalidArgument("cannot append a negative number of tokens");
  if (tokens == 0) return Status::Ok();
  BlockTable& table = slot->table;
  const int64_t bt = options_.block_tokens;
  const int64_t in_last = table.tokens % bt;  // filled slots of a partial last block (0 = none)
  const bool cow = in_last != 0 && refcount_[table.blocks.back()] > 1;
  const int64_t new_blocks = BlocksForTokens(table.tokens + tokens) -
                             static_cast<int64_t>(table.blocks.size());
  const int64_t needed = new_blocks + (cow ? 1 : 0);
  if (needed > free_blocks()) {
    return OverBudget("appending " + std::to_string(tokens) + " tokens to " + SeqName(seq) +
                      " needs " + std::to_string(needed) + " free KV blocks, " +
                      std::to_string(free_blocks()) + " are free");
  }
  if (cow) {
    const int32_t src = table.blocks.back();
    const int32_t dst =
        TakeBlock(table.blocks.size() > 1 ? table.blocks[table.blocks.size() - 2] : -1);
    Release(src);
    table.blocks.back() = dst;
    if (copy != nullptr) *copy = {src, dst, static_cast<int>(in_last)};
  }
  for (int64_t i = 0; i < new_blocks; ++i) {
    table.blocks.push_back(TakeBlock(table.blocks.empty() ? -1 : table.blocks.back()));
  }
  table.tokens += tokens;
  UpdatePeaks();
  return Status::Ok();
}

Result<SeqId> KvBlockPool::Fork(SeqId src, StateCopy* state) {
  if (state != nullptr) *state = {};
  ZAYA_ASSIGN_OR_RETURN(Slot * from, Find(src));
  if (free_slots_.empty()) {
    return OverBudget("cannot fork " + SeqName(src) + ": all " +
                      std::to_string(options_.max_sequences) + " sequence state slots are in use");
  }
  const BlockTable table = from->table;  // `from` stays valid: slots_ never reallocates
  ZAYA_ASSIGN_OR_RETURN(SeqId dst, CreateSequence());
  for (int32_t b : table.blocks) {
    if (++refcount_[b] == 2) ++blocks_shared_;
  }
  slots_[dst & 0xffffffffu].table = table;
  if (state != nullptr) {
    *state = {static_cast<int32_t>(src & 0xffffffffu), static_cast<int32_t>(dst & 0xffffffffu)};
  }
  UpdatePeaks();
  return dst;
}

Status KvBlockPool::Free(SeqId seq) {
  ZAYA_ASSIGN_OR_RETURN(Slot * slot, Find(seq));
  for (int32_t b : slot->table.blocks) Release(b);
  slot->table = {};
  slot->live = false;
  ++slot->generation;
  free_slots_.push_back(static_cast<int32_t>(seq & 0xffffffffu));
  return Status::Ok();
}

Result<const BlockTable*> KvBlockPool::Table(SeqId seq) const {
  ZAYA_ASSIGN_OR_RETURN(const Slot* slot, Find(seq));
  return &slot->table;
}

Result<int32_t> KvBlockPool::StateSlot(SeqId seq) const {
  ZAYA_ASSIGN_OR_RETURN(const Slot* slot, Find(seq));
  (void)slot;
  return static_cast<int32_t>(seq & 0xffffffffu);
}

bool KvBlockPool::CanAdmit(int64_t tokens) const {
  return tokens >= 0 && !free_slots_.empty() && BlocksForTokens(tokens) <= free_blocks();
}

int64_t KvBlockPool::BlocksForPopulation(int64_t prefix_tokens, int members,
                                         int64_t member_tokens) const {
  if (members <= 0) return 0;
  if (member_tokens <= 0) return BlocksForTokens(prefix_tokens);
  const int64_t shared_full = prefix_tokens / options_.block_tokens;
  const int64_t per_member = BlocksForTokens(prefix_tokens + member_tokens) - shared_full;
  return shared_full + members * per_member;
}

bool KvBlockPool::CanAdmitPopulation(int64_t prefix_tokens, int members,
                                     int64_t member_tokens) const {
  return members >= 1 && prefix_tokens >= 0 && free_slots() >= members &&
         BlocksForPopulation(prefix_tokens, members, member_tokens) <= free_blocks();
}

KvPoolStats KvBlockPool::Stats() const {
  KvPoolStats s;
  s.blocks_total = static_cast<int64_t>(refcount_.size());
  s.blocks_used = blocks_used_;
  s.blocks_shared = blocks_shared_;
  s.blocks_peak = blocks_peak_;
  s.sequences = static_cast<int64_t>(slots_.size() - free_slots_.size());
  s.sequences_peak = sequences_peak_;
  s.max_sequences = options_.max_sequences;
  s.budget_bytes = options_.budget_bytes;
  s.reserved_state_bytes = static_cast<uint64_t>(options_.max_sequences) * options_.state_bytes;
  s.bytes_used = static_cast<uint64_t>(blocks_used_) * options_.block_bytes +
                 static_cast<uint64_t>(s.sequences) * options_.state_bytes;
  s.bytes_peak = std::max(bytes_peak_, s.bytes_used);
  return s;
}

Status KvBlockPool::CheckInvariants() const {
  std::vector<int32_t> expected(refcount_.size(), 0);
  int64_t live = 0;
  for (const Slot& slot : slots_) {
    if (!slot.live) {
      if (!slot.table.blocks.empty()) return Internal("a free slot still holds blocks");
      continue;
    }
    ++live;
    const BlockTable& t = slot.table;
    if (static_cast<int64_t>(t.blocks.size()) != BlocksForTokens(t.tokens)) {
      return Internal("a table has " + std::to_string(t.blocks.size()) + " blocks for " +
                      std::to_string(t.tokens) + " tokens");
    }
    for (int32_t b : t.blocks) {
      if (b < 0 || b >= static_cast<int32_t>(refcount_.size())) return Internal("bad block id");
      ++expected[b];
    }
  }
  if (live + static_cast<int64_t>(free_slots_.size()) != static_cast<int64_t>(slots_.size())) {
    return Internal("live + free slots != max_sequences");
  }
  int64_t used = 0, shared = 0;
  for (size_t b = 0; b < refcount_.size(); ++b) {
    if (expected[b] != refcount_[b]) {
      return Internal("block " + std::to_string(b) + " refcount " + std::to_string(refcount_[b]) +
                      " but " + std::to_string(expected[b]) + " references");
    }
    used += expected[b] > 0;
    shared += expected[b] > 1;
  }
  int64_t marked_free = 0;
  for (size_t b = 0; b < free_map_.size(); ++b) {
    if (free_map_[b] != (refcount_[b] == 0 ? 1 : 0)) {
      return Internal("block " + std::to_string(b) + " is marked " +
                      (free_map_[b] ? "free" : "used") + " with refcount " +
                      std::to_string(refcount_[b]));
    }
    marked_free += free_map_[b];
  }
  if (marked_free != free_count_) return Internal("free block count disagrees with the map");
  if (used != blocks_used_ || shared != blocks_shared_ ||
      used + free_blocks() != static_cast<int64_t>(refcount_.size())) {
    return Internal("block counters disagree with the tables");
  }
  return Status::Ok();
}

}  // namespace zaya
