// Validates an AsyncAPI document with the AsyncAPI Initiative's own parser
// (@asyncapi/parser from npm: the 3.0 JSON Schema plus its semantic rules).
// Usage: node asyncapi-validate.cjs <node_modules dir> <document>
// Exit 0 when valid; every diagnostic is printed.
const { createRequire } = require('module');
const path = require('path');
const fs = require('fs');
const [, , modules, file] = process.argv;
const load = createRequire(path.join(path.resolve(modules), 'noop.js'));
const { Parser } = load('@asyncapi/parser');
(async () => {
  const parser = new Parser();
  const { document, diagnostics } = await parser.parse(fs.readFileSync(file, 'utf8'));
  const names = ['error', 'warning', 'info', 'hint'];
  for (const d of diagnostics) {
    console.log(`${names[d.severity]} ${d.code} ${d.path.join('.')}: ${d.message}`);
  }
  const errors = diagnostics.filter((d) => d.severity === 0);
  process.exit(document && errors.length === 0 ? 0 : 1);
})().catch((e) => { console.error(e); process.exit(2); });
