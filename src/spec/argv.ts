/**
 * Spec commands as argv arrays. A command string is split here, WITHOUT a shell: quotes ('...',
 * "...") and backslash escapes group and protect characters, and nothing is expanded. A string that
 * relies on a shell (pipes, `&&`, redirections, `$VAR`, globs, `VAR=x cmd`, builtins such as `cd`
 * or `exit`) is refused instead of being run with a different meaning: write it as an argv list, or
 * set `shell: true` to run it with `bash -c`. Pure (no I/O): the schema, `plan`, `status`, the
 * workflow's inputs and the runner share it.
 */

/** A command as the spec gives it: one string (split here) or an argv list. */
export type CommandLine = string | string[];

export type SplitResult = { ok: true; argv: string[] } | { ok: false; error: string };

/** Outside quotes these mean something to a shell (operators, grouping, expansion, globbing). */
const SHELL_OPERATORS = new Set(['|', '&', ';', '<', '>', '(', ')']);
const SHELL_EXPANSION = new Set(['$', '`', '*', '?', '[', ']', '{', '}']);

/**
 * Shell builtins and keywords with no executable of that name: as argv[0] they could only mean
 * "run this in a shell". (`true`, `false`, `test`, `echo`, `printf`, `kill` exist as programs.)
 */
export const SHELL_BUILTINS = new Set([
  '.',
  'source',
  'cd',
  'exit',
  'export',
  'unset',
  'set',
  'alias',
  'eval',
  'exec',
  'ulimit',
  'umask',
  'trap',
  'shopt',
  'pushd',
  'popd',
  'readonly',
  'declare',
  'local',
  'return',
  'shift',
  'wait',
  'if',
  'then',
  'else',
  'fi',
  'for',
  'while',
  'until',
  'do',
  'done',
  'case',
  'esac',
  'function',
  '[[',
  '{',
]);

const describe = (c: string) => (c === '\n' ? 'a newline' : `"${c}"`);

/**
 * Split a command string into argv the way a POSIX shell would tokenize words, without expanding
 * anything. Refuses what only a shell could run (see the file comment), naming the construct.
 */
export function splitCommand(command: string): SplitResult {
  const argv: string[] = [];
  let word = '';
  let inWord = false;
  let i = 0;
  const fail = (error: string): SplitResult => ({ ok: false, error });
  const atWordStart = () => !inWord;
  while (i < command.length) {
    const c = command[i];
    if (c === ' ' || c === '\t') {
      if (inWord) argv.push(word);
      word = '';
      inWord = false;
      i++;
      continue;
    }
    if (c === '\n' || c === '\r') return fail(`contains ${describe('\n')} (several commands need shell: true)`);
    if (c === '\0') return fail('contains a NUL character');
    if (c === "'") {
      const end = command.indexOf("'", i + 1);
      if (end < 0) return fail('has an unterminated single quote');
      word += command.slice(i + 1, end);
      inWord = true;
      i = end + 1;
      continue;
    }
    if (c === '"') {
      i++;
      let closed = false;
      while (i < command.length) {
        const d = command[i];
        if (d === '"') {
          closed = true;
          i++;
          break;
        }
        if (d === '\\' && i + 1 < command.length && '"\\$`'.includes(command[i + 1])) {
          word += command[i + 1];
          i += 2;
          continue;
        }
        if (d === '$' || d === '`')
          return fail(
            `uses ${describe(d)} inside double quotes, which a shell would expand (no shell runs it: write the value, or set shell: true)`,
          );
        if (d === '\0') return fail('contains a NUL character');
        word += d;
        i++;
      }
      if (!closed) return fail('has an unterminated double quote');
      inWord = true;
      continue;
    }
    if (c === '\\') {
      if (i + 1 >= command.length) return fail('ends with a backslash');
      const next = command[i + 1];
      if (next === '\n') {
        i += 2; // line continuation
        continue;
      }
      word += next;
      inWord = true;
      i += 2;
      continue;
    }
    if (SHELL_OPERATORS.has(c))
      return fail(`uses the shell operator ${describe(c)} (write an argv list of one program, or set shell: true)`);
    if (SHELL_EXPANSION.has(c)) return fail(`uses ${describe(c)}, which a shell would expand (quote it, or set shell: true)`);
    if (atWordStart() && (c === '~' || c === '#'))
      return fail(
        c === '~' ? 'starts a word with "~", which a shell would expand to a home folder (write the path)' : 'uses "#", a shell comment',
      );
    word += c;
    inWord = true;
    i++;
  }
  if (inWord) argv.push(word);
  if (argv.length === 0) return fail('is empty');
  return checkArgv(argv);
}

/** What every argv must satisfy, given as a list or split from a string. */
export function checkArgv(argv: string[]): SplitResult {
  if (argv.length === 0 || argv[0] === '') return { ok: false, error: 'needs a program to run (argv[0] is empty)' };
  if (argv.some((a) => a.includes('\0'))) return { ok: false, error: 'contains a NUL character' };
  if (/^[A-Za-z_][A-Za-z0-9_]*=/.test(argv[0]))
    return { ok: false, error: `starts with the variable assignment "${argv[0]}": declare it in env instead` };
  if (SHELL_BUILTINS.has(argv[0]))
    return { ok: false, error: `runs "${argv[0]}", a shell builtin with no program of that name: set shell: true` };
  return { ok: true, argv };
}

/**
 * The argv rollgate runs for a command: `bash -c STRING` with `shell: true`, else the list or the
 * split string. Throws on a string that cannot be split (the schema refuses those first).
 */
export function commandArgv(command: CommandLine, shell = false): string[] {
  if (shell) {
    if (typeof command !== 'string') throw new Error('shell: true needs the command as one string');
    return ['bash', '-c', command];
  }
  const res = typeof command === 'string' ? splitCommand(command) : checkArgv(command);
  if (!res.ok) throw new Error(`command ${JSON.stringify(command)} ${res.error}`);
  return res.argv;
}
