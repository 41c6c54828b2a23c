/** Train files: the shape, member specs through the rollout validator, and the ordering problems, all before anything starts. */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { SpecError } from '../src/spec/validate';
import { describeTrain, isTrainFile, loadTrainFile } from '../src/spec/train';

const dir = mkdtempSync(join(tmpdir(), 'rollgate-train-'));
writeFileSync(join(dir, 'app.zip'), 'zip');

function spec(service: string, over: Record<string, unknown> = {}) {
  return {
    service,
    release: 'r7',
    schema_rev: '1',
    artifact: { file: 'app.zip' },
    targets: [{ name: 'use1', provider: 'aws-lambda', region: 'us-east-1', function: `${service}-fn`, alias: 'live' }],
    canary: { targets: ['use1'], weight: 10, bake: '1 second' },
    rollback: { max_error_rate_increase_pp: 2 },
    ...over,
  };
}

function trainFile(name: string, train: Record<string, unknown>, specs: Record<string, unknown> = {}): string {
  for (const [file, s] of Object.entries(specs)) writeFileSync(join(dir, file), stringify(s));
  const path = join(dir, name);
  writeFileSync(path, stringify(train));
  return path;
}

function problemsOf(file: string): string[] {
  try {
    loadTrainFile(file);
  } catch (err) {
    if (err instanceof SpecError) return err.problems.map((p) => `${p.path}: ${p.message}`);
    throw err;
  }
  throw new Error('accepted');
}

const three = { 'orders.yaml': spec('orders'), 'checkout.yaml': spec('checkout'), 'web.yaml': spec('web') };

test('a train of paths and inline specs: members in release order, relative paths resolved', () => {
  const file = trainFile(
    'ok.yaml',
    {
      train: 'spring-sale-r7',
      services: [
        { spec: 'web.yaml', depends_on: ['checkout'] },
        { spec: 'orders.yaml' },
        { spec: spec('checkout'), depends_on: ['orders'] },
      ],
    },
    three,
  );
  expect(isTrainFile(file)).toBe(true);
  expect(isTrainFile(join(dir, 'orders.yaml'))).toBe(false);
  const t = loadTrainFile(file);
  expect(t.lockstep).toBe(false);
  expect(t.members.map((m) => [m.service, m.dependsOn])).toEqual([
    ['web', ['checkout']],
    ['orders', []],
    ['checkout', ['orders']],
  ]);
  expect(t.members.every((m) => m.spec.artifact.file === join(dir, 'app.zip'))).toBe(true);
  expect(describeTrain(t).split('\n')[0]).toBe('train spring-sale-r7: orders -> checkout -> web');
});

test('a cycle is refused, named in order', () => {
  const file = trainFile(
    'cycle.yaml',
    {
      train: 'loop',
      services: [
        { spec: 'orders.yaml', depends_on: ['checkout'] },
        { spec: 'checkout.yaml', depends_on: ['orders'] },
        { spec: 'web.yaml' },
      ],
    },
    three,
  );
  expect(problemsOf(file)).toEqual(['services: dependency cycle: orders -> checkout -> orders (each must be promoted before the next)']);
});

test('unknown and duplicate services, and problems in a member spec, name the member and the field', () => {
  const file = trainFile(
    'bad.yaml',
    { train: 'bad', services: [{ spec: 'orders.yaml' }, { spec: 'orders.yaml' }, { spec: 'web.yaml', depends_on: ['checkout'] }] },
    three,
  );
  expect(problemsOf(file)).toEqual([
    'services[1]: duplicate service "orders" (also services[0])',
    'services[2].depends_on[0]: unknown service "checkout" (the train has orders, web)',
  ]);
  const broken = trainFile(
    'broken.yaml',
    {
      train: 'broken',
      services: [
        { spec: 'orders.yaml' },
        { spec: spec('checkout', { canary: { targets: ['nope'], weight: 10, bake: '1s' } }) },
        { spec: 'missing.yaml' },
      ],
    },
    three,
  );
  const problems = problemsOf(broken);
  expect(problems[0]).toMatch(/^services\[1\] \(inline\) canary\.targets/);
  expect(problems[problems.length - 1]).toMatch(/^services\[2\] \(missing\.yaml\) \(file\): cannot read .*missing\.yaml: ENOENT/);
  expect(problemsOf(trainFile('shape.yaml', { train: 'x', services: [], extra: 1 }))).toEqual(
    expect.arrayContaining(['services: needs at least one service', "(root): Unrecognized key(s) in object: 'extra'"]),
  );
});

test('lockstep members sharing a lock are refused, naming both and the lock', () => {
  const specs = {
    'a.yaml': spec('orders', { shared_dependencies: ['payments-db'] }),
    'b.yaml': spec('checkout', { shared_dependencies: ['payments-db'] }),
  };
  const services = [{ spec: 'a.yaml' }, { spec: 'b.yaml', depends_on: ['orders'] }];
  expect(loadTrainFile(trainFile('seq.yaml', { train: 'seq', services }, specs)).members).toHaveLength(2);
  expect(problemsOf(trainFile('ls.yaml', { train: 'ls', lockstep: true, services }, specs))).toEqual([
    expect.stringMatching(/^services\[1\]: checkout and orders \(services\[0\]\) both take the shared dependency lock payments-db/),
  ]);
});
