#include "ipc/protocol.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace zaya::ipc {
namespace {

using nlohmann::json;

ProtocolLimits TestLimits() {
  ProtocolLimits l;
  l.max_message = 4096;
  l.max_json_depth = 8;
  l.max_tokens = 1000;
  l.max_population = 16;
  l.max_rounds = 4;
  l.max_tail = 512;
  l.max_budget = 2048;
  return l;
}

struct GoodCase {
  const char* name;
  std::string frame;
  Op op;
};

TEST(ProtocolTest, AcceptsValidRequests) {
  const std::vector<GoodCase> cases = {
      {"hello", R"({"v":1,"id":"a","op":"hello"})", Op::kHello},
      {"status", R"({"v":1,"id":"a","op":"status"})", Op::kStatus},
      {"health", R"({"op":"health","id":"x","v":1})", Op::kHealth},
      {"metrics", R"({"v":1,"id":"a","op":"metrics"})", Op::kMetrics},
      {"cancel", R"({"v":1,"id":"c1","op":"cancel","target":"g1"})", Op::kCancel},
      {"generate prompt", R"({"v":1,"id":"g","op":"generate","prompt":"Hi"})", Op::kGenerate},
      {"generate full",
       R"({"v":1,"id":"g","op":"generate","messages":[{"role":"system","content":"s"},
           {"role":"user","content":"q"},{"role":"assistant","content":"a"}],
           "max_tokens":1000,"temperature":0,"top_k":40,"top_p":1,"min_p":0.05,
           "seed":18446744073709551615,"stop":["</s>","\n\n"],"enable_thinking":false,
           "deadline_ms":5000})",
       Op::kGenerate},
      {"solve minimal", R"({"v":1,"id":"s","op":"solve","prompt":"2+2?"})", Op::kSolve},
      {"solve full",
       R"({"v":1,"id":"s","op":"solve","messages":[{"role":"user","content":"2+2?"}],
           "mode":"rsa","population":16,"subset":4,"rounds":4,"tail":512,"budget":2048,
           "temperature":5,"top_p":0.5,"seed":7,"deadline_ms":60000,"stream_member":3})",
       Op::kSolve},
      {"solve zero rounds", R"({"v":1,"id":"s","op":"solve","prompt":"p","rounds":0})", Op::kSolve},
      {"brackets inside strings do not count as depth",
       R"({"v":1,"id":"[[[[[[[[[[","op":"generate","prompt":"{{{{{{{{{{{{\"[[[[[[[["})",
       Op::kGenerate},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    Decoded d = DecodeRequest(c.frame, TestLimits());
    ASSERT_TRUE(d.ok()) << d.error_code << ": " << d.error_message;
    EXPECT_EQ(d.request.op, c.op);
    EXPECT_EQ(d.id, d.request.id);
  }
}

TEST(ProtocolTest, GenerateFieldsReachTheEngineRequest) {
  Decoded d = DecodeRequest(
      R"({"v":1,"id":"g7","op":"generate","messages":[{"role":"user","content":"q"}],
          "max_tokens":12,"temperature":0.5,"top_k":3,"top_p":0.9,"min_p":0.1,"seed":42,
          "stop":["x"],"enable_thinking":false})",
      TestLimits());
  ASSERT_TRUE(d.ok()) << d.error_message;
  const EngineRequest& r = d.request.engine;
  EXPECT_EQ(r.kind, EngineRequest::Kind::kGenerate);
  EXPECT_EQ(d.id, "g7");
  EXPECT_EQ(r.messages.size(), 1u);
  EXPECT_EQ(r.messages[0]["content"], "q");
  EXPECT_FALSE(r.prompt.has_value());
  EXPECT_EQ(r.sampling.max_tokens, 12);
  EXPECT_DOUBLE_EQ(r.sampling.temperature, 0.5);
  EXPECT_EQ(r.sampling.top_k, 3);
  EXPECT_DOUBLE_EQ(r.sampling.top_p, 0.9);
  EXPECT_DOUBLE_EQ(r.sampling.min_p, 0.1);
  EXPECT_EQ(r.sampling.seed, 42u);
  EXPECT_EQ(r.sampling.stop, std::vector<std::string>{"x"});
  EXPECT_FALSE(r.enable_thinking);
  EXPECT_TRUE(r.id.empty()) << "the server, not the codec, assigns engine ids";
}

TEST(ProtocolTest, SolveOverridesReachTheEngineRequest) {
  Decoded d = DecodeRequest(
      R"({"v":1,"id":"s","op":"solve","prompt":"p","mode":"parallel","population":8,
          "subset":2,"rounds":3,"tail":100,"budget":900,"temperature":0.7,"seed":9,
          "deadline_ms":1500,"stream_member":7})",
      TestLimits());
  ASSERT_TRUE(d.ok()) << d.error_message;
  const SolveParams& s = d.request.engine.solve;
  EXPECT_EQ(d.request.engine.kind, EngineRequest::Kind::kSolve);
  EXPECT_EQ(d.request.engine.prompt, "p");
  EXPECT_EQ(s.mode, "parallel");
  EXPECT_EQ(s.population, 8);
  EXPECT_EQ(s.subset, 2);
  EXPECT_EQ(s.rounds, 3);
  EXPECT_EQ(s.tail, 100);
  EXPECT_EQ(s.budget, 900);
  EXPECT_EQ(s.temperature, 0.7);
  EXPECT_FALSE(s.top_p.has_value());
  EXPECT_EQ(s.seed, 9u);
  EXPECT_EQ(s.deadline_ms, 1500);
  EXPECT_EQ(s.stream_member, 7);
}

TEST(ProtocolTest, CancelCarriesTarget) {
  Decoded d = DecodeRequest(R"({"v":1,"id":"c","op":"cancel","target":"job-1"})", TestLimits());
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d.request.cancel_target, "job-1");
}

struct BadCase {
  const char* name;
  std::string frame;
  std::string code;
  std::string message_part;  // a substring the message must contain
  std::string id;            // the id the error reply names
};

TEST(ProtocolTest, RejectsBadRequestsWithCodeAndMessage) {
  const std::string deep = std::string(9, '[') + std::string(9, ']');
  const std::vector<BadCase> cases = {
      {"empty", "", "bad_request", "not valid JSON", ""},
      {"garbage", "\x01\x02hello", "bad_request", "not valid JSON", ""},
      {"truncated", R"({"v":1,"id":"a","op":"hel)", "bad_request", "not valid JSON", ""},
      {"array", "[1,2]", "bad_request", "must be a JSON object", ""},
      {"string", "\"hi\"", "bad_request", "must be a JSON object", ""},
      {"too deep", deep, "bad_request", "nested deeper than 8", ""},
      {"too deep inside object",
       R"({"v":1,"id":"a","op":"generate","prompt":"x","stop":[[[[[[[[[]]]]]]]]]})", "bad_request",
       "nested deeper", ""},
      {"oversize", R"({"v":1,"id":"a","op":"generate","prompt":")" + std::string(5000, 'x') + "\"}",
       "bad_request", "exceeds the limit of 4096 bytes", ""},
      {"invalid utf8", "{\"v\":1,\"id\":\"a\",\"op\":\"generate\",\"prompt\":\"\xff\xfe\"}",
       "bad_request", "not valid JSON", ""},
      {"missing id", R"({"v":1,"op":"hello"})", "bad_request", "missing field 'id'", ""},
      {"numeric id", R"({"v":1,"id":5,"op":"hello"})", "bad_request", "'id' must be a string", ""},
      {"empty id", R"({"v":1,"id":"","op":"hello"})", "bad_request", "1..128 bytes", ""},
      {"long id", R"({"v":1,"id":")" + std::string(129, 'i') + R"(","op":"hello"})", "bad_request",
       "1..128 bytes", ""},
      {"missing v", R"({"id":"a","op":"hello"})", "bad_request", "missing field 'v'", "a"},
      {"string v", R"({"v":"1","id":"a","op":"hello"})", "bad_request", "'v' must be an integer",
       "a"},
      {"v2", R"({"v":2,"id":"a","op":"hello"})", "unsupported_version", "speaks v1", "a"},
      {"v-1", R"({"v":-1,"id":"a","op":"hello"})", "unsupported_version", "not supported", "a"},
      {"missing op", R"({"v":1,"id":"a"})", "bad_request", "missing field 'op'", "a"},
      {"numeric op", R"({"v":1,"id":"a","op":3})", "bad_request", "'op' must be a string", "a"},
      {"unknown op", R"({"v":1,"id":"a","op":"shutdown"})", "bad_request", "unknown op 'shutdown'",
       "a"},
      {"unknown field on hello", R"({"v":1,"id":"a","op":"hello","x":1})", "bad_request",
       "unknown field 'x' for op 'hello'", "a"},
      {"unknown field on generate", R"({"v":1,"id":"a","op":"generate","prompt":"p","tmp":1})",
       "bad_request", "unknown field 'tmp'", "a"},
      {"solve field on generate", R"({"v":1,"id":"a","op":"generate","prompt":"p","rounds":1})",
       "bad_request", "unknown field 'rounds' for op 'generate'", "a"},
      {"no input", R"({"v":1,"id":"a","op":"generate"})", "bad_request",
       "exactly one of 'messages' or 'prompt'", "a"},
      {"both inputs",
       R"({"v":1,"id":"a","op":"generate","prompt":"p","messages":[{"role":"user","content":"q"}]})",
       "bad_request", "exactly one of", "a"},
      {"prompt not string", R"({"v":1,"id":"a","op":"generate","prompt":5})", "bad_request",
       "'prompt' must be a string", "a"},
      {"messages not array", R"({"v":1,"id":"a","op":"generate","messages":"hi"})", "bad_request",
       "'messages' must be an array", "a"},
      {"messages empty", R"({"v":1,"id":"a","op":"generate","messages":[]})", "invalid_argument",
       "must not be empty", "a"},
      {"message not object", R"({"v":1,"id":"a","op":"generate","messages":["hi"]})", "bad_request",
       "messages[0] must be an object", "a"},
      {"bad role", R"({"v":1,"id":"a","op":"generate","messages":[{"role":"tool","content":"x"}]})",
       "invalid_argument", "messages[0].role must be system, user or assistant", "a"},
      {"missing content", R"({"v":1,"id":"a","op":"generate","messages":[{"role":"user"}]})",
       "bad_request", "needs both 'role' and 'content'", "a"},
      {"content not string",
       R"({"v":1,"id":"a","op":"generate","messages":[{"role":"user","content":[1]}]})",
       "bad_request", "must be strings", "a"},
      {"extra message field",
       R"({"v":1,"id":"a","op":"generate","messages":[{"role":"user","content":"x","name":"n"}]})",
       "bad_request", "unknown field 'name' in messages[0]", "a"},
      {"max_tokens zero", R"({"v":1,"id":"a","op":"generate","prompt":"p","max_tokens":0})",
       "invalid_argument", "'max_tokens' must be between 1 and 1000", "a"},
      {"max_tokens huge",
       R"({"v":1,"id":"a","op":"generate","prompt":"p","max_tokens":99999999999999999999})",
       "bad_request", "'max_tokens' must be an integer", "a"},
      {"max_tokens uint64 max",
       R"({"v":1,"id":"a","op":"generate","prompt":"p","max_tokens":18446744073709551615})",
       "invalid_argument", "between 1 and 1000", "a"},
      {"max_tokens float", R"({"v":1,"id":"a","op":"generate","prompt":"p","max_tokens":1.5})",
       "bad_request", "'max_tokens' must be an integer", "a"},
      {"max_tokens string", R"({"v":1,"id":"a","op":"generate","prompt":"p","max_tokens":"5"})",
       "bad_request", "must be an integer", "a"},
      {"temperature high", R"({"v":1,"id":"a","op":"generate","prompt":"p","temperature":5.01})",
       "invalid_argument", "'temperature' must be a number in [0, 5", "a"},
      {"temperature negative", R"({"v":1,"id":"a","op":"generate","prompt":"p","temperature":-1})",
       "invalid_argument", "'temperature'", "a"},
      {"temperature huge", R"({"v":1,"id":"a","op":"generate","prompt":"p","temperature":1e400})",
       "bad_request", "not valid JSON", ""},
      {"temperature bool", R"({"v":1,"id":"a","op":"generate","prompt":"p","temperature":true})",
       "bad_request", "'temperature' must be a number", "a"},
      {"top_p zero", R"({"v":1,"id":"a","op":"generate","prompt":"p","top_p":0})",
       "invalid_argument", "'top_p' must be a number in (0, 1]", "a"},
      {"top_p above one", R"({"v":1,"id":"a","op":"generate","prompt":"p","top_p":1.5})",
       "invalid_argument", "'top_p'", "a"},
      {"top_k negative", R"({"v":1,"id":"a","op":"generate","prompt":"p","top_k":-1})",
       "invalid_argument", "'top_k' must be between 0", "a"},
      {"seed negative", R"({"v":1,"id":"a","op":"generate","prompt":"p","seed":-3})",
       "invalid_argument", "'seed' must not be negative", "a"},
      {"seed float", R"({"v":1,"id":"a","op":"generate","prompt":"p","seed":3.5})", "bad_request",
       "'seed' must be an unsigned 64-bit integer", "a"},
      {"seed too big",
       R"({"v":1,"id":"a","op":"generate","prompt":"p","seed":18446744073709551616})",
       "bad_request", "'seed' must be an unsigned 64-bit integer", "a"},
      {"stop not array", R"({"v":1,"id":"a","op":"generate","prompt":"p","stop":"x"})",
       "bad_request", "'stop' must be an array of strings", "a"},
      {"stop too many",
       R"({"v":1,"id":"a","op":"generate","prompt":"p","stop":["1","2","3","4","5","6","7","8","9"]})",
       "invalid_argument", "at most 8", "a"},
      {"stop number", R"({"v":1,"id":"a","op":"generate","prompt":"p","stop":[1]})", "bad_request",
       "array of strings", "a"},
      {"stop empty string", R"({"v":1,"id":"a","op":"generate","prompt":"p","stop":[""]})",
       "invalid_argument", "each stop string", "a"},
      {"thinking not bool",
       R"({"v":1,"id":"a","op":"generate","prompt":"p","enable_thinking":"yes"})", "bad_request",
       "'enable_thinking' must be true or false", "a"},
      {"deadline zero", R"({"v":1,"id":"a","op":"generate","prompt":"p","deadline_ms":0})",
       "invalid_argument", "'deadline_ms' must be between 1", "a"},
      {"population over max", R"({"v":1,"id":"a","op":"solve","prompt":"p","population":17})",
       "invalid_argument", "'population' must be between 1 and 16", "a"},
      {"rounds over max", R"({"v":1,"id":"a","op":"solve","prompt":"p","rounds":5})",
       "invalid_argument", "'rounds' must be between 0 and 4", "a"},
      {"tail over max", R"({"v":1,"id":"a","op":"solve","prompt":"p","tail":513})",
       "invalid_argument", "'tail' must be between 1 and 512", "a"},
      {"budget over max", R"({"v":1,"id":"a","op":"solve","prompt":"p","budget":2049})",
       "invalid_argument", "'budget' must be between 1 and 2048", "a"},
      {"subset over population",
       R"({"v":1,"id":"a","op":"solve","prompt":"p","population":2,"subset":3})",
       "invalid_argument", "'subset' (3) must not exceed 'population' (2)", "a"},
      {"bad mode", R"({"v":1,"id":"a","op":"solve","prompt":"p","mode":"best"})",
       "invalid_argument", "'mode' must be single, parallel or rsa", "a"},
      {"stream_member out of population",
       R"({"v":1,"id":"a","op":"solve","prompt":"p","population":2,"stream_member":2})",
       "invalid_argument", "'stream_member' must be below 'population'", "a"},
      {"generate field on solve", R"({"v":1,"id":"a","op":"solve","prompt":"p","top_k":3})",
       "bad_request", "unknown field 'top_k' for op 'solve'", "a"},
      {"cancel without target", R"({"v":1,"id":"a","op":"cancel"})", "bad_request",
       "cancel needs 'target'", "a"},
      {"cancel numeric target", R"({"v":1,"id":"a","op":"cancel","target":1})", "bad_request",
       "'target' must be a string", "a"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    Decoded d = DecodeRequest(c.frame, TestLimits());
    ASSERT_FALSE(d.ok());
    EXPECT_EQ(d.error_code, c.code) << d.error_message;
    EXPECT_NE(d.error_message.find(c.message_part), std::string::npos)
        << "message: " << d.error_message;
    EXPECT_EQ(d.id, c.id);
  }
}

// The scan itself is base/json_depth.h's (tests/base/json_depth_test.cc).
TEST(ProtocolTest, AMillionOpenBracketsAreRefusedBeforeParsing) {
  const std::string hostile(1'000'000, '[');
  ProtocolLimits limits = TestLimits();
  limits.max_message = 2'000'000;
  Decoded d = DecodeRequest(hostile, limits);
  EXPECT_EQ(d.error_code, "bad_request");
}

TEST(ProtocolTest, EncodeEventMergesBodyAndKeepsHeader) {
  const json e = json::parse(EncodeEvent("r1", EngineEvent::Type::kDelta,
                                         {{"text", "hi"}, {"id", "spoofed"}, {"event", "done"}}));
  EXPECT_EQ(e["v"], 1);
  EXPECT_EQ(e["id"], "r1");
  EXPECT_EQ(e["event"], "delta");
  EXPECT_EQ(e["text"], "hi");
  EXPECT_FALSE(IsTerminalEvent(e));
}

TEST(ProtocolTest, EncodeEventReplacesInvalidUtf8) {
  const std::string frame =
      EncodeEvent("r", EngineEvent::Type::kDelta, {{"text", std::string("a\xe2\x82")}});
  const json e = json::parse(frame);  // would throw if the frame were not valid UTF-8
  EXPECT_EQ(e["text"], "a\xef\xbf\xbd");
}

TEST(ProtocolTest, ErrorEventRoundTrips) {
  auto e = DecodeEvent(EncodeError("q", "busy", "too many requests"));
  ASSERT_TRUE(e.ok());
  EXPECT_EQ((*e)["event"], "error");
  EXPECT_EQ((*e)["code"], "busy");
  EXPECT_EQ((*e)["message"], "too many requests");
  EXPECT_TRUE(IsTerminalEvent(*e));
  EXPECT_FALSE(DecodeEvent("[]").ok());
  EXPECT_FALSE(DecodeEvent(R"({"id":"x"})").ok());
}

TEST(ProtocolTest, LimitsComeFromConfig) {
  Config c;
  c.ipc.max_message = 777;
  c.ipc.max_json_depth = 5;
  c.rsa.max_population = 3;
  ProtocolLimits l = ProtocolLimits::FromConfig(c);
  EXPECT_EQ(l.max_message, 777u);
  EXPECT_EQ(l.max_json_depth, 5);
  EXPECT_EQ(l.max_population, 3);
  Decoded d = DecodeRequest(R"({"v":1,"id":"a","op":"solve","prompt":"p","population":4})", l);
  EXPECT_EQ(d.error_code, "invalid_argument");
}

}  // namespace
}  // namespace zaya::ipc
