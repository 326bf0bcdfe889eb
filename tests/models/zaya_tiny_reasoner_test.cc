// Loads the bundled models/zaya-tiny-reasoner with the C++ engine (tokenizer, chat template,
// ZayaModel on the CPU backend plugin, sampler) and checks that it solves known problems of its
// task greedily: one plain solve prompt and one aggregation prompt (the default RSA template with
// identical correct candidates: the copy check). The expected answers are computed here, not
// copied from the model.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/chat/chat_template.h"
#include "engine/model/zaya_model.h"
#include "engine/sampler/sampler.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/weights/checkpoint.h"
#include "plugins/loader.h"

namespace zaya {
namespace {

const std::string kModelDir = std::string(ZAYA_SOURCE_DIR) + "/models/zaya-tiny-reasoner";

struct Problem {
  int x0, a, b, n;
  std::string Question() const {
    return "Let x = " + std::to_string(x0) + ". Repeat " + std::to_string(n) +
           " times: x = x*" + std::to_string(a) + "+" + std::to_string(b) +
           ", keeping only the last two digits of x. What is x at the end?";
  }
  int Answer() const {
    int x = x0;
    for (int i = 0; i < n; ++i) x = (x * a + b) % 100;
    return x;
  }
  // The worked solution in the trained format, one `i: x=<value after step i>` line per step
  // (without the closing </think> and answer).
  std::string Lines() const {
    std::string out;
    int x = x0;
    for (int i = 1; i <= n; ++i) {
      x = (x * a + b) % 100;
      out += std::to_string(i) + ": x=" + std::to_string(x) + "\n";
    }
    return out;
  }
};

std::string Boxed(const std::string& text) {
  const size_t i = text.rfind("\\boxed{");
  if (i == std::string::npos) return "";
  const size_t j = text.find('}', i);
  if (j == std::string::npos) return "";
  return text.substr(i + 7, j - i - 7);
}

class TinyReasonerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto ck = Checkpoint::Open(kModelDir);
    ASSERT_TRUE(ck.ok()) << ck.status().ToString();
    ck_ = std::move(*ck);
    auto tok = Tokenizer::Load(kModelDir);
    ASSERT_TRUE(tok.ok()) << tok.status().ToString();
    tok_.emplace(std::move(*tok));
    auto chat = ChatTemplate::FromTokenizerConfig(kModelDir);
    ASSERT_TRUE(chat.ok()) << chat.status().ToString();
    chat_.emplace(std::move(*chat));
    auto be = Backend::Open("cpu", "", 0, 1);
    ASSERT_TRUE(be.ok()) << be.status().ToString();
    backend_ = std::move(*be);
  }

  // Greedy generation through the engine, stopping on the tokenizer's / config's eos ids.
  std::string Generate(const std::string& user, int max_tokens) {
    auto text = chat_->Render(nlohmann::json::array({{{"role", "user"}, {"content", user}}}),
                              /*add_generation_prompt=*/true);
    EXPECT_TRUE(text.ok()) << text.status().ToString();
    if (!text.ok()) return "";
    auto ids = tok_->Encode(*text, Tokenizer::AddSpecial::kNone);
    EXPECT_TRUE(ids.ok());
    if (!ids.ok()) return "";
    const std::vector<int32_t> prompt = *ids;
    ModelOptions mo;
    mo.weights_dtype = "f32";
    mo.block_tokens = 16;
    mo.num_kv_blocks =
        (static_cast<int64_t>(prompt.size()) + max_tokens + mo.block_tokens - 1) / mo.block_tokens +
        1;
    mo.max_blocks_per_sequence = mo.num_kv_blocks;
    mo.max_step_tokens = static_cast<int64_t>(prompt.size());
    mo.max_step_sequences = 1;
    mo.num_slots = 1;
    auto model = ZayaModel::Load(*ck_, *backend_, mo);
    EXPECT_TRUE(model.ok()) << model.status().ToString();
    if (!model.ok()) return "";
    SamplingParams sp;
    sp.temperature = 0.0;
    sp.max_tokens = max_tokens;
    auto sampler = Sampler::Create(sp);
    EXPECT_TRUE(sampler.ok());
    std::vector<int32_t> eos = tok_->eos_ids();
    for (int64_t e : ck_->config().eos_token_ids) eos.push_back(static_cast<int32_t>(e));
    std::vector<int32_t> table(static_cast<size_t>(mo.num_kv_blocks));
    std::iota(table.begin(), table.end(), 0);
    std::vector<int32_t> out, step = prompt;
    std::vector<float> logits;
    int32_t pos = 0;
    for (int i = 0; i < max_tokens; ++i) {
      StepSequence s;
      s.slot = 0;
      s.tokens = step;
      s.start_pos = pos;
      s.block_table = table;
      s.want_logits = true;
      Status st = (*model)->Forward(std::span<const StepSequence>(&s, 1), &logits);
      EXPECT_TRUE(st.ok()) << st.ToString();
      if (!st.ok()) break;
      pos += static_cast<int32_t>(step.size());
      const int32_t next = sampler->Sample(logits);
      if (std::find(eos.begin(), eos.end(), next) != eos.end()) break;
      out.push_back(next);
      step.assign(1, next);
    }
    return tok_->Decode(out, /*skip_special_tokens=*/true);
  }

  std::unique_ptr<Checkpoint> ck_;
  std::optional<Tokenizer> tok_;
  std::optional<ChatTemplate> chat_;
  std::unique_ptr<Backend> backend_;
};

TEST_F(TinyReasonerTest, SolvesAKnownProblemGreedily) {
  const Problem p{47, 3, 7, 12};
  const std::string out = Generate(p.Question(), 160);
  EXPECT_EQ(Boxed(out), std::to_string(p.Answer())) << out;
  // The worked steps are the trained format, one line per step, all of them right.
  EXPECT_NE(out.find(p.Lines()), std::string::npos) << out;
}

TEST_F(TinyReasonerTest, CopiesIdenticalCorrectCandidates) {
  const Problem p{96, 2, 9, 2};
  const std::string trace = p.Lines() + "\nThe answer is \\boxed{" + std::to_string(p.Answer()) + "}.";
  // The default aggregation template (engine/rsa/aggregation_prompt.cc), three full candidates.
  std::string user =
      "You are given a problem and several candidate solutions. Some candidates may be incorrect "
      "or incomplete, and a candidate marked [...truncated...] shows only the end of a longer "
      "solution. Use what is correct, fix what is not, and write one improved, complete solution. "
      "If all candidates are flawed, solve the problem from scratch.\n\nProblem:\n" +
      p.Question() + "\n\n";
  for (int i = 1; i <= 3; ++i) user += "Candidate " + std::to_string(i) + ":\n" + trace + "\n\n";
  user += "Now write a single improved solution. End with the final answer in \\boxed{}.";
  const std::string out = Generate(user, 160);
  EXPECT_EQ(Boxed(out), std::to_string(p.Answer())) << out;
}

}  // namespace
}  // namespace zaya
