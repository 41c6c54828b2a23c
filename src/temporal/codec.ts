/**
 * Optional payload encryption: an AES-256-GCM PayloadCodec. Every payload (workflow input, results,
 * activity arguments, signals, updates, queries, memo, and the user metadata the UI shows: static
 * summary/details, activity and timer summaries, current details) is serialized, encrypted with the
 * active key and stored as `binary/encrypted` with the key id in the payload metadata
 * (`encryption-key-id`). Decoding picks the key by that id, so keys can be rotated: make the new key
 * active and keep the old ones for decoding until no open workflow or retained history needs them.
 *
 * Environment (the same on the worker, the CLI and the codec server):
 * - ROLLGATE_CODEC_KEY: the active key, 32 bytes, base64 (`openssl rand -base64 32`). Unset: no codec.
 * - ROLLGATE_CODEC_KEY_ID: its id (letters, digits, `.`, `_`, `-`), stored in every payload it encrypts.
 * - ROLLGATE_CODEC_PREVIOUS_KEYS: decode-only keys, `id:base64,id:base64` (rotation).
 *
 * Search attributes and workflow ids are never encoded (the server indexes them): the service and
 * release names stay readable there by design.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { ValueError, type DataConverter, type Payload, type PayloadCodec } from '@temporalio/common';
import { temporal } from '@temporalio/proto';

export const ENCRYPTED_ENCODING = 'binary/encrypted';
export const KEY_ID_METADATA = 'encryption-key-id';
const IV_BYTES = 12;
const TAG_BYTES = 16;
const KEY_ID_RE = /^[A-Za-z0-9._-]{1,64}$/;

const utf8 = (s: string) => new TextEncoder().encode(s);
const fromUtf8 = (b: Uint8Array | null | undefined) => (b ? Buffer.from(b).toString('utf8') : undefined);

export interface CodecKey {
  id: string;
  /** 32 bytes (AES-256). */
  key: Buffer;
}

export function parseCodecKey(id: string, base64: string, what = 'ROLLGATE_CODEC_KEY'): CodecKey {
  if (!KEY_ID_RE.test(id)) throw new Error(`codec key id "${id}" is invalid: use 1-64 letters, digits, ".", "_" or "-"`);
  const key = Buffer.from(base64.trim(), 'base64');
  if (key.length !== 32)
    throw new Error(
      `${what} (key id ${id}) must be 32 bytes, base64-encoded (got ${key.length} bytes); generate one with \`openssl rand -base64 32\``,
    );
  return { id, key };
}

/** AES-256-GCM with a random 96-bit IV per payload; the key id is bound as associated data. */
export class AesGcmPayloadCodec implements PayloadCodec {
  private readonly keys = new Map<string, Buffer>();
  readonly activeKeyId: string;

  /** `keys[0]` encrypts; every key decrypts payloads that name its id. */
  constructor(keys: CodecKey[]) {
    if (keys.length === 0) throw new Error('AesGcmPayloadCodec needs at least one key');
    for (const k of keys) {
      if (k.key.length !== 32) throw new Error(`codec key ${k.id} must be 32 bytes`);
      if (this.keys.has(k.id)) throw new Error(`codec key id ${k.id} is configured twice`);
      this.keys.set(k.id, k.key);
    }
    this.activeKeyId = keys[0].id;
  }

  get keyIds(): string[] {
    return [...this.keys.keys()];
  }

  async encode(payloads: Payload[]): Promise<Payload[]> {
    const key = this.keys.get(this.activeKeyId)!;
    return payloads.map((p) => {
      const plain = temporal.api.common.v1.Payload.encode(p).finish();
      const iv = randomBytes(IV_BYTES);
      const cipher = createCipheriv('aes-256-gcm', key, iv);
      cipher.setAAD(Buffer.from(this.activeKeyId, 'utf8'));
      const body = Buffer.concat([cipher.update(plain), cipher.final()]);
      return {
        metadata: { encoding: utf8(ENCRYPTED_ENCODING), [KEY_ID_METADATA]: utf8(this.activeKeyId) },
        data: new Uint8Array(Buffer.concat([iv, body, cipher.getAuthTag()])),
      };
    });
  }

  async decode(payloads: Payload[]): Promise<Payload[]> {
    return payloads.map((p) => {
      if (fromUtf8(p.metadata?.encoding) !== ENCRYPTED_ENCODING) return p;
      const keyId = fromUtf8(p.metadata?.[KEY_ID_METADATA]);
      if (!keyId) throw new ValueError(`encrypted payload has no ${KEY_ID_METADATA} metadata`);
      const key = this.keys.get(keyId);
      if (!key)
        throw new ValueError(
          `payload was encrypted with key "${keyId}", which this process does not have (known: ${this.keyIds.join(', ')}); add it to ROLLGATE_CODEC_PREVIOUS_KEYS`,
        );
      const data = Buffer.from(p.data ?? new Uint8Array());
      if (data.length < IV_BYTES + TAG_BYTES) throw new ValueError('encrypted payload is truncated');
      const decipher = createDecipheriv('aes-256-gcm', key, data.subarray(0, IV_BYTES));
      decipher.setAAD(Buffer.from(keyId, 'utf8'));
      decipher.setAuthTag(data.subarray(data.length - TAG_BYTES));
      let plain: Buffer;
      try {
        plain = Buffer.concat([decipher.update(data.subarray(IV_BYTES, data.length - TAG_BYTES)), decipher.final()]);
      } catch {
        throw new ValueError(`encrypted payload failed authentication with key "${keyId}" (tampered, or a different key with the same id)`);
      }
      return temporal.api.common.v1.Payload.decode(plain) as Payload;
    });
  }
}

/** The codec from ROLLGATE_CODEC_KEY / ROLLGATE_CODEC_KEY_ID / ROLLGATE_CODEC_PREVIOUS_KEYS, or undefined when off. */
export function codecFromEnv(env: NodeJS.ProcessEnv = process.env): AesGcmPayloadCodec | undefined {
  const active = env.ROLLGATE_CODEC_KEY?.trim();
  if (!active) {
    if (env.ROLLGATE_CODEC_PREVIOUS_KEYS?.trim())
      throw new Error('ROLLGATE_CODEC_PREVIOUS_KEYS is set but ROLLGATE_CODEC_KEY is not: set the active key too');
    return undefined;
  }
  const id = env.ROLLGATE_CODEC_KEY_ID?.trim();
  if (!id) throw new Error('ROLLGATE_CODEC_KEY is set but ROLLGATE_CODEC_KEY_ID is not: name the key (e.g. ROLLGATE_CODEC_KEY_ID=2025-01)');
  const keys = [parseCodecKey(id, active)];
  for (const entry of (env.ROLLGATE_CODEC_PREVIOUS_KEYS ?? '').split(',')) {
    if (!entry.trim()) continue;
    const i = entry.indexOf(':');
    if (i <= 0) throw new Error('ROLLGATE_CODEC_PREVIOUS_KEYS must look like `id:base64key,id:base64key`');
    keys.push(parseCodecKey(entry.slice(0, i).trim(), entry.slice(i + 1), 'ROLLGATE_CODEC_PREVIOUS_KEYS'));
  }
  return new AesGcmPayloadCodec(keys);
}

/**
 * The data converter for the Client and the Worker (`new Client({ dataConverter })`,
 * `Worker.create({ dataConverter })`): undefined when no key is configured (plain JSON payloads).
 * With a codec, failure messages and stack traces are moved into encoded attributes too, so error
 * texts that quote spec values are encrypted as well. The workflow bundle includes the same failure
 * converter (scripts/bundle-workflows.ts), because workflow code runs in the sandbox.
 */
export function dataConverterFromEnv(env: NodeJS.ProcessEnv = process.env): DataConverter | undefined {
  const codec = codecFromEnv(env);
  if (!codec) return undefined;
  return dataConverterWithCodec(codec);
}

export function dataConverterWithCodec(codec: PayloadCodec): DataConverter {
  return { payloadCodecs: [codec], failureConverterPath: FAILURE_CONVERTER_PATH };
}

/** Module with the `failureConverter` export (encodeCommonAttributes); also bundled into workflow code. */
export const FAILURE_CONVERTER_PATH = require.resolve('./failure-converter');
