#!/usr/bin/env node
'use strict';
// The `edm` operator CLI. The TypeScript source is scripts/edm.ts; this shim runs its build.
const { existsSync } = require('node:fs');
const { join } = require('node:path');

const entry = join(__dirname, '..', 'dist', 'scripts', 'edm.js');
if (!existsSync(entry)) {
  process.stderr.write(`edm: ${entry} is missing: run npm run build (or npm start) first\n`);
  process.exit(1);
}
require(entry);
