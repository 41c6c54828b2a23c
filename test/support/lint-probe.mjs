// Runs ESLint's Node API on probe sources for test/lint-fence.test.ts, in a child process because
// ESLint loads eslint.config.mjs with a dynamic import(), which Jest's module sandbox refuses.
//
// stdin: { fence: [{ file, code }], cycle: { [relativePath]: code }, configFor: [file] }
// stdout: { fence: [{ file, rules: [ruleId...], messages }], cycle: { [relativePath]: [ruleId...] }, configFor: { file: { rule: severity } } }
import { mkdtempSync, mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ESLint } from 'eslint';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const CONFIG = join(ROOT, 'eslint.config.mjs');
// The probes are not files of the TypeScript project: lint them without type information (the
// type-aware rule is switched off with it; every other rule, the fence included, is the real config).
const untyped = {
  languageOptions: { parserOptions: { projectService: false } },
  rules: { '@typescript-eslint/no-floating-promises': 'off' },
};

let raw = '';
for await (const chunk of process.stdin) raw += chunk;
const input = JSON.parse(raw);
const out = { fence: [], cycle: {}, configFor: {} };

// The fence: the real config, each probe linted as if it were the named file of this repo.
const repo = new ESLint({ cwd: ROOT, overrideConfigFile: CONFIG, overrideConfig: untyped });
for (const { file, code } of input.fence ?? []) {
  const [result] = await repo.lintText(code, { filePath: join(ROOT, file) });
  out.fence.push({ file, rules: result.messages.map((m) => m.ruleId), messages: result.messages.map((m) => m.message) });
}

// Cycles need real files (import-x follows imports on disk): a scratch project linted with the real config.
if (input.cycle) {
  const dir = mkdtempSync(join(tmpdir(), 'rollgate-lint-'));
  try {
    // import-x loads the TypeScript parser for followed imports from the linted file's folder.
    symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'));
    for (const [rel, code] of Object.entries(input.cycle)) {
      mkdirSync(dirname(join(dir, rel)), { recursive: true });
      writeFileSync(join(dir, rel), code);
    }
    const scratch = new ESLint({ cwd: dir, overrideConfigFile: CONFIG, overrideConfig: untyped });
    for (const result of await scratch.lintFiles(Object.keys(input.cycle))) {
      out.cycle[result.filePath.slice(dir.length + 1)] = result.messages.map((m) => m.ruleId);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// Which rules the real config (with type information) turns on for real files.
const typed = new ESLint({ cwd: ROOT });
for (const file of input.configFor ?? []) {
  const config = await typed.calculateConfigForFile(join(ROOT, file));
  out.configFor[file] = Object.fromEntries(Object.entries(config.rules ?? {}).map(([rule, value]) => [rule, [value].flat()[0]]));
}

process.stdout.write(JSON.stringify(out));
