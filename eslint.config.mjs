// ESLint flat config: typescript-eslint with type information (for no-floating-promises), no import
// cycles anywhere, and a determinism fence around src/workflows that works by allow-list: workflow
// code may import (as values) only the workflow SDK, other workflow files and a short list of pure
// helpers; anything else only with `import type` (erased at compile time, never in the bundle).
import { dirname, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import tseslint from 'typescript-eslint';
import importX, { createNodeResolver } from 'eslint-plugin-import-x';

const ROOT = dirname(fileURLToPath(import.meta.url));

/** Packages workflow code may import as values: they run inside the workflow sandbox. */
const WORKFLOW_PACKAGES = ['@temporalio/workflow', '@temporalio/common'];
/**
 * Pure modules outside src/workflows that workflow code may import as values. Each must stay free
 * of I/O, clocks and randomness; they are fenced by the same rule, so their own value imports are
 * limited to this list too. Add a file here only after reading it.
 */
const WORKFLOW_HELPERS = [
  'src/spec/duration.ts', // duration parsing/formatting
  'src/spec/commands.ts', // build/command activity inputs from the spec
  'src/analysis/threshold-judge.ts', // combineVerdicts
  'src/observability/workflow-sink.ts', // the rolloutMetrics sink (no history, skipped on replay)
  'src/observability/events.ts', // the sink's event types
];
const WORKFLOW_DIR = 'src/workflows/';
/** The contract (messages, ids, task queues, status and verdict types, search attributes): shared by workflow and clients, pure by rule. */
const CONTRACT_DIR = 'src/contract/';

/** Project-relative path of the module a relative specifier names, or undefined for a package. */
function resolveRelative(fromFile, specifier) {
  if (!specifier.startsWith('.')) return undefined;
  return relative(ROOT, resolve(dirname(fromFile), specifier))
    .split('\\')
    .join('/');
}

function allowedValueImport(fromFile, specifier) {
  const target = resolveRelative(fromFile, specifier);
  if (target === undefined) return WORKFLOW_PACKAGES.includes(specifier);
  const file = target.replace(/\.(js|ts)$/, '');
  return (
    `${file}/`.startsWith(WORKFLOW_DIR) ||
    `${file}/`.startsWith(CONTRACT_DIR) ||
    WORKFLOW_HELPERS.includes(`${file}.ts`) ||
    WORKFLOW_HELPERS.includes(`${file}/index.ts`)
  );
}

const typeOnly = (node, kindKey) =>
  node[kindKey] === 'type' || (node.specifiers?.length > 0 && node.specifiers.every((s) => s[kindKey] === 'type'));

const workflowImportsRule = {
  meta: {
    type: 'problem',
    docs: { description: 'workflow code imports values only from the workflow SDK, workflow files and listed pure helpers' },
    schema: [],
    messages: {
      forbidden:
        "workflow code must be deterministic: '{{source}}' is not on the workflow allow-list (eslint.config.mjs). " +
        'Use `import type` for its types; do I/O in an activity.',
      dynamic: 'workflow code may not load modules at run time ({{how}}): import statically from the allow-list',
    },
  },
  create(context) {
    const file = context.filename;
    const check = (node, source) => {
      if (!allowedValueImport(file, source.value)) context.report({ node: source, messageId: 'forbidden', data: { source: source.value } });
    };
    return {
      ImportDeclaration(node) {
        if (!typeOnly(node, 'importKind')) check(node, node.source);
      },
      ExportNamedDeclaration(node) {
        if (node.source && !typeOnly(node, 'exportKind')) check(node, node.source);
      },
      ExportAllDeclaration(node) {
        if (node.exportKind !== 'type') check(node, node.source);
      },
      TSImportEqualsDeclaration(node) {
        if (node.importKind !== 'type' && node.moduleReference.type === 'TSExternalModuleReference')
          check(node, node.moduleReference.expression);
      },
      ImportExpression(node) {
        context.report({ node, messageId: 'dynamic', data: { how: 'import()' } });
      },
      'CallExpression[callee.type="Identifier"][callee.name="require"]'(node) {
        context.report({ node, messageId: 'dynamic', data: { how: 'require()' } });
      },
    };
  },
};

export default tseslint.config(
  {
    ignores: [
      'dist/**',
      'node_modules/**',
      '.state/**',
      '.venv/**',
      '.runtimes/**',
      'coverage/**',
      'test-artifacts/**',
      'bin/**',
      '*.config.js',
      '*.config.mjs',
      'test/support/*.mjs',
    ],
  },
  ...tseslint.configs.recommended,
  {
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-explicit-any': 'off',
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', destructuredArrayIgnorePattern: '^_' },
      ],
      '@typescript-eslint/no-non-null-assertion': 'off',
    },
  },
  {
    // No import cycles (value imports; `import type` is erased and cannot cycle at run time).
    name: 'rollgate/import-cycles',
    files: ['**/*.ts'],
    plugins: { 'import-x': importX },
    settings: {
      // import-x parses only these extensions when it follows an import (without them it sees no .ts
      // dependencies at all and no-cycle silently passes).
      'import-x/extensions': ['.ts', '.js'],
      'import-x/parsers': { '@typescript-eslint/parser': ['.ts'] },
      'import-x/resolver-next': [createNodeResolver({ extensions: ['.ts', '.js', '.json', '.node'] })],
    },
    rules: { 'import-x/no-cycle': 'error' },
  },
  {
    name: 'rollgate/workflow-fence',
    files: ['src/workflows/**/*.ts', `${CONTRACT_DIR}**/*.ts`, ...WORKFLOW_HELPERS],
    plugins: { rollgate: { rules: { 'workflow-imports': workflowImportsRule } } },
    rules: {
      'rollgate/workflow-imports': 'error',
      'no-restricted-globals': [
        'error',
        { name: 'setTimeout', message: 'use sleep() from @temporalio/workflow' },
        { name: 'setInterval', message: 'use sleep()/condition() from @temporalio/workflow' },
        { name: 'fetch', message: 'no I/O in workflow code: call an activity' },
        { name: 'process', message: 'no process access in workflow code' },
      ],
      'no-restricted-properties': [
        'error',
        { object: 'Math', property: 'random', message: 'use uuid4() or the sandbox-seeded Math.random consciously; prefer workflow APIs' },
      ],
    },
  },
);
