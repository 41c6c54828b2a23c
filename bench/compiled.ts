/**
 * The benchmarks' worker process runs compiled JavaScript, as a production worker does (the image
 * runs `node dist/worker.js`; `rollgate worker` runs dist/ too): under tsx every module is
 * transpiled at load and every require goes through its loader, which doubled the worker's module
 * loading (docs/DEVELOPMENT.md, "Worker start"). bench/worker-process.ts and the project modules it
 * reaches (and the workflows, for a start without a prebuilt bundle) are compiled once per run, file
 * by file with TypeScript's own emitter and the project's compiler options, into .state/bench/js
 * (inside the repository, so that node_modules resolves as it does for dist/).
 */
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import ts from 'typescript';

/** Compile `entry` (and `extraRoots`) and every relative import they reach into `outDir`; returns the entry's .js path. */
export function compileForNode(root: string, entry: string, outDir: string, extraRoots: string[] = []): string {
  const config = ts.getParsedCommandLineOfConfigFile(
    join(root, 'tsconfig.json'),
    {},
    {
      ...ts.sys,
      onUnRecoverableConfigFileDiagnostic: (d) => {
        throw new Error(ts.flattenDiagnosticMessageText(d.messageText, '\n'));
      },
    },
  )!;
  const compilerOptions = { ...config.options, sourceMap: false, inlineSourceMap: false, declaration: false };
  rmSync(outDir, { recursive: true, force: true });
  const seen = new Set<string>();
  const queue = [entry, ...extraRoots].map((f) => resolve(root, f));
  while (queue.length) {
    const file = queue.pop()!;
    if (seen.has(file)) continue;
    seen.add(file);
    const source = readFileSync(file, 'utf8');
    // Static imports, re-exports, import(), require() and require.resolve() of a relative specifier
    // (the worker resolves its workflows and the failure converter by path).
    const specifiers = [
      ...ts.preProcessFile(source, true, true).importedFiles.map((f) => f.fileName),
      ...[...source.matchAll(/require\.resolve\(\s*['"]([^'"]+)['"]/g)].map((m) => m[1]),
    ];
    for (const specifier of specifiers) {
      if (!specifier.startsWith('.')) continue;
      const target = resolveTs(resolve(dirname(file), specifier));
      if (target) queue.push(target);
    }
    const { outputText } = ts.transpileModule(source, { compilerOptions, fileName: file });
    const out = join(outDir, relative(root, file)).replace(/\.ts$/, '.js');
    mkdirSync(dirname(out), { recursive: true });
    writeFileSync(out, outputText);
  }
  return join(outDir, relative(root, resolve(root, entry))).replace(/\.ts$/, '.js');
}

function resolveTs(base: string): string | undefined {
  return [`${base}.ts`, join(base, 'index.ts')].find((f) => existsSync(f));
}
