// What a TypeScript-ecosystem client pays to check vane's answers: ajv (the
// validator of the MCP TypeScript SDK, which Claude Code's SDK builds on)
// compiling each tool's output schema once and validating its answer.
// Run by `cargo bench -p vane --bench economy`; alone:
//   node ajv.mjs INPUT.json   (INPUT: [{name, published, full, answer}])
// Prints one JSON object: per tool, µs per validation against the published
// schema and against the full one, and whether both accept the answer.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(process.env.VANE_AJV_DIR + "/");
const Ajv = require("ajv").default ?? require("ajv");
const version = require("ajv/package.json").version;

const input = JSON.parse(readFileSync(process.argv[2], "utf8"));
const ajv = new Ajv({ strict: false, allErrors: false });
const out = { validator: `ajv ${version}`, tools: {} };
const N = 20000;
function time(validate, answer) {
  for (let i = 0; i < 1000; i++) validate(answer);
  const t = process.hrtime.bigint();
  for (let i = 0; i < N; i++) validate(answer);
  return Number(process.hrtime.bigint() - t) / N / 1000;
}
for (const { name, published, full, answer } of input) {
  const p = ajv.compile(published);
  const f = ajv.compile(full);
  out.tools[name] = {
    valid: p(answer) && f(answer),
    published_us: Math.round(time(p, answer) * 100) / 100,
    full_us: Math.round(time(f, answer) * 100) / 100,
  };
}
console.log(JSON.stringify(out));
