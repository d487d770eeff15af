// Validates an OpenAPI document with @readme/openapi-parser (npm: the
// OpenAPI 3.0/3.1 JSON Schemas plus reference checks).
// Usage: node openapi-validate.cjs <node_modules dir> <document.json>
// Exit 0 when valid, 1 with the errors printed.
const { createRequire } = require('module');
const path = require('path');
const fs = require('fs');
const [, , modules, file] = process.argv;
const load = createRequire(path.join(path.resolve(modules), 'noop.js'));
const parser = load('@readme/openapi-parser');
const doc = JSON.parse(fs.readFileSync(file, 'utf8'));
parser
  .validate(doc)
  .then(() => { console.log('valid'); process.exit(0); })
  .catch((e) => { console.log(e.message || String(e)); process.exit(1); });
