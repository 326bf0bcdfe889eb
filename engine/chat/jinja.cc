#include "engine/chat/jinja.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <ctime>
#include <limits>
#include <map>
#include <set>
#include <stdexcept>
#include <vector>

namespace zaya::jinja {

using nlohmann::json;

namespace {

// ---------------------------------------------------------------------------------------------
// Values

struct Value {
  enum class Kind { kUndefined, kJson, kNamespace };
  Kind kind = Kind::kUndefined;
  json j;                    // kJson
  std::shared_ptr<json> ns;  // kNamespace: shared so `set ns.x` is seen by every holder

  static Value Undefined() { return {}; }
  static Value Of(json v) {
    Value r;
    r.kind = Kind::kJson;
    r.j = std::move(v);
    return r;
  }
  bool undefined() const { return kind == Kind::kUndefined; }
  bool is_json() const { return kind == Kind::kJson; }
  // The JSON view; a namespace reads as its object, undefined as null.
  const json& data() const {
    static const json kNull;
    if (kind == Kind::kNamespace) return *ns;
    if (kind == Kind::kJson) return j;
    return kNull;
  }
};

// Errors inside the interpreter travel as this exception and become a Status at Render's edge.
struct RenderError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
struct ParseError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

[[noreturn]] void Fail(int line, const std::string& msg) {
  throw RenderError("chat template line " + std::to_string(line) + ": " + msg);
}

// Splits UTF-8 into code points (strings), for indexing and slicing by character.
std::vector<std::string> Chars(const std::string& s) {
  std::vector<std::string> out;
  for (size_t i = 0; i < s.size();) {
    size_t len = 1;
    const auto b = static_cast<unsigned char>(s[i]);
    if (b >= 0xF0)
      len = 4;
    else if (b >= 0xE0)
      len = 3;
    else if (b >= 0xC0)
      len = 2;
    len = std::min(len, s.size() - i);
    out.push_back(s.substr(i, len));
    i += len;
  }
  return out;
}

std::string PyRepr(const json& v);

std::string FloatToString(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof(buf), d);
  std::string s(buf, res.ptr);
  if (s.find_first_of(".eEn") == std::string::npos) s += ".0";
  return s;
}

// str(x) as Python Jinja renders it.
std::string ToStr(const Value& v) {
  if (v.undefined()) return "";
  const json& j = v.data();
  switch (j.type()) {
    case json::value_t::string:
      return j.get<std::string>();
    case json::value_t::null:
      return "None";
    case json::value_t::boolean:
      return j.get<bool>() ? "True" : "False";
    case json::value_t::number_integer:
      return std::to_string(j.get<int64_t>());
    case json::value_t::number_unsigned:
      return std::to_string(j.get<uint64_t>());
    case json::value_t::number_float:
      return FloatToString(j.get<double>());
    default:
      return PyRepr(j);
  }
}

std::string PyStrRepr(const std::string& s) {
  const char q =
      (s.find('\'') != std::string::npos && s.find('"') == std::string::npos) ? '"' : '\'';
  std::string out(1, q);
  for (char c : s) {
    if (c == q || c == '\\')
      out += '\\', out += c;
    else if (c == '\n')
      out += "\\n";
    else if (c == '\t')
      out += "\\t";
    else if (c == '\r')
      out += "\\r";
    else
      out += c;
  }
  out += q;
  return out;
}

std::string PyRepr(const json& v) {
  switch (v.type()) {
    case json::value_t::string:
      return PyStrRepr(v.get<std::string>());
    case json::value_t::array: {
      std::string out = "[";
      for (size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + PyRepr(v[i]);
      return out + "]";
    }
    case json::value_t::object: {
      std::string out = "{";
      bool first = true;
      for (const auto& [k, x] : v.items()) {
        out += (first ? "" : ", ") + PyStrRepr(k) + ": " + PyRepr(x);
        first = false;
      }
      return out + "}";
    }
    default:
      return ToStr(Value::Of(v));
  }
}

bool Truthy(const Value& v) {
  if (v.undefined()) return false;
  if (v.kind == Value::Kind::kNamespace) return true;
  const json& j = v.j;
  switch (j.type()) {
    case json::value_t::null:
      return false;
    case json::value_t::boolean:
      return j.get<bool>();
    case json::value_t::number_integer:
      return j.get<int64_t>() != 0;
    case json::value_t::number_unsigned:
      return j.get<uint64_t>() != 0;
    case json::value_t::number_float:
      return j.get<double>() != 0.0;
    case json::value_t::string:
      return !j.get_ref<const std::string&>().empty();
    case json::value_t::array:
    case json::value_t::object:
      return !j.empty();
    default:
      return false;
  }
}

bool Equal(const Value& a, const Value& b) {
  if (a.undefined() || b.undefined()) return a.undefined() && b.undefined();
  const json& x = a.data();
  const json& y = b.data();
  if (x.is_number() && y.is_number()) return x.get<double>() == y.get<double>();
  return x == y;
}

// JSON as @huggingface/jinja's tojson writes it (Python json.dumps defaults: ", " and ": ",
// non-ASCII kept).
std::string ToJson(const json& v, int indent, int depth) {
  switch (v.type()) {
    case json::value_t::array:
    case json::value_t::object: {
      const bool arr = v.is_array();
      if (v.empty()) return arr ? "[]" : "{}";
      const std::string item_sep = indent > 0 ? "," : ", ";
      const std::string pad = indent > 0 ? "\n" + std::string(indent * depth, ' ') : "";
      const std::string child = indent > 0 ? pad + std::string(indent, ' ') : "";
      std::string out(1, arr ? '[' : '{');
      bool first = true;
      if (arr) {
        for (const json& x : v) {
          out += (first ? "" : item_sep) + child + ToJson(x, indent, depth + 1);
          first = false;
        }
      } else {
        for (const auto& [k, x] : v.items()) {
          out += (first ? "" : item_sep) + child + json(k).dump() + ": " +
                 ToJson(x, indent, depth + 1);
          first = false;
        }
      }
      return out + pad + (arr ? ']' : '}');
    }
    default:
      return v.dump(-1, ' ', false, json::error_handler_t::replace);
  }
}

// ---------------------------------------------------------------------------------------------
// AST

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  enum class Kind {
    kLiteral,
    kName,
    kList,
    kDict,
    kTuple,
    kAttr,
    kIndex,
    kSlice,
    kCall,
    kFilter,
    kTest,
    kUnary,
    kBinary,
    kAnd,
    kOr,
    kNot,
    kCond,
    kCompare
  };
  Kind kind;
  int line = 0;
  json literal;               // kLiteral
  std::string name;           // kName, kAttr, kCall (function/method), kFilter, kTest, operator
  std::vector<ExprPtr> args;  // operands / positional args / list items / dict k,v pairs
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  ExprPtr target;        // kAttr/kIndex/kSlice/kFilter/kTest object; kCall method receiver
  bool negated = false;  // kTest "is not"
};

struct Node;
using Body = std::vector<std::unique_ptr<Node>>;

struct Node {
  enum class Kind { kText, kOutput, kIf, kFor, kSet, kSetBlock, kBreak, kContinue };
  Kind kind;
  int line = 0;
  std::string text;                                // kText
  ExprPtr expr;                                    // kOutput / kSet value / kFor iterable
  std::vector<std::pair<ExprPtr, Body>> branches;  // kIf: (condition or null for else, body)
  std::vector<std::string> loop_vars;              // kFor targets; kSet: {name} or {ns, attr}
  ExprPtr loop_filter;                             // kFor "if" clause
  bool attr_target = false;                        // kSet/kSetBlock: "set ns.attr"
  Body body, else_body;                            // kFor / kSetBlock
};

}  // namespace

struct Program {
  Body body;
};

namespace {

// ---------------------------------------------------------------------------------------------
// Lexing of the template into text / {{ }} / {% %} segments

struct Segment {
  enum class Kind { kText, kExpr, kStmt } kind;
  std::string content;
  int line;
};

int LineAt(std::string_view src, size_t pos) {
  return 1 +
         static_cast<int>(std::count(src.begin(), src.begin() + std::min(pos, src.size()), '\n'));
}

bool IsSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

std::vector<Segment> SplitSegments(std::string_view src_in) {
  std::string_view src = src_in;
  if (!src.empty() && src.back() == '\n') src.remove_suffix(1);  // Jinja drops one trailing newline
  std::vector<Segment> out;
  size_t p = 0;
  bool strip_next = false;  // a preceding "-%}" / "-}}" strips leading whitespace of the next text
  auto emit_text = [&](std::string text) {
    if (strip_next) {
      size_t k = 0;
      while (k < text.size() && IsSpace(text[k])) ++k;
      text.erase(0, k);
      strip_next = false;
    }
    if (!text.empty()) out.push_back({Segment::Kind::kText, std::move(text), 0});
  };
  while (p < src.size()) {
    size_t start = std::string_view::npos;
    for (const char* open : {"{{", "{%", "{#"}) {
      start = std::min(start, src.find(open, p));
    }
    if (start == std::string_view::npos) {
      emit_text(std::string(src.substr(p)));
      break;
    }
    const char kind = src[start + 1];
    std::string text(src.substr(p, start - p));
    size_t inner = start + 2;
    const bool minus_before = inner < src.size() && src[inner] == '-';
    if (minus_before) {
      ++inner;
      while (!text.empty() && IsSpace(text.back())) text.pop_back();
    } else if (kind != '{') {
      // lstrip_blocks: spaces/tabs between the start of the line and a block tag go.
      size_t k = start;
      while (k > 0 && (src[k - 1] == ' ' || src[k - 1] == '\t')) --k;
      if ((k == 0 || src[k - 1] == '\n') && k >= p) text.resize(k - p);
    }
    emit_text(std::move(text));
    const int line = LineAt(src, start);
    // Find the closing delimiter, skipping string literals inside expressions.
    const std::string close = kind == '{' ? "}}" : (kind == '%' ? "%}" : "#}");
    size_t q = inner;
    size_t end = std::string_view::npos;
    char quote = 0;
    for (; q + 1 < src.size() + 1 && q < src.size(); ++q) {
      const char c = src[q];
      if (kind != '#') {
        if (quote) {
          if (c == '\\')
            ++q;
          else if (c == quote)
            quote = 0;
          continue;
        }
        if (c == '\'' || c == '"') {
          quote = c;
          continue;
        }
      }
      if (src.compare(q, 2, close) == 0) {
        end = q;
        break;
      }
    }
    if (end == std::string_view::npos) {
      throw ParseError("chat template line " + std::to_string(line) + ": unclosed '{" + kind +
                       "' (expected '" + close + "')");
    }
    size_t content_end = end;
    const bool minus_after = content_end > inner && src[content_end - 1] == '-';
    if (minus_after) --content_end;
    if (kind != '#') {
      out.push_back({kind == '{' ? Segment::Kind::kExpr : Segment::Kind::kStmt,
                     std::string(src.substr(inner, content_end - inner)), line});
    }
    p = end + 2;
    if (minus_after) {
      strip_next = true;
    } else if (kind != '{' && p < src.size() && src[p] == '\n') {
      ++p;  // trim_blocks
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Expression tokens and parser

struct Tok {
  enum class Kind { kName, kString, kInt, kFloat, kOp, kEnd } kind;
  std::string text;
  json value;
};

std::vector<Tok> Tokenize(const std::string& s, int line) {
  std::vector<Tok> out;
  size_t i = 0;
  auto err = [&](const std::string& m) -> ParseError {
    return ParseError("chat template line " + std::to_string(line) + ": " + m);
  };
  while (i < s.size()) {
    const char c = s[i];
    if (IsSpace(c)) {
      ++i;
      continue;
    }
    if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      size_t j = i;
      while (j < s.size() && (std::isalnum(static_cast<unsigned char>(s[j])) || s[j] == '_')) ++j;
      out.push_back({Tok::Kind::kName, s.substr(i, j - i), {}});
      i = j;
      continue;
    }
    if (std::isdigit(static_cast<unsigned char>(c))) {
      size_t j = i;
      bool is_float = false;
      while (j < s.size() && (std::isdigit(static_cast<unsigned char>(s[j])) || s[j] == '_')) ++j;
      if (j + 1 < s.size() && s[j] == '.' && std::isdigit(static_cast<unsigned char>(s[j + 1]))) {
        is_float = true;
        ++j;
        while (j < s.size() && std::isdigit(static_cast<unsigned char>(s[j]))) ++j;
      }
      std::string num = s.substr(i, j - i);
      num.erase(std::remove(num.begin(), num.end(), '_'), num.end());
      try {
        if (is_float) {
          out.push_back({Tok::Kind::kFloat, num, json(std::stod(num))});
        } else {
          out.push_back({Tok::Kind::kInt, num, json(static_cast<int64_t>(std::stoll(num)))});
        }
      } catch (const std::exception&) {
        throw err("number '" + num + "' is out of range");
      }
      i = j;
      continue;
    }
    if (c == '\'' || c == '"') {
      std::string v;
      size_t j = i + 1;
      for (; j < s.size() && s[j] != c; ++j) {
        if (s[j] == '\\' && j + 1 < s.size()) {
          const char e = s[++j];
          switch (e) {
            case 'n':
              v += '\n';
              break;
            case 't':
              v += '\t';
              break;
            case 'r':
              v += '\r';
              break;
            case 'b':
              v += '\b';
              break;
            case 'f':
              v += '\f';
              break;
            case 'v':
              v += '\v';
              break;
            case '0':
              v += '\0';
              break;
            case '\\':
              v += '\\';
              break;
            case '\'':
              v += '\'';
              break;
            case '"':
              v += '"';
              break;
            default:
              v += '\\';
              v += e;
          }
        } else {
          v += s[j];
        }
      }
      if (j >= s.size()) throw err("unterminated string literal");
      out.push_back({Tok::Kind::kString, v, json(v)});
      i = j + 1;
      continue;
    }
    static const char* kOps[] = {"==", "!=", "<=", ">=", "//", "**", "(", ")", "[",
                                 "]",  "{",  "}",  ".",  ",",  ":",  "|", "~", "+",
                                 "-",  "*",  "/",  "%",  "<",  ">",  "="};
    bool matched = false;
    for (const char* op : kOps) {
      const size_t n = std::char_traits<char>::length(op);
      if (s.compare(i, n, op) == 0) {
        out.push_back({Tok::Kind::kOp, op, {}});
        i += n;
        matched = true;
        break;
      }
    }
    if (!matched) throw err(std::string("unexpected character '") + c + "'");
  }
  out.push_back({Tok::Kind::kEnd, "", {}});
  return out;
}

const std::set<std::string, std::less<>> kFilters = {
    "trim",       "length",  "count",    "default", "d",         "upper", "lower",  "capitalize",
    "title",      "tojson",  "join",     "replace", "first",     "last",  "string", "safe",
    "list",       "reverse", "int",      "float",   "abs",       "items", "map",    "selectattr",
    "rejectattr", "unique",  "sort",     "indent",  "wordcount", "e",     "escape", "min",
    "max",        "sum",     "dictsort", "batch"};
const std::set<std::string, std::less<>> kTests = {
    "defined", "undefined", "none",     "string",  "number", "integer",     "float", "boolean",
    "mapping", "iterable",  "sequence", "equalto", "eq",     "==",          "ne",    "!=",
    "sameas",  "true",      "false",    "odd",     "even",   "divisibleby", "in",    "lower",
    "upper",   "gt",        "ge",       "lt",      "le",     "callable"};
const std::set<std::string, std::less<>> kFunctions = {"raise_exception", "namespace", "range",
                                                       "strftime_now", "dict"};
const std::set<std::string, std::less<>> kMethods = {
    "strip",   "lstrip", "rstrip",     "split",   "startswith", "endswith", "upper",     "lower",
    "replace", "title",  "capitalize", "get",     "items",      "keys",     "values",    "count",
    "find",    "index",  "join",       "isdigit", "isalpha",    "isspace",  "splitlines"};

class ExprParser {
 public:
  ExprParser(std::vector<Tok> toks, int line) : t_(std::move(toks)), line_(line) {}

  ExprPtr ParseExpression() { return ParseConditional(); }
  ExprPtr ParseOrExpression() { return ParseOr(); }  // no conditional: for-loop iterable/filter
  // A top-level expression possibly written as an unparenthesised tuple ("a, b").
  ExprPtr ParseTupleOrExpression() {
    ExprPtr first = ParseExpression();
    if (!Peek(",")) return first;
    auto tup = Make(Expr::Kind::kTuple);
    tup->args.push_back(std::move(first));
    while (Accept(",")) {
      if (AtEnd()) break;
      tup->args.push_back(ParseExpression());
    }
    return tup;
  }
  bool AtEnd() const { return t_[pos_].kind == Tok::Kind::kEnd; }
  bool PeekName(std::string_view n) const {
    return t_[pos_].kind == Tok::Kind::kName && t_[pos_].text == n;
  }
  bool Peek(std::string_view op) const {
    return t_[pos_].kind == Tok::Kind::kOp && t_[pos_].text == op;
  }
  bool Accept(std::string_view op) {
    if (!Peek(op)) return false;
    ++pos_;
    return true;
  }
  bool AcceptName(std::string_view n) {
    if (!PeekName(n)) return false;
    ++pos_;
    return true;
  }
  void Expect(std::string_view op) {
    if (!Accept(op)) throw Error("expected '" + std::string(op) + "' but found " + Describe());
  }
  std::string ExpectName() {
    if (t_[pos_].kind != Tok::Kind::kName) throw Error("expected a name but found " + Describe());
    return t_[pos_++].text;
  }
  void ExpectEnd() {
    if (!AtEnd()) throw Error("unexpected " + Describe());
  }
  ParseError Error(const std::string& m) const {
    return ParseError("chat template line " + std::to_string(line_) + ": " + m);
  }

 private:
  std::string Describe() const {
    const Tok& t = t_[pos_];
    if (t.kind == Tok::Kind::kEnd) return "end of tag";
    return "'" + t.text + "'";
  }
  ExprPtr Make(Expr::Kind k) {
    auto e = std::make_unique<Expr>();
    e->kind = k;
    e->line = line_;
    return e;
  }

  ExprPtr ParseConditional() {
    ExprPtr e = ParseOr();
    while (AcceptName("if")) {
      auto c = Make(Expr::Kind::kCond);
      c->args.push_back(ParseOr());  // condition
      c->args.push_back(std::move(e));
      if (AcceptName("else")) {
        c->args.push_back(ParseConditional());
      }
      e = std::move(c);
    }
    return e;
  }
  ExprPtr ParseOr() {
    ExprPtr e = ParseAnd();
    while (AcceptName("or")) {
      auto o = Make(Expr::Kind::kOr);
      o->args.push_back(std::move(e));
      o->args.push_back(ParseAnd());
      e = std::move(o);
    }
    return e;
  }
  ExprPtr ParseAnd() {
    ExprPtr e = ParseNot();
    while (AcceptName("and")) {
      auto a = Make(Expr::Kind::kAnd);
      a->args.push_back(std::move(e));
      a->args.push_back(ParseNot());
      e = std::move(a);
    }
    return e;
  }
  ExprPtr ParseNot() {
    if (AcceptName("not")) {
      auto n = Make(Expr::Kind::kNot);
      n->args.push_back(ParseNot());
      return n;
    }
    return ParseCompare();
  }
  ExprPtr ParseCompare() {
    ExprPtr e = ParseMath1();
    while (true) {
      std::string op;
      if (Peek("==") || Peek("!=") || Peek("<") || Peek("<=") || Peek(">") || Peek(">=")) {
        op = t_[pos_++].text;
      } else if (AcceptName("in")) {
        op = "in";
      } else if (PeekName("not") && t_[pos_ + 1].kind == Tok::Kind::kName &&
                 t_[pos_ + 1].text == "in") {
        pos_ += 2;
        op = "not in";
      } else {
        return e;
      }
      auto c = Make(Expr::Kind::kCompare);
      c->name = op;
      c->args.push_back(std::move(e));
      c->args.push_back(ParseMath1());
      e = std::move(c);
    }
  }
  ExprPtr Binary(std::string op, ExprPtr l, ExprPtr r) {
    auto b = Make(Expr::Kind::kBinary);
    b->name = std::move(op);
    b->args.push_back(std::move(l));
    b->args.push_back(std::move(r));
    return b;
  }
  ExprPtr ParseMath1() {
    ExprPtr e = ParseConcat();
    while (Peek("+") || Peek("-")) {
      std::string op = t_[pos_++].text;
      e = Binary(op, std::move(e), ParseConcat());
    }
    return e;
  }
  ExprPtr ParseConcat() {
    ExprPtr e = ParseMath2();
    while (Accept("~")) e = Binary("~", std::move(e), ParseMath2());
    return e;
  }
  ExprPtr ParseMath2() {
    ExprPtr e = ParsePow();
    while (Peek("*") || Peek("/") || Peek("//") || Peek("%")) {
      std::string op = t_[pos_++].text;
      e = Binary(op, std::move(e), ParsePow());
    }
    return e;
  }
  ExprPtr ParsePow() {
    ExprPtr e = ParseUnary();
    while (Accept("**")) e = Binary("**", std::move(e), ParseUnary());
    return e;
  }
  struct DepthGuard {
    explicit DepthGuard(ExprParser* p) : p_(p) {
      if (++p_->depth_ > 200) throw p_->Error("expression nested too deeply");
    }
    ~DepthGuard() { --p_->depth_; }
    ExprParser* p_;
  };
  ExprPtr ParseUnary() {
    DepthGuard guard(this);
    if (Peek("-") || Peek("+")) {
      auto u = Make(Expr::Kind::kUnary);
      u->name = t_[pos_++].text;
      u->args.push_back(ParseUnary());
      return u;
    }
    ExprPtr e = ParsePostfix(ParsePrimary());
    return ParseFiltersAndTests(std::move(e));
  }
  void ParseArgs(Expr* call) {
    // After '('.
    if (Accept(")")) return;
    do {
      if (t_[pos_].kind == Tok::Kind::kName && t_[pos_ + 1].kind == Tok::Kind::kOp &&
          t_[pos_ + 1].text == "=") {
        std::string key = t_[pos_].text;
        pos_ += 2;
        call->kwargs.emplace_back(key, ParseExpression());
      } else {
        if (!call->kwargs.empty()) throw Error("positional argument after keyword argument");
        call->args.push_back(ParseExpression());
      }
    } while (Accept(",") && !Peek(")"));
    Expect(")");
  }
  ExprPtr ParseFiltersAndTests(ExprPtr e) {
    while (true) {
      if (Accept("|")) {
        auto f = Make(Expr::Kind::kFilter);
        f->name = ExpectName();
        if (!kFilters.count(f->name)) throw Error("unsupported filter '" + f->name + "'");
        f->target = std::move(e);
        if (Accept("(")) ParseArgs(f.get());
        e = std::move(f);
      } else if (AcceptName("is")) {
        auto t = Make(Expr::Kind::kTest);
        t->negated = AcceptName("not");
        if (Peek("==") || Peek("!=")) {
          t->name = t_[pos_++].text;
        } else if (AcceptName("none")) {
          t->name = "none";
        } else if (AcceptName("true")) {
          t->name = "true";
        } else if (AcceptName("false")) {
          t->name = "false";
        } else {
          t->name = ExpectName();
        }
        if (!kTests.count(t->name)) throw Error("unsupported test '" + t->name + "'");
        t->target = std::move(e);
        if (Accept("(")) {
          ParseArgs(t.get());
        } else if (t_[pos_].kind == Tok::Kind::kString || t_[pos_].kind == Tok::Kind::kInt ||
                   t_[pos_].kind == Tok::Kind::kFloat ||
                   (t_[pos_].kind == Tok::Kind::kName && !PeekName("and") && !PeekName("or") &&
                    !PeekName("else") && !PeekName("if") && !PeekName("is") && !PeekName("in") &&
                    !PeekName("not"))) {
          t->args.push_back(ParsePostfix(ParsePrimary()));  // "is equalto 3", "is sameas x"
        }
        e = std::move(t);
      } else {
        return e;
      }
    }
  }
  ExprPtr ParsePostfix(ExprPtr e) {
    while (true) {
      if (Accept(".")) {
        auto a = Make(Expr::Kind::kAttr);
        if (t_[pos_].kind == Tok::Kind::kInt) {
          a->name = t_[pos_++].text;
        } else {
          a->name = ExpectName();
        }
        a->target = std::move(e);
        e = std::move(a);
      } else if (Accept("[")) {
        ExprPtr parts[3];
        bool is_slice = false;
        int idx = 0;
        while (true) {
          if (Peek("]")) break;
          if (Accept(":")) {
            is_slice = true;
            if (++idx > 2) throw Error("too many ':' in slice");
            continue;
          }
          if (parts[idx]) throw Error("expected ':' or ']' in subscript");
          parts[idx] = ParseExpression();
        }
        Expect("]");
        if (is_slice) {
          auto s = Make(Expr::Kind::kSlice);
          s->target = std::move(e);
          for (auto& p : parts) s->args.push_back(std::move(p));  // may hold nulls
          e = std::move(s);
        } else {
          if (!parts[0]) throw Error("empty subscript");
          auto ix = Make(Expr::Kind::kIndex);
          ix->target = std::move(e);
          ix->args.push_back(std::move(parts[0]));
          e = std::move(ix);
        }
      } else if (Peek("(")) {
        ++pos_;
        auto c = Make(Expr::Kind::kCall);
        if (e->kind == Expr::Kind::kName) {
          c->name = e->name;
          if (!kFunctions.count(c->name)) throw Error("unsupported function '" + c->name + "'");
        } else if (e->kind == Expr::Kind::kAttr) {
          c->name = e->name;
          c->target = std::move(e->target);
          if (!kMethods.count(c->name)) throw Error("unsupported method '" + c->name + "'");
        } else {
          throw Error("only named functions and methods can be called");
        }
        ParseArgs(c.get());
        e = std::move(c);
      } else {
        return e;
      }
    }
  }
  ExprPtr ParsePrimary() {
    const Tok& t = t_[pos_];
    switch (t.kind) {
      case Tok::Kind::kString: {
        // Adjacent string literals concatenate, as in Python.
        std::string s;
        while (t_[pos_].kind == Tok::Kind::kString) s += t_[pos_++].text;
        auto l = Make(Expr::Kind::kLiteral);
        l->literal = s;
        return l;
      }
      case Tok::Kind::kInt:
      case Tok::Kind::kFloat: {
        auto l = Make(Expr::Kind::kLiteral);
        l->literal = t.value;
        ++pos_;
        return l;
      }
      case Tok::Kind::kName: {
        ++pos_;
        auto l = Make(Expr::Kind::kLiteral);
        if (t.text == "true" || t.text == "True")
          l->literal = true;
        else if (t.text == "false" || t.text == "False")
          l->literal = false;
        else if (t.text == "none" || t.text == "None")
          l->literal = nullptr;
        else {
          auto n = Make(Expr::Kind::kName);
          n->name = t.text;
          return n;
        }
        return l;
      }
      case Tok::Kind::kOp:
        if (Accept("(")) {
          if (Accept(")")) return Make(Expr::Kind::kTuple);
          ExprPtr first = ParseExpression();
          if (Accept(")")) return first;
          auto tup = Make(Expr::Kind::kTuple);
          tup->args.push_back(std::move(first));
          while (Accept(",")) {
            if (Peek(")")) break;
            tup->args.push_back(ParseExpression());
          }
          Expect(")");
          return tup;
        }
        if (Accept("[")) {
          auto l = Make(Expr::Kind::kList);
          while (!Accept("]")) {
            l->args.push_back(ParseExpression());
            if (!Accept(",")) {
              Expect("]");
              break;
            }
          }
          return l;
        }
        if (Accept("{")) {
          auto d = Make(Expr::Kind::kDict);
          while (!Accept("}")) {
            d->args.push_back(ParseExpression());
            Expect(":");
            d->args.push_back(ParseExpression());
            if (!Accept(",")) {
              Expect("}");
              break;
            }
          }
          return d;
        }
        break;
      case Tok::Kind::kEnd:
        break;
    }
    throw Error("unexpected " + Describe() + " in expression");
  }

  std::vector<Tok> t_;
  size_t pos_ = 0;
  int line_;
  int depth_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Statement parser

class Parser {
 public:
  explicit Parser(std::vector<Segment> segs) : segs_(std::move(segs)) {}

  Body ParseAll() {
    std::string end;
    Body b = ParseBody({}, &end);
    return b;
  }

 private:
  static std::string FirstWord(const std::string& s) {
    size_t i = 0;
    while (i < s.size() && IsSpace(s[i])) ++i;
    size_t j = i;
    while (j < s.size() && (std::isalnum(static_cast<unsigned char>(s[j])) || s[j] == '_')) ++j;
    return s.substr(i, j - i);
  }
  ParseError Error(int line, const std::string& m) const {
    return ParseError("chat template line " + std::to_string(line) + ": " + m);
  }

  // Parses nodes until a statement whose first word is in `terminators` (returned in *end,
  // consumed, with its parser left in *term) or the end of input.
  Body ParseBody(const std::vector<std::string>& terminators, std::string* end,
                 std::unique_ptr<ExprParser>* term = nullptr, int* term_line = nullptr) {
    if (++depth_ > 100) throw ParseError("chat template: blocks nested too deeply");
    struct Leave {
      int* d;
      ~Leave() { --*d; }
    } leave{&depth_};
    Body body;
    while (i_ < segs_.size()) {
      Segment& s = segs_[i_];
      if (s.kind == Segment::Kind::kText) {
        auto n = std::make_unique<Node>();
        n->kind = Node::Kind::kText;
        n->text = std::move(s.content);
        body.push_back(std::move(n));
        ++i_;
        continue;
      }
      if (s.kind == Segment::Kind::kExpr) {
        ExprParser p(Tokenize(s.content, s.line), s.line);
        auto n = std::make_unique<Node>();
        n->kind = Node::Kind::kOutput;
        n->line = s.line;
        n->expr = p.ParseTupleOrExpression();
        p.ExpectEnd();
        body.push_back(std::move(n));
        ++i_;
        continue;
      }
      const std::string word = FirstWord(s.content);
      const int line = s.line;
      if (std::find(terminators.begin(), terminators.end(), word) != terminators.end()) {
        *end = word;
        auto p = std::make_unique<ExprParser>(Tokenize(s.content, line), line);
        p->ExpectName();
        if (term)
          *term = std::move(p);
        else
          p->ExpectEnd();
        if (term_line) *term_line = line;
        ++i_;
        return body;
      }
      ++i_;
      auto p = std::make_unique<ExprParser>(Tokenize(s.content, line), line);
      if (word == "if") {
        body.push_back(ParseIf(std::move(p), line));
      } else if (word == "for") {
        body.push_back(ParseFor(std::move(p), line));
      } else if (word == "set") {
        body.push_back(ParseSet(std::move(p), line));
      } else if (word == "break" || word == "continue") {
        p->ExpectName();
        p->ExpectEnd();
        auto n = std::make_unique<Node>();
        n->kind = word == "break" ? Node::Kind::kBreak : Node::Kind::kContinue;
        n->line = line;
        body.push_back(std::move(n));
      } else if (word == "elif" || word == "else" || word.rfind("end", 0) == 0) {
        throw Error(line, "unexpected '{% " + word + " %}'");
      } else {
        throw Error(line, "unsupported statement '{% " + word + " %}'");
      }
    }
    if (!terminators.empty()) {
      throw ParseError("chat template: missing '{% " + terminators.back() +
                       " %}' at end of template");
    }
    return body;
  }

  std::unique_ptr<Node> ParseIf(std::unique_ptr<ExprParser> p, int line) {
    auto n = std::make_unique<Node>();
    n->kind = Node::Kind::kIf;
    n->line = line;
    p->ExpectName();
    ExprPtr cond = p->ParseExpression();
    p->ExpectEnd();
    while (true) {
      std::string end;
      std::unique_ptr<ExprParser> term;
      Body b = ParseBody({"elif", "else", "endif"}, &end, &term);
      n->branches.emplace_back(std::move(cond), std::move(b));
      if (end == "endif") {
        term->ExpectEnd();
        return n;
      }
      if (end == "else") {
        term->ExpectEnd();
        std::string end2;
        Body eb = ParseBody({"endif"}, &end2);
        n->branches.emplace_back(nullptr, std::move(eb));
        return n;
      }
      cond = term->ParseExpression();  // elif
      term->ExpectEnd();
    }
  }

  std::unique_ptr<Node> ParseFor(std::unique_ptr<ExprParser> p, int line) {
    auto n = std::make_unique<Node>();
    n->kind = Node::Kind::kFor;
    n->line = line;
    p->ExpectName();
    bool paren = p->Accept("(");
    do {
      n->loop_vars.push_back(p->ExpectName());
    } while (p->Accept(","));
    if (paren) p->Expect(")");
    if (!p->AcceptName("in")) throw p->Error("expected 'in' in for loop");
    n->expr = p->ParseOrExpression();  // not the conditional: "if" here filters the loop
    if (p->AcceptName("if")) n->loop_filter = p->ParseOrExpression();
    if (p->AcceptName("recursive")) throw p->Error("unsupported 'recursive' loop");
    p->ExpectEnd();
    std::string end;
    n->body = ParseBody({"else", "endfor"}, &end);
    if (end == "else") {
      std::string end2;
      n->else_body = ParseBody({"endfor"}, &end2);
    }
    return n;
  }

  std::unique_ptr<Node> ParseSet(std::unique_ptr<ExprParser> p, int line) {
    auto n = std::make_unique<Node>();
    n->line = line;
    p->ExpectName();
    n->loop_vars.push_back(p->ExpectName());
    if (p->Accept(".")) {
      n->loop_vars.push_back(p->ExpectName());
      n->attr_target = true;
    } else {
      while (p->Accept(",")) n->loop_vars.push_back(p->ExpectName());
    }
    if (p->Accept("=")) {
      n->kind = Node::Kind::kSet;
      n->expr = p->ParseTupleOrExpression();
      p->ExpectEnd();
      return n;
    }
    p->ExpectEnd();
    if (n->loop_vars.size() != 1) throw p->Error("block 'set' takes a single name");
    n->kind = Node::Kind::kSetBlock;
    std::string end;
    n->body = ParseBody({"endset"}, &end);
    return n;
  }

  std::vector<Segment> segs_;
  size_t i_ = 0;
  int depth_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Interpreter

class Interpreter {
 public:
  explicit Interpreter(const json& context) {
    scopes_.emplace_back();
    if (context.is_object()) {
      for (const auto& [k, v] : context.items()) scopes_.back()[k] = Value::Of(v);
    }
  }

  void Run(const Body& body, std::string* out) {
    for (const auto& n : body) {
      Exec(*n, out);
      if (control_ != Control::kNone) return;
    }
  }

 private:
  enum class Control { kNone, kBreak, kContinue };

  Value Lookup(const std::string& name) const {
    for (auto it = scopes_.rbegin(); it != scopes_.rend(); ++it) {
      auto f = it->find(name);
      if (f != it->end()) return f->second;
    }
    return Value::Undefined();
  }

  void Assign(const Node& n, Value v) {
    if (n.attr_target) {
      Value target = Lookup(n.loop_vars[0]);
      if (target.kind != Value::Kind::kNamespace) {
        Fail(n.line, "cannot set attribute '" + n.loop_vars[1] + "' of '" + n.loop_vars[0] +
                         "': only namespace() objects allow attribute assignment");
      }
      (*target.ns)[n.loop_vars[1]] = v.data();
      return;
    }
    if (n.loop_vars.size() == 1) {
      scopes_.back()[n.loop_vars[0]] = std::move(v);
      return;
    }
    const json& arr = v.data();
    if (!arr.is_array() || arr.size() != n.loop_vars.size()) {
      Fail(n.line, "cannot unpack value into " + std::to_string(n.loop_vars.size()) + " names");
    }
    for (size_t i = 0; i < n.loop_vars.size(); ++i)
      scopes_.back()[n.loop_vars[i]] = Value::Of(arr[i]);
  }

  void Exec(const Node& n, std::string* out) {
    switch (n.kind) {
      case Node::Kind::kText:
        *out += n.text;
        return;
      case Node::Kind::kOutput:
        *out += ToStr(Eval(*n.expr));
        return;
      case Node::Kind::kIf:
        for (const auto& [cond, body] : n.branches) {
          if (!cond || Truthy(Eval(*cond))) {
            Run(body, out);
            return;
          }
        }
        return;
      case Node::Kind::kSet:
        Assign(n, Eval(*n.expr));
        return;
      case Node::Kind::kSetBlock: {
        std::string captured;
        Run(n.body, &captured);
        Assign(n, Value::Of(captured));
        return;
      }
      case Node::Kind::kBreak:
        control_ = Control::kBreak;
        return;
      case Node::Kind::kContinue:
        control_ = Control::kContinue;
        return;
      case Node::Kind::kFor:
        ExecFor(n, out);
        return;
    }
  }

  json Iterable(const Value& v, int line) {
    if (v.undefined()) return json::array();
    const json& j = v.data();
    if (j.is_array()) return j;
    if (j.is_object()) {
      json keys = json::array();
      for (const auto& [k, x] : j.items()) keys.push_back(k);
      return keys;
    }
    if (j.is_string()) {
      json chars = json::array();
      for (auto& c : Chars(j.get<std::string>())) chars.push_back(c);
      return chars;
    }
    Fail(line, "cannot iterate over " + std::string(j.type_name()));
  }

  void ExecFor(const Node& n, std::string* out) {
    json items = Iterable(Eval(*n.expr), n.line);
    if (n.loop_filter) {
      json kept = json::array();
      for (const json& x : items) {
        scopes_.emplace_back();
        BindLoopVars(n, x);
        if (Truthy(Eval(*n.loop_filter))) kept.push_back(x);
        scopes_.pop_back();
      }
      items = std::move(kept);
    }
    if (items.empty()) {
      Run(n.else_body, out);
      return;
    }
    const int64_t len = static_cast<int64_t>(items.size());
    for (int64_t i = 0; i < len; ++i) {
      scopes_.emplace_back();
      BindLoopVars(n, items[i]);
      json loop = {{"index", i + 1},
                   {"index0", i},
                   {"revindex", len - i},
                   {"revindex0", len - i - 1},
                   {"first", i == 0},
                   {"last", i == len - 1},
                   {"length", len},
                   {"previtem", i > 0 ? items[i - 1] : json()},
                   {"nextitem", i + 1 < len ? items[i + 1] : json()}};
      scopes_.back()["loop"] = Value::Of(std::move(loop));
      Run(n.body, out);
      scopes_.pop_back();
      if (control_ == Control::kBreak) {
        control_ = Control::kNone;
        break;
      }
      control_ = Control::kNone;
    }
  }

  void BindLoopVars(const Node& n, const json& x) {
    if (n.loop_vars.size() == 1) {
      scopes_.back()[n.loop_vars[0]] = Value::Of(x);
      return;
    }
    if (!x.is_array() || x.size() != n.loop_vars.size()) {
      Fail(n.line, "cannot unpack loop item into " + std::to_string(n.loop_vars.size()) + " names");
    }
    for (size_t k = 0; k < n.loop_vars.size(); ++k)
      scopes_.back()[n.loop_vars[k]] = Value::Of(x[k]);
  }

  static int64_t AsInt(const Value& v, int line, const char* what) {
    const json& j = v.data();
    if (j.is_number_integer() || j.is_number_unsigned()) return j.get<int64_t>();
    if (j.is_boolean()) return j.get<bool>() ? 1 : 0;
    Fail(line, std::string(what) + " must be an integer, got " +
                   (v.undefined() ? "undefined" : j.type_name()));
  }

  Value GetItem(const Value& obj, const Value& key, int line) {
    if (obj.undefined()) return Value::Undefined();
    const json& o = obj.data();
    const json& k = key.data();
    if (o.is_object()) {
      if (!k.is_string()) return Value::Undefined();
      auto it = o.find(k.get<std::string>());
      if (it == o.end()) return Value::Undefined();
      return Value::Of(*it);
    }
    if (o.is_array() || o.is_string()) {
      if (!k.is_number_integer()) {
        if (k.is_string()) return Value::Undefined();
        Fail(line, "index must be an integer");
      }
      int64_t i = k.get<int64_t>();
      if (o.is_array()) {
        const int64_t n = static_cast<int64_t>(o.size());
        if (i < 0) i += n;
        if (i < 0 || i >= n) return Value::Undefined();
        return Value::Of(o[i]);
      }
      auto chars = Chars(o.get<std::string>());
      const int64_t n = static_cast<int64_t>(chars.size());
      if (i < 0) i += n;
      if (i < 0 || i >= n) return Value::Undefined();
      return Value::Of(chars[i]);
    }
    return Value::Undefined();
  }

  Value Slice(const Value& obj, const Expr& e) {
    const json& o = obj.data();
    std::vector<json> items;
    const bool is_str = o.is_string();
    if (is_str) {
      for (auto& c : Chars(o.get<std::string>())) items.emplace_back(c);
    } else if (o.is_array()) {
      items.assign(o.begin(), o.end());
    } else {
      Fail(e.line, "cannot slice " + std::string(obj.undefined() ? "undefined" : o.type_name()));
    }
    const int64_t n = static_cast<int64_t>(items.size());
    auto opt = [&](int k) -> std::optional<int64_t> {
      if (!e.args[k]) return std::nullopt;
      Value v = Eval(*e.args[k]);
      if (v.undefined() || v.data().is_null()) return std::nullopt;
      return AsInt(v, e.line, "slice bound");
    };
    const int64_t step = opt(2).value_or(1);
    if (step == 0) Fail(e.line, "slice step cannot be zero");
    auto clamp = [&](std::optional<int64_t> v, int64_t dflt) {
      if (!v) return dflt;
      int64_t x = *v;
      if (x < 0) x += n;
      if (step > 0) return std::clamp<int64_t>(x, 0, n);
      return std::clamp<int64_t>(x, -1, n - 1);
    };
    const int64_t start = clamp(opt(0), step > 0 ? 0 : n - 1);
    const int64_t stop = clamp(opt(1), step > 0 ? n : -1);
    json out = json::array();
    std::string s;
    for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
      if (is_str)
        s += items[i].get<std::string>();
      else
        out.push_back(items[i]);
    }
    return is_str ? Value::Of(s) : Value::Of(out);
  }

  Value Eval(const Expr& e) {
    switch (e.kind) {
      case Expr::Kind::kLiteral:
        return Value::Of(e.literal);
      case Expr::Kind::kName:
        return Lookup(e.name);
      case Expr::Kind::kList:
      case Expr::Kind::kTuple: {
        json arr = json::array();
        for (const auto& a : e.args) arr.push_back(Eval(*a).data());
        return Value::Of(arr);
      }
      case Expr::Kind::kDict: {
        json obj = json::object();
        for (size_t i = 0; i + 1 < e.args.size(); i += 2) {
          Value k = Eval(*e.args[i]);
          obj[ToStr(k)] = Eval(*e.args[i + 1]).data();
        }
        return Value::Of(obj);
      }
      case Expr::Kind::kAttr: {
        Value obj = Eval(*e.target);
        if (obj.undefined()) return Value::Undefined();
        const json& o = obj.data();
        if (o.is_object()) {
          auto it = o.find(e.name);
          return it == o.end() ? Value::Undefined() : Value::Of(*it);
        }
        if (o.is_array() && !e.name.empty() &&
            std::isdigit(static_cast<unsigned char>(e.name[0]))) {
          return GetItem(obj, Value::Of(std::stoll(e.name)), e.line);
        }
        return Value::Undefined();
      }
      case Expr::Kind::kIndex:
        return GetItem(Eval(*e.target), Eval(*e.args[0]), e.line);
      case Expr::Kind::kSlice:
        return Slice(Eval(*e.target), e);
      case Expr::Kind::kCall:
        return Call(e);
      case Expr::Kind::kFilter:
        return Filter(e);
      case Expr::Kind::kTest: {
        const bool r = Test(e);
        return Value::Of(e.negated ? !r : r);
      }
      case Expr::Kind::kUnary: {
        Value v = Eval(*e.args[0]);
        const json& j = v.data();
        if (!j.is_number()) Fail(e.line, "unary " + e.name + " needs a number");
        if (e.name == "+") return v;
        if (j.is_number_float()) return Value::Of(-j.get<double>());
        const int64_t i = j.get<int64_t>();
        if (i == std::numeric_limits<int64_t>::min()) {
          Fail(e.line, "integer overflow: -(" + std::to_string(i) + ") does not fit in 64 bits");
        }
        return Value::Of(-i);
      }
      case Expr::Kind::kNot:
        return Value::Of(!Truthy(Eval(*e.args[0])));
      case Expr::Kind::kAnd: {
        Value l = Eval(*e.args[0]);
        return Truthy(l) ? Eval(*e.args[1]) : l;
      }
      case Expr::Kind::kOr: {
        Value l = Eval(*e.args[0]);
        return Truthy(l) ? l : Eval(*e.args[1]);
      }
      case Expr::Kind::kCond:
        if (Truthy(Eval(*e.args[0]))) return Eval(*e.args[1]);
        return e.args.size() > 2 ? Eval(*e.args[2]) : Value::Undefined();
      case Expr::Kind::kCompare:
        return Value::Of(Compare(e.name, Eval(*e.args[0]), Eval(*e.args[1]), e.line));
      case Expr::Kind::kBinary:
        return Binary(e.name, Eval(*e.args[0]), Eval(*e.args[1]), e.line);
    }
    Fail(e.line, "internal: unknown expression");
  }

  bool Contains(const Value& container, const Value& item, int line) {
    const json& c = container.data();
    const json& x = item.data();
    if (container.undefined()) return false;
    if (c.is_string()) {
      if (!x.is_string()) Fail(line, "'in <string>' requires a string on the left");
      return c.get_ref<const std::string&>().find(x.get_ref<const std::string&>()) !=
             std::string::npos;
    }
    if (c.is_array()) {
      for (const json& y : c) {
        if (Equal(Value::Of(y), item)) return true;
      }
      return false;
    }
    if (c.is_object()) return x.is_string() && c.contains(x.get<std::string>());
    Fail(line, std::string("'in' needs a string, list or mapping, got ") + c.type_name());
  }

  bool Compare(const std::string& op, const Value& a, const Value& b, int line) {
    if (op == "==") return Equal(a, b);
    if (op == "!=") return !Equal(a, b);
    if (op == "in") return Contains(b, a, line);
    if (op == "not in") return !Contains(b, a, line);
    const json& x = a.data();
    const json& y = b.data();
    int c;
    if (x.is_number() && y.is_number()) {
      const double p = x.get<double>(), q = y.get<double>();
      c = p < q ? -1 : (p > q ? 1 : 0);
    } else if (x.is_string() && y.is_string()) {
      c = x.get_ref<const std::string&>().compare(y.get_ref<const std::string&>());
    } else {
      Fail(line, "cannot compare " + std::string(a.undefined() ? "undefined" : x.type_name()) +
                     " " + op + " " + (b.undefined() ? "undefined" : y.type_name()));
    }
    if (op == "<") return c < 0;
    if (op == "<=") return c <= 0;
    if (op == ">") return c > 0;
    return c >= 0;
  }

  Value Binary(const std::string& op, const Value& a, const Value& b, int line) {
    if (op == "~") return Value::Of(ToStr(a) + ToStr(b));
    const json& x = a.data();
    const json& y = b.data();
    if (op == "+") {
      if (x.is_string() && y.is_string())
        return Value::Of(x.get<std::string>() + y.get<std::string>());
      if (x.is_array() && y.is_array()) {
        json r = x;
        r.insert(r.end(), y.begin(), y.end());
        return Value::Of(r);
      }
    }
    if (op == "*" && x.is_string() && y.is_number_integer()) {
      // Sized up front: a loop guarded by the result's size never ends for "" * 10**18.
      const std::string& unit = x.get_ref<const std::string&>();
      if (y.is_number_unsigned() && y.get<uint64_t>() > uint64_t{INT64_MAX}) {
        Fail(line, "string repetition by " + y.dump() + " does not fit in 64 bits");
      }
      const int64_t n = y.get<int64_t>();
      if (unit.empty() || n <= 0) return Value::Of("");
      constexpr size_t kMaxRepeatBytes = size_t{1} << 24;
      if (static_cast<uint64_t>(n) > kMaxRepeatBytes / unit.size()) {
        Fail(line, "string repetition by " + std::to_string(n) + " exceeds the " +
                       std::to_string(kMaxRepeatBytes >> 20) + " MiB limit");
      }
      std::string r;
      r.reserve(unit.size() * static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) r += unit;
      return Value::Of(r);
    }
    if (!x.is_number() || !y.is_number() || a.undefined() || b.undefined()) {
      Fail(line, "unsupported operand types for " + op + ": " +
                     (a.undefined() ? "undefined" : x.type_name()) + " and " +
                     (b.undefined() ? "undefined" : y.type_name()));
    }
    const bool ints = !x.is_number_float() && !y.is_number_float();
    // nlohmann keeps integers past INT64_MAX (from a message's JSON) as unsigned; read as int64
    // they would wrap to negatives.
    for (const json* v : {&x, &y}) {
      if (v->is_number_unsigned() && v->get<uint64_t>() > uint64_t{INT64_MAX}) {
        Fail(line, "integer " + v->dump() + " does not fit in 64 bits");
      }
    }
    if (ints && op == "**" && y.get<int64_t>() >= 0) {
      // Exact, by squaring: through double, results past 2^53 came out silently wrong.
      int64_t base = x.get<int64_t>(), r = 1;
      bool overflow = false;
      for (int64_t e = y.get<int64_t>(); e > 0 && !overflow; e >>= 1) {
        if (e & 1) overflow = __builtin_mul_overflow(r, base, &r);
        if (e > 1 && !overflow) overflow = __builtin_mul_overflow(base, base, &base);
      }
      if (overflow) {
        Fail(line,
             "integer overflow: " + x.dump() + " ** " + y.dump() + " does not fit in 64 bits");
      }
      return Value::Of(r);
    }
    if (ints && op != "/" && op != "**") {
      // Python's ints do not overflow; ours are int64, so a result out of range is an error
      // (wrapping would be undefined behaviour, and INT64_MIN / -1 traps with SIGFPE on x86).
      const int64_t p = x.get<int64_t>(), q = y.get<int64_t>();
      int64_t r = 0;
      bool overflow = false;
      if (op == "+") overflow = __builtin_add_overflow(p, q, &r);
      if (op == "-") overflow = __builtin_sub_overflow(p, q, &r);
      if (op == "*") overflow = __builtin_mul_overflow(p, q, &r);
      if (op == "//") overflow = q == -1 && p == std::numeric_limits<int64_t>::min();
      if (overflow) {
        Fail(line, "integer overflow: " + std::to_string(p) + " " + op + " " + std::to_string(q) +
                       " does not fit in 64 bits");
      }
      if (op == "+" || op == "-" || op == "*") return Value::Of(r);
      if (q == 0) Fail(line, "division by zero");
      // x % -1 is 0 for every x; the C++ expression would trap for INT64_MIN.
      if (op == "%" && q == -1) return Value::Of(int64_t{0});
      // Python rounds toward negative infinity, C++ toward zero; in integers, so that values
      // past 2^53 stay exact.
      const int64_t quot = p / q, rem = p % q;
      const bool signs_differ = rem != 0 && ((rem < 0) != (q < 0));
      if (op == "//") return Value::Of(signs_differ ? quot - 1 : quot);
      if (op == "%") return Value::Of(signs_differ ? rem + q : rem);
    }
    const double p = x.get<double>(), q = y.get<double>();
    if (op == "+") return Value::Of(p + q);
    if (op == "-") return Value::Of(p - q);
    if (op == "*") return Value::Of(p * q);
    if (op == "**") return Value::Of(std::pow(p, q));  // a float, or an int to a negative power
    if (q == 0) Fail(line, "division by zero");
    if (op == "/") return Value::Of(p / q);
    if (op == "//") return Value::Of(std::floor(p / q));
    if (op == "%") return Value::Of(p - q * std::floor(p / q));
    Fail(line, "unknown operator " + op);
  }

  std::vector<Value> Args(const Expr& e) {
    std::vector<Value> out;
    for (const auto& a : e.args) out.push_back(Eval(*a));
    return out;
  }
  Value Kwarg(const Expr& e, const std::string& name, size_t pos, const std::vector<Value>& args) {
    for (const auto& [k, v] : e.kwargs) {
      if (k == name) return Eval(*v);
    }
    if (pos < args.size()) return args[pos];
    return Value::Undefined();
  }

  static std::string Strip(const std::string& s, const std::string* chars, bool left, bool right) {
    auto is_strip = [&](char c) {
      return chars ? chars->find(c) != std::string::npos : IsSpace(c);
    };
    size_t b = 0, e = s.size();
    if (left) {
      while (b < e && is_strip(s[b])) ++b;
    }
    if (right) {
      while (e > b && is_strip(s[e - 1])) --e;
    }
    return s.substr(b, e - b);
  }

  static std::string ReplaceAll(std::string s, const std::string& from, const std::string& to,
                                int64_t count = -1) {
    if (from.empty()) return s;
    size_t pos = 0;
    while (count != 0 && (pos = s.find(from, pos)) != std::string::npos) {
      s.replace(pos, from.size(), to);
      pos += to.size();
      if (count > 0) --count;
    }
    return s;
  }

  static std::string Title(const std::string& s) {
    std::string r = s;
    bool start = true;
    for (char& c : r) {
      if (std::isalpha(static_cast<unsigned char>(c))) {
        c = start ? std::toupper(c) : std::tolower(c);
        start = false;
      } else {
        start = true;
      }
    }
    return r;
  }
  static std::string Upper(std::string s) {
    for (char& c : s) c = std::toupper(static_cast<unsigned char>(c));
    return s;
  }
  static std::string Lower(std::string s) {
    for (char& c : s) c = std::tolower(static_cast<unsigned char>(c));
    return s;
  }

  const std::string& Str(const Value& v, const Expr& e, const char* what) {
    if (!v.data().is_string()) {
      Fail(e.line, std::string(what) + " needs a string, got " +
                       (v.undefined() ? "undefined" : v.data().type_name()));
    }
    return v.data().get_ref<const std::string&>();
  }

  Value Call(const Expr& e) {
    std::vector<Value> args = Args(e);
    if (!e.target) {
      if (e.name == "raise_exception") {
        throw RenderError(args.empty() ? std::string("raise_exception called") : ToStr(args[0]));
      }
      if (e.name == "namespace" || e.name == "dict") {
        Value v;
        v.kind = e.name == "namespace" ? Value::Kind::kNamespace : Value::Kind::kJson;
        json obj = json::object();
        if (!args.empty() && args[0].data().is_object()) obj = args[0].data();
        for (const auto& [k, x] : e.kwargs) obj[k] = Eval(*x).data();
        if (v.kind == Value::Kind::kNamespace)
          v.ns = std::make_shared<json>(std::move(obj));
        else
          v.j = std::move(obj);
        return v;
      }
      if (e.name == "range") {
        int64_t start = 0, stop = 0, step = 1;
        if (args.size() == 1) {
          stop = AsInt(args[0], e.line, "range()");
        } else if (args.size() >= 2) {
          start = AsInt(args[0], e.line, "range()");
          stop = AsInt(args[1], e.line, "range()");
          if (args.size() > 2) step = AsInt(args[2], e.line, "range()");
        }
        if (step == 0) Fail(e.line, "range() step cannot be zero");
        json r = json::array();
        for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
          r.push_back(i);
          if (r.size() > 1000000) Fail(e.line, "range() too large");
        }
        return Value::Of(r);
      }
      if (e.name == "strftime_now") {
        const std::string fmt = args.empty() ? "%Y-%m-%d" : ToStr(args[0]);
        std::time_t now = std::time(nullptr);
        std::tm tm{};
        localtime_r(&now, &tm);
        char buf[256];
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
        const size_t n = std::strftime(buf, sizeof(buf), fmt.c_str(), &tm);
#pragma GCC diagnostic pop
        return Value::Of(std::string(buf, n));
      }
      Fail(e.line, "unknown function " + e.name);
    }
    Value self = Eval(*e.target);
    const json& o = self.data();
    const std::string& m = e.name;
    if (o.is_string()) {
      const std::string& s = o.get_ref<const std::string&>();
      auto arg_str = [&](size_t i) -> const std::string* {
        return i < args.size() && args[i].data().is_string()
                   ? &args[i].data().get_ref<const std::string&>()
                   : nullptr;
      };
      if (m == "strip") return Value::Of(Strip(s, arg_str(0), true, true));
      if (m == "lstrip") return Value::Of(Strip(s, arg_str(0), true, false));
      if (m == "rstrip") return Value::Of(Strip(s, arg_str(0), false, true));
      if (m == "upper") return Value::Of(Upper(s));
      if (m == "lower") return Value::Of(Lower(s));
      if (m == "title") return Value::Of(Title(s));
      if (m == "capitalize")
        return Value::Of(s.empty() ? s : Upper(s.substr(0, 1)) + Lower(s.substr(1)));
      if (m == "startswith" || m == "endswith") {
        std::vector<std::string> cands;
        if (!args.empty() && args[0].data().is_array()) {
          for (const json& x : args[0].data())
            if (x.is_string()) cands.push_back(x.get<std::string>());
        } else if (arg_str(0)) {
          cands.push_back(*arg_str(0));
        } else {
          Fail(e.line, m + "() needs a string");
        }
        for (const auto& c : cands) {
          if (m == "startswith"
                  ? s.rfind(c, 0) == 0
                  : (s.size() >= c.size() && s.compare(s.size() - c.size(), c.size(), c) == 0)) {
            return Value::Of(true);
          }
        }
        return Value::Of(false);
      }
      if (m == "split") {
        json r = json::array();
        const std::string* sep = arg_str(0);
        int64_t maxsplit = args.size() > 1 ? AsInt(args[1], e.line, "split maxsplit") : -1;
        if (!sep) {
          size_t i = 0;
          while (i < s.size()) {
            while (i < s.size() && IsSpace(s[i])) ++i;
            if (i >= s.size()) break;
            if (maxsplit == 0) {
              r.push_back(Strip(s.substr(i), nullptr, false, true));
              break;
            }
            size_t j = i;
            while (j < s.size() && !IsSpace(s[j])) ++j;
            r.push_back(s.substr(i, j - i));
            if (maxsplit > 0) --maxsplit;
            i = j;
          }
          return Value::Of(r);
        }
        if (sep->empty()) Fail(e.line, "split(): empty separator");
        size_t i = 0;
        while (true) {
          const size_t j = maxsplit == 0 ? std::string::npos : s.find(*sep, i);
          if (j == std::string::npos) {
            r.push_back(s.substr(i));
            break;
          }
          r.push_back(s.substr(i, j - i));
          i = j + sep->size();
          if (maxsplit > 0) --maxsplit;
        }
        return Value::Of(r);
      }
      if (m == "splitlines") {
        json r = json::array();
        size_t i = 0;
        while (i < s.size()) {
          size_t j = s.find('\n', i);
          if (j == std::string::npos) j = s.size();
          std::string line = s.substr(i, j - i);
          if (!line.empty() && line.back() == '\r') line.pop_back();
          r.push_back(line);
          i = j + 1;
        }
        return Value::Of(r);
      }
      if (m == "replace") {
        if (!arg_str(0) || !arg_str(1)) Fail(e.line, "replace() needs two strings");
        const int64_t count = args.size() > 2 ? AsInt(args[2], e.line, "replace count") : -1;
        return Value::Of(ReplaceAll(s, *arg_str(0), *arg_str(1), count));
      }
      if (m == "count") {
        if (!arg_str(0) || arg_str(0)->empty()) Fail(e.line, "count() needs a non-empty string");
        int64_t n = 0;
        for (size_t p = s.find(*arg_str(0)); p != std::string::npos;
             p = s.find(*arg_str(0), p + arg_str(0)->size()))
          ++n;
        return Value::Of(n);
      }
      if (m == "find" || m == "index") {
        if (!arg_str(0)) Fail(e.line, m + "() needs a string");
        const size_t p = s.find(*arg_str(0));
        if (p == std::string::npos) {
          if (m == "index") Fail(e.line, "substring not found");
          return Value::Of(-1);
        }
        return Value::Of(static_cast<int64_t>(Chars(s.substr(0, p)).size()));
      }
      if (m == "join") {
        std::string r;
        if (!args.empty()) {
          bool first = true;
          for (const json& x : Iterable(args[0], e.line)) {
            r += (first ? "" : s) + ToStr(Value::Of(x));
            first = false;
          }
        }
        return Value::Of(r);
      }
      auto all = [&](auto pred) {
        if (s.empty()) return false;
        for (char c : s)
          if (!pred(static_cast<unsigned char>(c))) return false;
        return true;
      };
      if (m == "isdigit")
        return Value::Of(all([](unsigned char c) { return std::isdigit(c) != 0; }));
      if (m == "isalpha")
        return Value::Of(all([](unsigned char c) { return std::isalpha(c) != 0; }));
      if (m == "isspace")
        return Value::Of(all([](unsigned char c) { return IsSpace(static_cast<char>(c)); }));
    }
    if (o.is_object()) {
      if (m == "get") {
        if (args.empty() || !args[0].data().is_string()) Fail(e.line, "get() needs a string key");
        auto it = o.find(args[0].data().get<std::string>());
        if (it != o.end()) return Value::Of(*it);
        return args.size() > 1 ? args[1] : Value::Of(nullptr);
      }
      if (m == "items") {
        json r = json::array();
        for (const auto& [k, x] : o.items()) r.push_back(json::array({k, x}));
        return Value::Of(r);
      }
      if (m == "keys" || m == "values") {
        json r = json::array();
        for (const auto& [k, x] : o.items()) r.push_back(m == "keys" ? json(k) : x);
        return Value::Of(r);
      }
    }
    if (o.is_array() && (m == "index" || m == "count")) {
      int64_t n = 0, first = -1, i = 0;
      for (const json& x : o) {
        if (!args.empty() && Equal(Value::Of(x), args[0])) {
          ++n;
          if (first < 0) first = i;
        }
        ++i;
      }
      if (m == "count") return Value::Of(n);
      if (first < 0) Fail(e.line, "value not in list");
      return Value::Of(first);
    }
    Fail(e.line, "'" + std::string(self.undefined() ? "undefined" : o.type_name()) +
                     "' has no method '" + m + "'");
  }

  Value Filter(const Expr& e) {
    Value v = Eval(*e.target);
    std::vector<Value> args = Args(e);
    const std::string& f = e.name;
    const json& j = v.data();
    if (f == "default" || f == "d") {
      Value dflt = Kwarg(e, "default_value", 0, args);
      const bool boolean = Truthy(Kwarg(e, "boolean", 1, args));
      if (v.undefined() || (boolean && !Truthy(v))) return dflt.undefined() ? Value::Of("") : dflt;
      return v;
    }
    if (f == "safe" || f == "e" || f == "escape") return v;  // no autoescape in chat templates
    if (f == "string") return Value::Of(ToStr(v));
    if (f == "trim") {
      Value chars = Kwarg(e, "chars", 0, args);
      const std::string* cs =
          chars.data().is_string() ? &chars.data().get_ref<const std::string&>() : nullptr;
      return Value::Of(Strip(ToStr(v), cs, true, true));
    }
    if (f == "upper") return Value::Of(Upper(ToStr(v)));
    if (f == "lower") return Value::Of(Lower(ToStr(v)));
    if (f == "title") return Value::Of(Title(ToStr(v)));
    if (f == "capitalize") {
      std::string s = ToStr(v);
      return Value::Of(s.empty() ? s : Upper(s.substr(0, 1)) + Lower(s.substr(1)));
    }
    if (f == "length" || f == "count") {
      if (j.is_string()) return Value::Of(static_cast<int64_t>(Chars(j.get<std::string>()).size()));
      if (j.is_array() || j.is_object()) return Value::Of(static_cast<int64_t>(j.size()));
      if (v.undefined()) return Value::Of(0);
      Fail(e.line, std::string("length of ") + j.type_name() + " is undefined");
    }
    if (f == "tojson") {
      Value indent = Kwarg(e, "indent", 0, args);
      const int ind = indent.data().is_number_integer() ? indent.data().get<int>() : 0;
      return Value::Of(ToJson(j, std::max(0, std::min(ind, 64)), 0));
    }
    if (f == "join") {
      Value sep = Kwarg(e, "d", 0, args);
      Value attr = Kwarg(e, "attribute", 1, args);
      std::string r;
      bool first = true;
      for (const json& x : Iterable(v, e.line)) {
        Value item = Value::Of(x);
        if (!attr.undefined()) item = GetItem(item, attr, e.line);
        r += (first ? "" : ToStr(sep)) + ToStr(item);
        first = false;
      }
      return Value::Of(r);
    }
    if (f == "replace") {
      if (args.size() < 2) Fail(e.line, "replace needs two arguments");
      const int64_t count = args.size() > 2 ? AsInt(args[2], e.line, "replace count") : -1;
      return Value::Of(ReplaceAll(ToStr(v), ToStr(args[0]), ToStr(args[1]), count));
    }
    if (f == "first" || f == "last") {
      json items = Iterable(v, e.line);
      if (items.empty()) return Value::Undefined();
      return Value::Of(f == "first" ? items.front() : items.back());
    }
    if (f == "list") return Value::Of(Iterable(v, e.line));
    if (f == "reverse") {
      if (j.is_string()) {
        auto c = Chars(j.get<std::string>());
        std::string r;
        for (auto it = c.rbegin(); it != c.rend(); ++it) r += *it;
        return Value::Of(r);
      }
      json items = Iterable(v, e.line);
      std::reverse(items.begin(), items.end());
      return Value::Of(items);
    }
    if (f == "int") {
      if (j.is_number()) return Value::Of(static_cast<int64_t>(j.get<double>()));
      if (j.is_string()) {
        try {
          return Value::Of(static_cast<int64_t>(std::stoll(j.get<std::string>())));
        } catch (const std::exception&) {
        }
      }
      return Value::Of(args.empty() ? json(0) : args[0].data());
    }
    if (f == "float") {
      if (j.is_number()) return Value::Of(j.get<double>());
      if (j.is_string()) {
        try {
          return Value::Of(std::stod(j.get<std::string>()));
        } catch (const std::exception&) {
        }
      }
      return Value::Of(args.empty() ? json(0.0) : args[0].data());
    }
    if (f == "abs") {
      if (j.is_number_float()) return Value::Of(std::fabs(j.get<double>()));
      if (j.is_number()) return Value::Of(std::abs(j.get<int64_t>()));
      Fail(e.line, "abs needs a number");
    }
    if (f == "items" || f == "dictsort") {
      if (!j.is_object()) {
        if (v.undefined()) return Value::Of(json::array());
        Fail(e.line, f + " needs a mapping");
      }
      json r = json::array();
      for (const auto& [k, x] : j.items()) r.push_back(json::array({k, x}));  // keys sorted
      return Value::Of(r);
    }
    if (f == "map") {
      Value attr = Kwarg(e, "attribute", 99, args);
      json r = json::array();
      if (!attr.undefined()) {
        Value dflt = Kwarg(e, "default", 99, args);
        for (const json& x : Iterable(v, e.line)) {
          Value item = GetItem(Value::Of(x), attr, e.line);
          if (item.undefined() && !dflt.undefined()) item = dflt;
          r.push_back(item.data());
        }
        return Value::Of(r);
      }
      if (args.empty() || !args[0].data().is_string())
        Fail(e.line, "map needs attribute= or a filter name");
      const std::string name = args[0].data().get<std::string>();
      for (const json& x : Iterable(v, e.line)) {
        if (name == "string")
          r.push_back(ToStr(Value::Of(x)));
        else if (name == "lower")
          r.push_back(Lower(ToStr(Value::Of(x))));
        else if (name == "upper")
          r.push_back(Upper(ToStr(Value::Of(x))));
        else if (name == "trim")
          r.push_back(Strip(ToStr(Value::Of(x)), nullptr, true, true));
        else if (name == "tojson")
          r.push_back(ToJson(x, 0, 0));
        else
          Fail(e.line, "map: unsupported filter '" + name + "'");
      }
      return Value::Of(r);
    }
    if (f == "selectattr" || f == "rejectattr") {
      if (args.empty()) Fail(e.line, f + " needs an attribute name");
      json r = json::array();
      for (const json& x : Iterable(v, e.line)) {
        Value item = GetItem(Value::Of(x), args[0], e.line);
        bool keep;
        if (args.size() < 2) {
          keep = Truthy(item);
        } else {
          const std::string test = ToStr(args[1]);
          std::vector<Value> targs(args.begin() + 2, args.end());
          keep = RunTest(test, item, targs, e.line);
        }
        if (keep == (f == "selectattr")) r.push_back(x);
      }
      return Value::Of(r);
    }
    if (f == "unique") {
      json r = json::array();
      for (const json& x : Iterable(v, e.line)) {
        if (std::find(r.begin(), r.end(), x) == r.end()) r.push_back(x);
      }
      return Value::Of(r);
    }
    if (f == "sort") {
      json items = Iterable(v, e.line);
      const bool rev = Truthy(Kwarg(e, "reverse", 0, args));
      Value attr = Kwarg(e, "attribute", 99, args);
      std::vector<json> xs(items.begin(), items.end());
      auto key = [&](const json& x) {
        return attr.undefined() ? x : GetItem(Value::Of(x), attr, e.line).data();
      };
      std::stable_sort(xs.begin(), xs.end(), [&](const json& a, const json& b) {
        return rev ? key(b) < key(a) : key(a) < key(b);
      });
      return Value::Of(json(xs));
    }
    if (f == "min" || f == "max" || f == "sum") {
      json items = Iterable(v, e.line);
      if (f == "sum") {
        Value acc = Value::Of(0);
        for (const json& x : items) acc = Binary("+", acc, Value::Of(x), e.line);
        return acc;
      }
      if (items.empty()) return Value::Undefined();
      json best = items[0];
      for (const json& x : items) {
        if (f == "min" ? x < best : best < x) best = x;
      }
      return Value::Of(best);
    }
    if (f == "indent") {
      const int64_t width = args.empty() ? 4 : AsInt(args[0], e.line, "indent width");
      const bool first = Truthy(Kwarg(e, "first", 1, args));
      const bool blank = Truthy(Kwarg(e, "blank", 2, args));
      const std::string pad(static_cast<size_t>(std::clamp<int64_t>(width, 0, 256)), ' ');
      const std::string s = ToStr(v);
      std::string r;
      size_t i = 0;
      bool is_first = true;
      while (i <= s.size()) {
        size_t k = s.find('\n', i);
        if (k == std::string::npos) k = s.size();
        const std::string line = s.substr(i, k - i);
        if ((!is_first || first) && (blank || !line.empty())) r += pad;
        r += line;
        if (k < s.size()) r += '\n';
        is_first = false;
        i = k + 1;
      }
      return Value::Of(r);
    }
    if (f == "wordcount") {
      json words = json::array();
      int64_t n = 0;
      bool in = false;
      for (char c : ToStr(v)) {
        if (IsSpace(c))
          in = false;
        else if (!in)
          in = true, ++n;
      }
      return Value::Of(n);
    }
    if (f == "batch") Fail(e.line, "filter 'batch' is not implemented");
    Fail(e.line, "unknown filter " + f);
  }

  bool RunTest(const std::string& t, const Value& v, const std::vector<Value>& args, int line) {
    const json& j = v.data();
    const bool def = !v.undefined();
    if (t == "defined") return def;
    if (t == "undefined") return !def;
    if (t == "none") return def && j.is_null();
    if (t == "string") return def && j.is_string();
    if (t == "number") return def && j.is_number();
    if (t == "integer") return def && j.is_number_integer();
    if (t == "float") return def && j.is_number_float();
    if (t == "boolean") return def && j.is_boolean();
    if (t == "mapping") return v.kind == Value::Kind::kNamespace || (def && j.is_object());
    if (t == "iterable" || t == "sequence")
      return def && (j.is_array() || j.is_object() || j.is_string());
    if (t == "callable") return false;
    if (t == "true") return def && j.is_boolean() && j.get<bool>();
    if (t == "false") return def && j.is_boolean() && !j.get<bool>();
    if (t == "lower")
      return def && j.is_string() && Lower(j.get<std::string>()) == j.get<std::string>();
    if (t == "upper")
      return def && j.is_string() && Upper(j.get<std::string>()) == j.get<std::string>();
    if (t == "odd" || t == "even") {
      const int64_t n = AsInt(v, line, "odd/even test");
      return (n % 2 != 0) == (t == "odd");
    }
    if (args.empty()) Fail(line, "test '" + t + "' needs an argument");
    const Value& a = args[0];
    if (t == "equalto" || t == "eq" || t == "==") return Equal(v, a);
    if (t == "ne" || t == "!=") return !Equal(v, a);
    if (t == "sameas") return Equal(v, a) && j.type() == a.data().type();
    if (t == "divisibleby") {
      const int64_t d = AsInt(a, line, "divisibleby");
      return d != 0 && AsInt(v, line, "divisibleby") % d == 0;
    }
    if (t == "in") return Contains(a, v, line);
    if (t == "gt") return Compare(">", v, a, line);
    if (t == "ge") return Compare(">=", v, a, line);
    if (t == "lt") return Compare("<", v, a, line);
    if (t == "le") return Compare("<=", v, a, line);
    Fail(line, "unknown test " + t);
  }

  bool Test(const Expr& e) { return RunTest(e.name, Eval(*e.target), Args(e), e.line); }

  std::vector<std::map<std::string, Value>> scopes_;
  Control control_ = Control::kNone;
};

}  // namespace

Result<Template> Template::Parse(std::string_view source) {
  try {
    auto program = std::make_shared<Program>();
    Parser parser(SplitSegments(source));
    program->body = parser.ParseAll();
    return Template(std::move(program));
  } catch (const ParseError& e) {
    return InvalidArgument(e.what());
  } catch (const std::exception& e) {
    return InvalidArgument(std::string("chat template: ") + e.what());
  }
}

Result<std::string> Template::Render(const json& context) const {
  try {
    Interpreter interp(context);
    std::string out;
    interp.Run(program_->body, &out);
    return out;
  } catch (const RenderError& e) {
    return InvalidArgument(e.what());
  } catch (const std::exception& e) {
    return InvalidArgument(std::string("chat template: ") + e.what());
  }
}

}  // namespace zaya::jinja
