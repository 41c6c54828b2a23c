/**
 * Contract helpers for the Cloud Run Admin API v2 fixtures (test/fixtures/cloud-run-v2): a proto3
 * JSON view of what the gRPC client received, a validator of JSON against the shipped protos, and
 * the `_required` / `_formats` checks a fixture declares. The protos are the ones
 * `@google-cloud/run` ships (build/protos/protos.json), loaded with protobufjs on their own, so a
 * check never goes through the fake's code.
 */
import * as protobuf from 'protobufjs';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const RUN_PROTOS = require('@google-cloud/run/build/protos/protos.json');

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type Obj = Record<string, any>;

export const root = protobuf.Root.fromJSON(RUN_PROTOS);
root.resolveAll();

const LONGS = new Set(['int64', 'uint64', 'sint64', 'fixed64', 'sfixed64']);
const INTS = new Set(['int32', 'uint32', 'sint32', 'fixed32', 'sfixed32']);
const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/;
const DURATION = /^-?\d+(\.\d{1,9})?s$/;

const typeOfUrl = (url: string) => root.lookupType(url.slice(url.lastIndexOf('/') + 1));

function rfc3339(seconds: unknown, nanos: unknown): string {
  const ms = Number(seconds ?? 0) * 1000 + Math.floor(Number(nanos ?? 0) / 1e6);
  return new Date(ms).toISOString();
}

function duration(seconds: unknown, nanos: unknown): string {
  const n = Number(nanos ?? 0);
  return n ? `${String(seconds ?? 0)}.${String(n).padStart(9, '0').replace(/0+$/, '')}s` : `${String(seconds ?? 0)}s`;
}

/**
 * What the REST API would return for `obj` (as the gRPC client decoded it): the message is
 * re-encoded, so fields at their proto3 default are absent, as in proto3 JSON; Timestamp and
 * Duration become strings, int64 strings, enums names, Any `{"@type", ...fields}`.
 */
export function toProto3Json(obj: Obj, typeName: string): Json {
  const T = root.lookupType(typeName);
  const msg = T.decode(T.encode(T.fromObject(obj)).finish());
  return messageJson(msg as unknown as Obj, T);
}

function messageJson(msg: Obj, T: protobuf.Type): Json {
  switch (T.fullName) {
    case '.google.protobuf.Timestamp':
      return rfc3339(msg.seconds, msg.nanos);
    case '.google.protobuf.Duration':
      return duration(msg.seconds, msg.nanos);
    case '.google.protobuf.Any': {
      const url = String(msg.type_url ?? '');
      if (!url) return {}; // no type: a REST client could not read the value at all
      const inner = typeOfUrl(url);
      return { '@type': url, ...(messageJson(inner.decode(msg.value) as unknown as Obj, inner) as Obj) };
    }
  }
  const out: Record<string, Json> = {};
  for (const f of T.fieldsArray) {
    const v = msg[f.name];
    if (f.map) {
      if (v && Object.keys(v).length) out[f.name] = Object.fromEntries(Object.entries(v).map(([k, x]) => [k, valueJson(f, x)]));
    } else if (f.repeated) {
      if (Array.isArray(v) && v.length) out[f.name] = v.map((x) => valueJson(f, x));
    } else if (Object.prototype.hasOwnProperty.call(msg, f.name) && v != null) out[f.name] = valueJson(f, v);
  }
  return out;
}

function valueJson(f: protobuf.Field, v: any): Json {
  if (f.resolvedType instanceof protobuf.Enum) return f.resolvedType.valuesById[v] ?? v;
  if (f.resolvedType instanceof protobuf.Type) return messageJson(v, f.resolvedType);
  if (LONGS.has(f.type)) return String(v);
  if (f.type === 'bytes') return Buffer.from(v).toString('base64');
  return v;
}

/** Problems of `json` as proto3 JSON of `typeName`: unknown keys, wrong JSON kinds, bad enums/timestamps. */
export function validateJson(json: unknown, typeName: string, path = ''): string[] {
  return validateMessage(json, root.lookupType(typeName), path);
}

function validateMessage(json: unknown, T: protobuf.Type, path: string): string[] {
  const at = path || '(root)';
  switch (T.fullName) {
    case '.google.protobuf.Timestamp':
      return typeof json === 'string' && RFC3339.test(json)
        ? []
        : [`${at}: Timestamp must be an RFC 3339 string, got ${JSON.stringify(json)}`];
    case '.google.protobuf.Duration':
      return typeof json === 'string' && DURATION.test(json)
        ? []
        : [`${at}: Duration must be a string like "300s", got ${JSON.stringify(json)}`];
    case '.google.protobuf.FieldMask':
      return typeof json === 'string' ? [] : [`${at}: FieldMask must be a string`];
  }
  if (!json || typeof json !== 'object' || Array.isArray(json))
    return [`${at}: ${T.name} must be a JSON object, got ${JSON.stringify(json)}`];
  const obj = json as Obj;
  if (T.fullName === '.google.protobuf.Any') {
    const url = obj['@type'];
    if (typeof url !== 'string' || !/^type\.googleapis\.com\/[\w.]+$/.test(url))
      return [`${at}.@type: Any needs "@type": "type.googleapis.com/TYPE"`];
    const { '@type': _t, ...rest } = obj;
    return validateMessage(rest, typeOfUrl(url), path);
  }
  const errors: string[] = [];
  const seenOneof = new Map<string, string>();
  for (const [key, value] of Object.entries(obj)) {
    if (key.startsWith('_')) continue; // fixture metadata (_source, _required, ...), never a proto field
    const p = path ? `${path}.${key}` : key;
    const f = T.fields[key];
    if (!f) {
      errors.push(`${p}: unknown key: ${T.name} has no field "${key}"`);
      continue;
    }
    const oneof = f.partOf && !f.partOf.name.startsWith('_') ? f.partOf.name : undefined;
    if (oneof) {
      if (seenOneof.has(oneof)) errors.push(`${p}: oneof ${oneof} already set by ${seenOneof.get(oneof)}`);
      seenOneof.set(oneof, key);
    }
    if (f.map) {
      if (!value || typeof value !== 'object' || Array.isArray(value)) errors.push(`${p}: map must be a JSON object`);
      else for (const [k, x] of Object.entries(value)) errors.push(...validateValue(f, x, `${p}.${k}`));
    } else if (f.repeated) {
      if (!Array.isArray(value)) errors.push(`${p}: repeated field must be a JSON array`);
      else value.forEach((x, i) => errors.push(...validateValue(f, x, `${p}[${i}]`)));
    } else errors.push(...validateValue(f, value, p));
  }
  return errors;
}

function validateValue(f: protobuf.Field, v: unknown, p: string): string[] {
  const bad = (want: string) => [`${p}: ${f.type} must be ${want} in JSON, got ${JSON.stringify(v)}`];
  if (f.resolvedType instanceof protobuf.Enum) {
    const names = Object.keys(f.resolvedType.values);
    return typeof v === 'string' && names.includes(v) ? [] : bad(`one of ${names.join(', ')}`);
  }
  if (f.resolvedType instanceof protobuf.Type) return validateMessage(v, f.resolvedType, p);
  if (LONGS.has(f.type)) return typeof v === 'string' && /^-?\d+$/.test(v) ? [] : bad('a decimal string');
  if (INTS.has(f.type)) return typeof v === 'number' && Number.isInteger(v) ? [] : bad('an integer number');
  if (f.type === 'double' || f.type === 'float') return typeof v === 'number' ? [] : bad('a number');
  if (f.type === 'bool') return typeof v === 'boolean' ? [] : bad('a boolean');
  if (f.type === 'bytes') return typeof v === 'string' && /^[A-Za-z0-9+/=_-]*$/.test(v) ? [] : bad('a base64 string');
  return typeof v === 'string' ? [] : bad('a string');
}

/** Values at `path` ("a.b", "a[].b", "metadata.@type"); `undefined` marks a missing step. */
export function valuesAt(json: unknown, path: string): unknown[] {
  let current: unknown[] = [json];
  for (const step of path.split('.')) {
    const each = step.endsWith('[]');
    const key = each ? step.slice(0, -2) : step;
    const next: unknown[] = [];
    for (const c of current) {
      const v = c && typeof c === 'object' ? (c as Obj)[key] : undefined;
      if (!each) next.push(v);
      else if (Array.isArray(v) && v.length) next.push(...v);
      else next.push(undefined);
    }
    current = next;
  }
  return current;
}

const kind = (v: unknown) => (Array.isArray(v) ? 'array' : v === null ? 'null' : typeof v);

export interface ContractFixture {
  _type: string;
  _required?: string[];
  _formats?: Record<string, string>;
  [k: string]: unknown;
}

/**
 * Problems of `json` against `fixture`: proto validity, every `_required` path present with the
 * fixture's JSON kind, every `_formats` path (where present) matching its regex.
 */
export function contractProblems(json: unknown, fixture: ContractFixture): string[] {
  const errors = validateJson(json, fixture._type);
  for (const path of fixture._required ?? []) {
    const want = kind(valuesAt(fixture, path)[0]);
    for (const v of valuesAt(json, path)) {
      if (v === undefined) errors.push(`${path}: required but absent`);
      else if (kind(v) !== want) errors.push(`${path}: must be a JSON ${want}, got ${JSON.stringify(v)}`);
    }
  }
  for (const [path, re] of Object.entries(fixture._formats ?? {})) {
    const rx = new RegExp(re);
    for (const v of valuesAt(json, path))
      if (v !== undefined && !(typeof v === 'string' && rx.test(v))) errors.push(`${path}: ${JSON.stringify(v)} does not match /${re}/`);
  }
  return errors;
}
