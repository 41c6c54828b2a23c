// ESLint flat config: typescript-eslint with type information (for no-floating-promises), and a
// determinism fence around src/workflows (no Node built-ins, no I/O, no cloud SDKs, activities by type only).
import tseslint from 'typescript-eslint';

const nodeBuiltins = [
  'fs',
  'path',
  'os',
  'http',
  'https',
  'net',
  'child_process',
  'crypto',
  'zlib',
  'stream',
  'url',
  'util',
  'dns',
  'tls',
  'worker_threads',
  'timers',
  'process',
];

export default tseslint.config(
  {
    ignores: [
      'dist/**',
      'node_modules/**',
      '.state/**',
      '.venv/**',
      'coverage/**',
      'test-artifacts/**',
      'bin/**',
      '*.config.js',
      '*.config.mjs',
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
    files: ['src/workflows/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: nodeBuiltins.map((name) => ({
            name,
            message: 'workflow code must be deterministic: no Node built-ins (do I/O in an activity)',
          })),
          patterns: [
            { group: ['node:*'], message: 'workflow code must be deterministic: no Node built-ins (do I/O in an activity)' },
            {
              group: ['@aws-sdk/*', '@google-cloud/*', 'google-gax', '@grpc/*'],
              message: 'no cloud SDKs in workflow code: call an activity',
            },
            {
              group: ['../providers/*', '!../providers/types'],
              allowTypeImports: true,
              message: 'providers do I/O: import their types only',
            },
            {
              group: ['../activities', '../activities/*', '../analysis/cloudwatch', '../spec/validate', '../dev/*'],
              allowTypeImports: true,
              message: 'activities run outside the sandbox: import them with `import type`',
            },
          ],
        },
      ],
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
