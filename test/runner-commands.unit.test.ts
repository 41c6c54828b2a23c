/** Commands without a shell: the argv splitter, the spec rules, the command environment, bounded output. */
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkArgv, commandArgv, splitCommand } from '../src/spec/argv';
import { commandEnvironment, parseEnvAllow, runCommand, TAIL, FAILURE_TAIL } from '../src/activities/commands';
import { createRunnerActivities } from '../src/activities';
import { SpecError, validateSpec } from '../src/spec/validate';
import { planRollout } from '../src/spec/plan';
import { formatStatus } from '../src/cli/format';
import { stageCommandInput } from '../src/spec/commands';

const argv = (s: string) => {
  const r = splitCommand(s);
  if (!r.ok) throw new Error(r.error);
  return r.argv;
};
const refusal = (s: string) => {
  const r = splitCommand(s);
  return r.ok ? undefined : r.error;
};

describe('splitCommand: words like a shell, nothing expanded', () => {
  test.each([
    ['npm run package', ['npm', 'run', 'package']],
    ['  npm   test  ', ['npm', 'test']],
    ["node -e 'console.log(1 + 2)'", ['node', '-e', 'console.log(1 + 2)']],
    ['echo "a  b" c', ['echo', 'a  b', 'c']],
    ['echo "say \\"hi\\""', ['echo', 'say "hi"']],
    ["echo 'single $HOME `x` *'", ['echo', 'single $HOME `x` *']],
    ['echo a\\ b', ['echo', 'a b']],
    ['echo \\$HOME \\*', ['echo', '$HOME', '*']],
    ['make \'x\'"y"z', ['make', 'xyz']],
    ['printf ""', ['printf', '']],
    ['npm test -- --grep=a#b', ['npm', 'test', '--', '--grep=a#b']],
    ['echo a \\\n b', ['echo', 'a', 'b']],
  ])('%s', (s, want) => expect(argv(s)).toEqual(want));

  test.each([
    ['npm test && npm run lint', /shell operator "&"/],
    ['cat a | grep b', /shell operator "\|"/],
    ['echo x > out', /shell operator ">"/],
    ['a; b', /shell operator ";"/],
    ['echo $HOME', /"\$", which a shell would expand/],
    ['echo "$HOME"', /"\$" inside double quotes/],
    ['echo `id`', /"`"/],
    ['rm *.zip', /"\*"/],
    ['ls ~/x', /"~"/],
    ['echo hi # comment', /comment/],
    ["echo 'open", /unterminated single quote/],
    ['echo "open', /unterminated double quote/],
    ['echo a\nb', /newline/],
    ['FOO=1 npm test', /variable assignment "FOO=1": declare it in env/],
    ['cd sub', /"cd", a shell builtin/],
    ['exit 1', /"exit", a shell builtin/],
    ['   ', /empty/],
  ])('refuses %j', (s, why) => expect(refusal(s)).toMatch(why));

  test('argv lists are taken as they are (no splitting, no quoting), within the same rules for argv[0]', () => {
    expect(commandArgv(['echo', '$HOME && *'])).toEqual(['echo', '$HOME && *']);
    expect(checkArgv(['']).ok).toBe(false);
    expect(checkArgv(['source', 'env.sh']).ok).toBe(false);
    expect(commandArgv('echo "$X" > f', true)).toEqual(['bash', '-c', 'echo "$X" > f']);
    expect(() => commandArgv(['a', 'b'], true)).toThrow(/shell: true needs the command as one string/);
  });
});

describe('the spec: argv lists, split strings, explicit shell, declared env', () => {
  const base = {
    service: 'svc',
    release: 'r1',
    schema_rev: 3,
    targets: [{ name: 'use1', provider: 'aws-lambda', region: 'us-east-1', function: 'fn', alias: 'live' }],
    canary: { targets: ['use1'], weight: 10, bake: '1 second' },
  };
  const problems = (over: Record<string, unknown>) => {
    try {
      validateSpec({ ...base, ...over });
      return [];
    } catch (err) {
      return (err as SpecError).problems.map((p) => `${p.path}: ${p.message}`);
    }
  };

  test('old string specs still validate; shell syntax without shell: true is refused with the field', () => {
    expect(problems({ artifact: { build: { command: 'npm run package', output: 'dist/fn.zip' } }, test: { command: 'npm test' } })).toEqual(
      [],
    );
    expect(problems({ artifact: { file: 'a.zip' }, test: { command: 'npm test && npm run lint' } })).toEqual([
      'test.command: uses the shell operator "&" (write an argv list of one program, or set shell: true)',
    ]);
    expect(problems({ artifact: { file: 'a.zip' }, migration: { command: ['migrate', 'up'], current_command: 'echo $REV' } })).toEqual([
      'migration.current_command: uses "$", which a shell would expand (quote it, or set shell: true)',
    ]);
    expect(problems({ artifact: { file: 'a.zip' }, test: { command: 'npm test && npm run lint', shell: true } })).toEqual([]);
    expect(problems({ artifact: { file: 'a.zip' }, test: { command: ['npm', 'test'], shell: true } })).toEqual([
      'test.command: shell: true runs one command string with bash -c: give the command as a string',
    ]);
    expect(problems({ artifact: { file: 'a.zip' }, test: { command: 42 } })).toEqual([
      'test.command: must be a command string or an argv list of strings',
    ]);
    expect(problems({ artifact: { file: 'a.zip' }, test: { command: ['npm', 7] } })).toEqual([
      'test.command: must be a command string or an argv list of strings',
    ]);
    expect(problems({ artifact: { file: 'a.zip' }, test: { command: '' } })).toEqual(['test.command: must not be empty']);
  });

  test('env: names only, never the reserved ones; values become strings', () => {
    expect(
      problems({ artifact: { file: 'a.zip' }, test: { command: 'npm test', env: { RELEASE_ID: 'x', PATH: '/evil', 'A-B': '1' } } }),
    ).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^test\.env\.RELEASE_ID: .*set by rollgate/),
        expect.stringMatching(/^test\.env\.PATH: .*set by rollgate/),
        expect.stringMatching(/^test\.env\.A-B: .*not a variable name/),
      ]),
    );
    const spec = validateSpec({ ...base, artifact: { file: 'a.zip' }, test: { command: 'npm test', env: { WORKERS: 4, CI: true } } });
    expect(spec.test!.env).toEqual({ WORKERS: '4', CI: 'true' });
  });

  test('plan shows argv exactly and whether a shell runs it', () => {
    const spec = validateSpec({
      ...base,
      artifact: { build: { command: "zip -r 'dist/fn.zip' src", output: 'dist/fn.zip' } },
      test: { command: 'npm test && npm run lint', shell: true },
    });
    const plan = planRollout(spec);
    expect(plan.steps[0].action).toBe('run argv ["zip","-r","dist/fn.zip","src"] (no shell) on the runner, record sha256 of dist/fn.zip');
    expect(plan.steps[1].action).toBe('run shell: bash -c "npm test && npm run lint" on the runner');
    expect(plan.steps[1].commands).toEqual([
      { field: 'test.command', argv: ['bash', '-c', 'npm test && npm run lint'], shell: true, env: [] },
    ]);
    // status shows the same, from the spec the rollout runs
    const text = formatStatus({
      id: 'rollout-svc',
      service: 'svc',
      release: 'r1',
      state: 'running',
      stage: 'build',
      detail: '',
      startedBy: 'c',
      targets: [],
      approvals: [],
      history: [],
      spec,
      startedAtMs: 0,
    });
    expect(text).toContain(
      '  commands (on the runner):\n    artifact.build.command: argv ["zip","-r","dist/fn.zip","src"] (no shell)\n    test.command: shell: bash -c "npm test && npm run lint"',
    );
  });
});

describe('the command environment', () => {
  const runnerEnv = {
    PATH: '/usr/bin:/bin',
    HOME: '/home/runner',
    AWS_SECRET_ACCESS_KEY: 'aws-secret',
    TEMPORAL_API_KEY: 'temporal-secret',
    ROLLGATE_CODEC_KEY: 'codec-secret',
    NPM_TOKEN: 'npm-token',
  };

  test('exactly PATH, HOME, the allow-list and what the spec declares', () => {
    expect(
      commandEnvironment({ runnerEnv, allow: parseEnvAllow(' NPM_TOKEN, ,MISSING '), declared: { RELEASE_ID: 'r1', CI: '1' } }),
    ).toEqual({
      PATH: '/usr/bin:/bin',
      HOME: '/home/runner',
      NPM_TOKEN: 'npm-token',
      RELEASE_ID: 'r1',
      CI: '1',
    });
    // PATH and HOME are the runner's even if an input names them.
    expect(commandEnvironment({ runnerEnv, declared: { PATH: '/tmp/evil', HOME: '/tmp' } })).toEqual({
      PATH: '/usr/bin:/bin',
      HOME: '/home/runner',
    });
  });

  test('a real command sees nothing else of the runner (the old runShell passed process.env)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'rollgate-env-'));
    const out = join(dir, 'env.json');
    process.env.ROLLGATE_TEST_LEAK_CANARY = 'must-not-leak';
    try {
      const acts = createRunnerActivities({
        stateDir: dir,
        envAllow: ['NPM_TOKEN'],
        env: { ...process.env, NPM_TOKEN: 'npm-token', AWS_SECRET_ACCESS_KEY: 'runner-aws-secret' },
      });
      const spec = validateSpec({
        service: 'svc',
        release: 'r9',
        schema_rev: 5,
        artifact: { file: 'a.zip' },
        test: {
          command: ['node', '-e', 'require("fs").writeFileSync(process.argv[1], JSON.stringify(process.env))', out],
          env: { CI: '1' },
        },
        targets: [{ name: 'use1', provider: 'aws-lambda', region: 'us-east-1', function: 'fn', alias: 'live' }],
        canary: { targets: ['use1'], weight: 10, bake: '1 second' },
      });
      await acts.runStageCommand(stageCommandInput(spec, 'test'));
      const seen = JSON.parse(readFileSync(out, 'utf8')) as Record<string, string>;
      expect(Object.keys(seen).sort()).toEqual(['CI', 'HOME', 'NPM_TOKEN', 'PATH', 'RELEASE_ID', 'SCHEMA_REV'].sort());
      expect(seen).toMatchObject({ CI: '1', NPM_TOKEN: 'npm-token', RELEASE_ID: 'r9', SCHEMA_REV: '5' });
      expect(JSON.stringify(seen)).not.toContain('must-not-leak');
      expect(JSON.stringify(seen)).not.toContain('runner-aws-secret'); // the runner's own cloud credentials
    } finally {
      delete process.env.ROLLGATE_TEST_LEAK_CANARY;
    }
  });

  test('no shell runs a split string: "$X" and ">" reach the program as text', async () => {
    const res = await runCommand(['printf', '%s|', '$HOME', '>', 'x'], undefined, commandEnvironment({ runnerEnv: process.env }));
    expect(res).toMatchObject({ exitCode: 0, tail: '$HOME|>|x|' });
  });
});

describe('bounded output', () => {
  test('a command printing megabytes leaves a bounded tail and a bounded failure message', async () => {
    const acts = createRunnerActivities({ stateDir: mkdtempSync(join(tmpdir(), 'rollgate-tail-')) });
    const err = await acts
      .runStageCommand({
        stage: 'test',
        command: [
          'node',
          '-e',
          'for (let i = 0; i < 20000; i++) console.log("line " + i + " " + "x".repeat(200)); console.log("LAST"); process.exitCode = 3',
        ],
      })
      .catch((e: Error) => e);
    expect(err).toBeInstanceOf(Error);
    const msg = (err as Error).message;
    expect(msg).toMatch(/^test command exited 3: …/);
    expect(msg).toMatch(/LAST$/);
    expect(msg.length).toBeLessThanOrEqual('test command exited 3: …'.length + FAILURE_TAIL);
    const ok = await runCommand(['node', '-e', 'process.stdout.write("y".repeat(5_000_000))'], undefined, { PATH: process.env.PATH! });
    expect(ok.tail.length).toBe(TAIL);
  });

  test('a missing program is a clear, non-retryable failure', async () => {
    const acts = createRunnerActivities({ stateDir: mkdtempSync(join(tmpdir(), 'rollgate-nf-')) });
    await expect(acts.runStageCommand({ stage: 'test', command: 'no-such-program-xyz --flag' })).rejects.toThrow(
      /test command: program "no-such-program-xyz" not found \(PATH=/,
    );
  });
});
