#!/usr/bin/env node
// Runs the compiled CLI (npm install/ci builds dist/ through the "prepare" script).
const { existsSync } = require('node:fs');
const { join } = require('node:path');
const entry = join(__dirname, '..', 'dist', 'cli', 'main.js');
if (!existsSync(entry)) {
  process.stderr.write('rollgate: dist/ is missing; run `npm run build` (npm ci does it for you)\n');
  process.exit(1);
}
require(entry)
  .main(process.argv.slice(2))
  .then((code) => process.exit(code));
