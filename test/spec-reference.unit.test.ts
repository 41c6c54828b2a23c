/** The spec reference is generated from the schema: it cannot drift from the code. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DESCRIPTIONS, renderSpecReference, specFields } from '../src/spec/reference';

test('every schema field has a description', () => {
  const missing = specFields()
    .map((f) => f.path)
    .filter((p) => !DESCRIPTIONS[p]);
  expect(missing).toEqual([]);
});

test('every description names a field that exists', () => {
  const paths = new Set(specFields().map((f) => f.path));
  expect(Object.keys(DESCRIPTIONS).filter((p) => !paths.has(p))).toEqual([]);
});

test('docs/spec-reference.md is up to date (npm run spec-reference)', () => {
  expect(readFileSync(join(__dirname, '..', 'docs', 'spec-reference.md'), 'utf8')).toBe(renderSpecReference());
});
