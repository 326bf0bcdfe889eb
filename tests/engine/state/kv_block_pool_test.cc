#include "engine/state/kv_block_pool.h"

#include <gtest/gtest.h>

#include <map>
#include <vector>

#include "engine/sampler/rng.h"

namespace zaya {
namespace {

constexpr uint64_t kBlockBytes = 1000;
constexpr uint64_t kStateBytes = 300;

KvBlockPool MakePool(int64_t blocks, int max_sequences = 32, int block_tokens = 16) {
  KvPoolOptions o;
  o.block_tokens = block_tokens;
  o.block_bytes = kBlockBytes;
  o.state_bytes = kStateBytes;
  o.max_sequences = max_sequences;
  // Exactly `blocks` blocks plus a remainder smaller than a block.
  o.budget_bytes = max_sequences * kStateBytes + blocks * kBlockBytes + kBlockBytes - 1;
  auto pool = KvBlockPool::Create(o);
  EXPECT_TRUE(pool.ok()) << pool.status().ToString();
  return std::move(pool).value();
}

TEST(KvBlockPoolTest, SizesFromTheBudget) {
  KvBlockPool pool = MakePool(100);
  const KvPoolStats s = pool.Stats();
  EXPECT_EQ(s.blocks_total, 100);
  EXPECT_EQ(s.reserved_state_bytes, 32 * kStateBytes);
  EXPECT_EQ(s.bytes_used, 0u);
  EXPECT_EQ(pool.free_slots(), 32);
}

TEST(KvBlockPoolTest, RejectsImpossibleOptions) {
  KvPoolOptions o;
  o.block_bytes = kBlockBytes;
  o.state_bytes = kStateBytes;
  o.max_sequences = 10;
  o.budget_bytes = 10 * kStateBytes + kBlockBytes - 1;  // no room for one block
  auto r = KvBlockPool::Create(o);
  EXPECT_EQ(r.status().code(), StatusCode::kOverBudget);
  EXPECT_NE(r.status().message().find("memory.state"), std::string::npos);
  o.budget_bytes = 1 << 20;
  o.block_tokens = 0;
  EXPECT_EQ(KvBlockPool::Create(o).status().code(), StatusCode::kInvalidArgument);
  o.block_tokens = 16;
  o.block_bytes = 0;
  EXPECT_FALSE(KvBlockPool::Create(o).ok());
}

TEST(KvBlockPoolTest, AppendAllocatesCeilBlocks) {
  KvBlockPool pool = MakePool(100);
  SeqId s = *pool.CreateSequence();
  BlockCopy copy;
  ASSERT_TRUE(pool.Append(s, 17, &copy).ok());
  EXPECT_EQ(copy.src, -1);
  EXPECT_EQ((*pool.Table(s))->blocks.size(), 2u);
  ASSERT_TRUE(pool.Append(s, 15, &copy).ok());
  EXPECT_EQ((*pool.Table(s))->blocks.size(), 2u);
  ASSERT_TRUE(pool.Append(s, 1, &copy).ok());
  EXPECT_EQ((*pool.Table(s))->blocks.size(), 3u);
  EXPECT_EQ((*pool.Table(s))->tokens, 33);
  EXPECT_EQ(pool.Stats().bytes_used, 3 * kBlockBytes + kStateBytes);
  EXPECT_TRUE(pool.CheckInvariants().ok());
}

TEST(KvBlockPoolTest, ForkIntoSixteenSharesThePromptOnce) {
  KvBlockPool pool = MakePool(2000);
  SeqId root = *pool.CreateSequence();
  ASSERT_TRUE(pool.Append(root, 1000, nullptr).ok());  // 62 full blocks + 8 tokens in block 63
  const int64_t prompt_blocks = 63;
  EXPECT_EQ(pool.Stats().blocks_used, prompt_blocks);

  std::vector<SeqId> members = {root};
  for (int i = 1; i < 16; ++i) {
    StateCopy sc;
    auto f = pool.Fork(root, &sc);
    ASSERT_TRUE(f.ok()) << f.status().ToString();
    EXPECT_EQ(sc.src_slot, *pool.StateSlot(root));
    EXPECT_EQ(sc.dst_slot, *pool.StateSlot(*f));
    members.push_back(*f);
  }
  KvPoolStats s = pool.Stats();
  EXPECT_EQ(s.blocks_used, prompt_blocks);  // allocated once
  EXPECT_EQ(s.blocks_shared, prompt_blocks);
  EXPECT_EQ(s.sequences, 16);
  EXPECT_EQ(s.bytes_used, prompt_blocks * kBlockBytes + 16 * kStateBytes);
  ASSERT_TRUE(pool.CheckInvariants().ok());

  // First decode step: each member writes into the shared partial block 63 -> copy-on-write for
  // the first 15 writers; the last one is then the sole owner and writes in place.
  const int32_t shared_last = (*pool.Table(root))->blocks.back();
  int copies = 0;
  for (SeqId m : members) {
    BlockCopy c;
    ASSERT_TRUE(pool.Append(m, 1, &c).ok());
    const BlockTable& t = **pool.Table(m);
    if (c.src != -1) {
      ++copies;
      EXPECT_EQ(c.src, shared_last);
      EXPECT_EQ(c.dst, t.blocks.back());
      EXPECT_EQ(c.tokens, 8);  // 1000 % 16 tokens to copy
    } else {
      EXPECT_EQ(t.blocks.back(), shared_last);
    }
    // The 62 full prefix blocks stay shared by reference.
    EXPECT_EQ(t.blocks[61], (*pool.Table(root))->blocks[61]);
  }
  EXPECT_EQ(copies, 15);
  s = pool.Stats();
  EXPECT_EQ(s.blocks_used, 62 + 16);
  EXPECT_EQ(s.blocks_shared, 62);
  EXPECT_EQ(s.blocks_used, pool.BlocksForPopulation(1000, 16, 1));
  ASSERT_TRUE(pool.CheckInvariants().ok());

  // Grow every member to its budget: the population helper predicts the peak exactly.
  for (SeqId m : members) ASSERT_TRUE(pool.Append(m, 299, nullptr).ok());
  EXPECT_EQ(pool.Stats().blocks_used, pool.BlocksForPopulation(1000, 16, 300));

  for (SeqId m : members) ASSERT_TRUE(pool.Free(m).ok());
  s = pool.Stats();
  EXPECT_EQ(s.blocks_used, 0);
  EXPECT_EQ(s.blocks_shared, 0);
  EXPECT_EQ(s.sequences, 0);
  EXPECT_EQ(s.bytes_used, 0u);
  EXPECT_EQ(pool.free_blocks(), 2000);
  EXPECT_EQ(pool.free_slots(), 32);
  EXPECT_GE(s.blocks_peak, pool.BlocksForPopulation(1000, 16, 300));
  ASSERT_TRUE(pool.CheckInvariants().ok());
}

TEST(KvBlockPoolTest, NoCopyWhenTheSharedLastBlockIsFull) {
  KvBlockPool pool = MakePool(100);
  SeqId a = *pool.CreateSequence();
  ASSERT_TRUE(pool.Append(a, 32, nullptr).ok());
  SeqId b = *pool.Fork(a, nullptr);
  BlockCopy c;
  ASSERT_TRUE(pool.Append(b, 1, &c).ok());
  EXPECT_EQ(c.src, -1);
  EXPECT_EQ(pool.Stats().blocks_used, 3);
  EXPECT_EQ(pool.Stats().blocks_shared, 2);
}

TEST(KvBlockPoolTest, CopyOnWriteAtTheFirstDivergentBlock) {
  KvBlockPool pool = MakePool(100);
  SeqId a = *pool.CreateSequence();
  ASSERT_TRUE(pool.Append(a, 40, nullptr).ok());  // blocks 0, 1 full; block 2 has 8 tokens
  SeqId b = *pool.Fork(a, nullptr);
  BlockCopy c;
  ASSERT_TRUE(pool.Append(b, 20, &c).ok());  // b diverges inside block 2
  const BlockTable& ta = **pool.Table(a);
  const BlockTable& tb = **pool.Table(b);
  EXPECT_EQ(c.src, ta.blocks[2]);
  EXPECT_EQ(c.dst, tb.blocks[2]);
  EXPECT_EQ(c.tokens, 8);
  EXPECT_EQ(ta.blocks[0], tb.blocks[0]);
  EXPECT_EQ(ta.blocks[1], tb.blocks[1]);
  EXPECT_NE(ta.blocks[2], tb.blocks[2]);
  EXPECT_EQ(tb.blocks.size(), 4u);  // 60 tokens
  // a now owns its block 2 alone: no copy when it continues.
  ASSERT_TRUE(pool.Append(a, 1, &c).ok());
  EXPECT_EQ(c.src, -1);
  EXPECT_TRUE(pool.CheckInvariants().ok());
}

TEST(KvBlockPoolTest, ExhaustionIsAnErrorAndChangesNothing) {
  KvBlockPool pool = MakePool(4, /*max_sequences=*/2);
  SeqId a = *pool.CreateSequence();
  ASSERT_TRUE(pool.Append(a, 50, nullptr).ok());  // 4 blocks, 2 tokens in the last
  EXPECT_TRUE(pool.CanAdmit(0));
  EXPECT_FALSE(pool.CanAdmit(1));
  Status st = pool.Append(a, 14, nullptr);  // fills the last block exactly
  EXPECT_TRUE(st.ok());
  st = pool.Append(a, 1, nullptr);
  EXPECT_EQ(st.code(), StatusCode::kOverBudget);
  EXPECT_EQ((*pool.Table(a))->tokens, 64);
  // Fork needs no block, but the fork's next token needs a new block, and none is free.
  SeqId b = *pool.Fork(a, nullptr);
  EXPECT_EQ(pool.Append(b, 1, nullptr).code(), StatusCode::kOverBudget);
  EXPECT_EQ(pool.Fork(a, nullptr).status().code(), StatusCode::kOverBudget);  // no slot
  EXPECT_EQ(pool.CreateSequence().status().code(), StatusCode::kOverBudget);
  EXPECT_TRUE(pool.CheckInvariants().ok());
  ASSERT_TRUE(pool.Free(a).ok());
  ASSERT_TRUE(pool.Free(b).ok());
  EXPECT_TRUE(pool.CanAdmit(64));
  EXPECT_FALSE(pool.CanAdmit(65));
}

TEST(KvBlockPoolTest, CowNeedsABlockToo) {
  KvBlockPool pool = MakePool(2);
  SeqId a = *pool.CreateSequence();
  ASSERT_TRUE(pool.Append(a, 20, nullptr).ok());  // both blocks, 4 tokens in the last
  SeqId b = *pool.Fork(a, nullptr);
  BlockCopy c;
  EXPECT_EQ(pool.Append(b, 1, &c).code(), StatusCode::kOverBudget);
  EXPECT_EQ(c.src, -1);
  EXPECT_EQ((*pool.Table(b))->tokens, 20);
  EXPECT_TRUE(pool.CheckInvariants().ok());
}

TEST(KvBlockPoolTest, StaleAndUnknownIdsAreNotFound) {
  KvBlockPool pool = MakePool(10);
  SeqId a = *pool.CreateSequence();
  ASSERT_TRUE(pool.Free(a).ok());
  EXPECT_EQ(pool.Free(a).code(), StatusCode::kNotFound);
  SeqId again = *pool.CreateSequence();  // reuses the slot with a new generation
  EXPECT_NE(again, a);
  EXPECT_EQ(pool.Append(a, 1, nullptr).code(), StatusCode::kNotFound);
  EXPECT_EQ(pool.Table(a).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(pool.Fork(12345, nullptr).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(pool.Append(again, -1, nullptr).code(), StatusCode::kInvalidArgument);
}

TEST(KvBlockPoolTest, PopulationArithmeticIsExact) {
  KvBlockPool pool = MakePool(1000);
  // prefix 32 (2 full blocks), 4 members x 16 tokens: 2 shared + 4 x 1.
  EXPECT_EQ(pool.BlocksForPopulation(32, 4, 16), 6);
  // prefix 40 (2 full + 8), 4 members x 8 tokens: each ends at 48 = 3 blocks, 1 private each.
  EXPECT_EQ(pool.BlocksForPopulation(40, 4, 8), 2 + 4);
  EXPECT_EQ(pool.BlocksForPopulation(40, 4, 9), 2 + 4 * 2);
  EXPECT_EQ(pool.BlocksForPopulation(40, 4, 0), 3);
  EXPECT_TRUE(pool.CanAdmitPopulation(40, 4, 9));
  EXPECT_FALSE(pool.CanAdmitPopulation(40, 33, 9));  // 32 state slots
  // Check by simulation for a few shapes.
  for (int64_t prefix : {0, 1, 15, 16, 17, 100}) {
    for (int64_t grow : {1, 15, 16, 33}) {
      KvBlockPool p = MakePool(1000);
      SeqId root = *p.CreateSequence();
      ASSERT_TRUE(p.Append(root, prefix, nullptr).ok());
      std::vector<SeqId> m = {root};
      for (int i = 1; i < 5; ++i) m.push_back(*p.Fork(root, nullptr));
      for (SeqId s : m) ASSERT_TRUE(p.Append(s, grow, nullptr).ok());
      EXPECT_EQ(p.Stats().blocks_peak, p.BlocksForPopulation(prefix, 5, grow))
          << prefix << " " << grow;
    }
  }
}

// Sixteen sequences decoding together take their blocks in turn. Each one's blocks must still be
// consecutive ids (the attention op reads a sequence's blocks one after another; handed out in
// turn, one sequence's blocks lay 16 apart and the CPU backend read them at half the rate), and a
// pool filled to its last block by the same pattern gives every block out.
TEST(KvBlockPoolTest, SequencesGrowingTogetherKeepTheirBlocksConsecutive) {
  KvBlockPool pool = MakePool(1000);
  std::vector<SeqId> seqs;
  for (int i = 0; i < 16; ++i) seqs.push_back(*pool.CreateSequence());
  for (int token = 0; token < 20 * 16; ++token) {
    for (SeqId s : seqs) ASSERT_TRUE(pool.Append(s, 1, nullptr).ok());
  }
  for (SeqId s : seqs) {
    const std::vector<int32_t>& blocks = (*pool.Table(s))->blocks;
    ASSERT_EQ(blocks.size(), 20u);
    for (size_t j = 1; j < blocks.size(); ++j) {
      EXPECT_EQ(blocks[j], blocks[j - 1] + 1) << "sequence " << (s & 0xffffffffu) << " block " << j;
    }
  }
  ASSERT_TRUE(pool.CheckInvariants().ok());
  // The rest of the pool, in turn, to the last block: runs get shorter, none is refused.
  while (pool.free_blocks() > 0) {
    for (SeqId s : seqs) {
      if (pool.free_blocks() == 0) break;
      ASSERT_TRUE(pool.Append(s, 16, nullptr).ok()) << pool.free_blocks() << " free";
    }
  }
  EXPECT_EQ(pool.Stats().blocks_used, 1000);
  EXPECT_FALSE(pool.Append(seqs[0], 16, nullptr).ok());
  ASSERT_TRUE(pool.CheckInvariants().ok());
  // Freed and taken again: a new sequence's prompt is one run.
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(pool.Free(seqs[i]).ok());
  const SeqId fresh = *pool.CreateSequence();
  ASSERT_TRUE(pool.Append(fresh, 16 * 30, nullptr).ok());
  const std::vector<int32_t>& blocks = (*pool.Table(fresh))->blocks;
  int runs = 1;
  for (size_t j = 1; j < blocks.size(); ++j) runs += blocks[j] != blocks[j - 1] + 1;
  EXPECT_LE(runs, 2) << "a 30-block prompt in the room four 60-odd-block sequences left";
  ASSERT_TRUE(pool.CheckInvariants().ok());
}

TEST(KvBlockPoolTest, RandomOperationsKeepInvariants) {
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    KvBlockPool pool = MakePool(64, 12, 4);
    Rng rng(seed);
    std::vector<SeqId> live;
    std::map<SeqId, int64_t> tokens;
    for (int step = 0; step < 400; ++step) {
      const uint64_t op = rng.Below(10);
      if (op < 2 || live.empty()) {
        auto s = pool.CreateSequence();
        if (s.ok()) {
          live.push_back(*s);
          tokens[*s] = 0;
        } else {
          ASSERT_EQ(s.status().code(), StatusCode::kOverBudget);
        }
      } else if (op < 6) {
        SeqId s = live[rng.Below(live.size())];
        const int64_t n = static_cast<int64_t>(rng.Below(12));
        const int64_t before_free = pool.free_blocks();
        Status st = pool.Append(s, n, nullptr);
        if (st.ok()) {
          tokens[s] += n;
        } else {
          ASSERT_EQ(st.code(), StatusCode::kOverBudget);
          ASSERT_EQ(pool.free_blocks(), before_free);
        }
      } else if (op < 8) {
        SeqId s = live[rng.Below(live.size())];
        auto f = pool.Fork(s, nullptr);
        if (f.ok()) {
          live.push_back(*f);
          tokens[*f] = tokens[s];
        }
      } else {
        const size_t i = rng.Below(live.size());
        ASSERT_TRUE(pool.Free(live[i]).ok());
        tokens.erase(live[i]);
        live.erase(live.begin() + static_cast<std::ptrdiff_t>(i));
      }
      Status inv = pool.CheckInvariants();
      ASSERT_TRUE(inv.ok()) << "seed " << seed << " step " << step << ": " << inv.message();
      for (SeqId s : live) ASSERT_EQ((*pool.Table(s))->tokens, tokens[s]);
      const KvPoolStats st = pool.Stats();
      ASSERT_LE(st.bytes_used, st.budget_bytes);
      ASSERT_EQ(st.sequences, static_cast<int64_t>(live.size()));
    }
    for (SeqId s : live) ASSERT_TRUE(pool.Free(s).ok());
    EXPECT_EQ(pool.free_blocks(), 64);
    EXPECT_EQ(pool.Stats().bytes_used, 0u);
  }
}

}  // namespace
}  // namespace zaya
