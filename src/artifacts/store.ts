/**
 * The shared, content-addressed artifact store: the runner puts each built or prebuilt zip there
 * under its sha256, and any worker reads it back by its location, so the worker that deploys need
 * not be the machine that built.
 *
 * - `s3://BUCKET/PREFIX` (ROLLGATE_ARTIFACT_STORE): objects `PREFIX/<sha256>.zip`. Endpoint from
 *   AWS_ENDPOINT_URL_S3 (moto in tests), credentials from the standard chain, the bucket's region
 *   from `?region=` in the URL, else AWS_REGION (Lambda reads S3 code only from its own region: a
 *   target in another region is deployed from a verified local copy instead).
 * - `file://DIR` (the single-machine default, `file://$ROLLGATE_STATE_DIR/artifacts`): `DIR/<sha256>.zip`.
 *
 * Everything read back is checked against its digest before it is used.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { S3Client } from '@aws-sdk/client-s3';
import type { ArtifactRef } from '../providers/types';

export interface StoredArtifact {
  /** `s3://bucket/key` or `file:///abs/path`. */
  location: string;
  /** S3 only: the bucket's region. */
  region?: string;
}

export interface ArtifactStore {
  /** The store's URL as configured (`s3://bucket/prefix`, `file:///dir`). */
  readonly url: string;
  /** Where a digest is (or would be) kept. */
  locationOf(digest: string): StoredArtifact;
  /** Put a local file under its digest; a no-op when it is there already (content-addressed). */
  put(digest: string, file: string): Promise<StoredArtifact>;
  has(digest: string): Promise<boolean>;
}

export interface S3StoreOptions {
  /** Default AWS_ENDPOINT_URL_S3 (moto in tests). */
  endpoint?: string;
  credentials?: { accessKeyId: string; secretAccessKey: string };
  /** Region of the bucket (default: `?region=` of the URL, AWS_REGION, us-east-1). */
  region?: string;
}

export interface S3Location {
  bucket: string;
  key: string;
}

export function parseS3Location(location: string): S3Location | undefined {
  const m = /^s3:\/\/([^/?#]+)\/([^?#]+)$/.exec(location);
  return m ? { bucket: m[1], key: m[2] } : undefined;
}

function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

export class FileArtifactStore implements ArtifactStore {
  readonly url: string;
  constructor(readonly dir: string) {
    this.url = pathToFileURL(dir).href;
  }
  pathOf(digest: string): string {
    return join(this.dir, `${digest}.zip`);
  }
  locationOf(digest: string): StoredArtifact {
    return { location: pathToFileURL(this.pathOf(digest)).href };
  }
  async has(digest: string): Promise<boolean> {
    return existsSync(this.pathOf(digest));
  }
  async put(digest: string, file: string): Promise<StoredArtifact> {
    const stored = this.pathOf(digest);
    if (!existsSync(stored)) {
      await mkdir(this.dir, { recursive: true });
      // A unique temp name: rollouts of several services may store the same artifact at once.
      const tmp = `${stored}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
      await copyFile(file, tmp);
      await rename(tmp, stored);
    }
    return this.locationOf(digest);
  }
}

export class S3ArtifactStore implements ArtifactStore {
  readonly url: string;
  readonly region: string;
  /** Endpoint, credentials and region, also for reading other locations of this store's service. */
  readonly options: S3StoreOptions;
  // Made at first use, with its library (about 0.1-0.2 s of module loading at start otherwise): a
  // worker on the file:// default, or one that never stores an artifact, never loads the S3 client.
  private client?: Promise<S3Client>;
  private readonly clientOptions: S3StoreOptions & { region: string };
  constructor(
    readonly bucket: string,
    readonly prefix: string,
    o: S3StoreOptions = {},
  ) {
    this.url = `s3://${bucket}/${prefix}`;
    this.region = o.region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? 'us-east-1';
    this.options = { ...o, region: this.region };
    this.clientOptions = { ...o, region: this.region };
  }
  private s3(): Promise<S3Client> {
    this.client ??= s3Client(this.clientOptions);
    return this.client;
  }
  keyOf(digest: string): string {
    return `${this.prefix ? `${this.prefix.replace(/\/+$/, '')}/` : ''}${digest}.zip`;
  }
  locationOf(digest: string): StoredArtifact {
    return { location: `s3://${this.bucket}/${this.keyOf(digest)}`, region: this.region };
  }
  async has(digest: string): Promise<boolean> {
    try {
      const { HeadObjectCommand } = await s3Library();
      await (await this.s3()).send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.keyOf(digest) }));
      return true;
    } catch (err) {
      if (isNotFound(err)) return false;
      throw storeError(`cannot read s3://${this.bucket}/${this.keyOf(digest)}`, err);
    }
  }
  async put(digest: string, file: string): Promise<StoredArtifact> {
    if (!(await this.has(digest))) {
      const body = await readFile(file);
      if (sha256(body) !== digest) throw new Error(`${file} changed while it was stored (sha256 is no longer ${digest})`);
      try {
        const { PutObjectCommand } = await s3Library();
        await (
          await this.s3()
        ).send(new PutObjectCommand({ Bucket: this.bucket, Key: this.keyOf(digest), Body: body, ContentType: 'application/zip' }));
      } catch (err) {
        throw storeError(`cannot write s3://${this.bucket}/${this.keyOf(digest)}`, err);
      }
    }
    return this.locationOf(digest);
  }
  close(): void {
    void this.client?.then(
      (c) => c.destroy(),
      () => undefined,
    );
  }
}

function s3Library() {
  return import('@aws-sdk/client-s3');
}

async function s3Client(o: S3StoreOptions & { region: string }): Promise<S3Client> {
  const endpoint = o.endpoint ?? (process.env.AWS_ENDPOINT_URL_S3 || undefined);
  const { S3Client } = await s3Library();
  return new S3Client({
    region: o.region,
    endpoint,
    credentials: o.credentials,
    // Emulators and S3-compatible stores answer path-style requests on their own host.
    forcePathStyle: !!endpoint,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
}

function isNotFound(err: unknown): boolean {
  const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
  return e?.name === 'NotFound' || e?.name === 'NoSuchKey' || e?.$metadata?.httpStatusCode === 404;
}

/** A bounded message: the operation, the SDK error's name and status; never the raw response. */
function storeError(what: string, err: unknown): Error {
  const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
  return new Error(`${what}: ${e?.name ?? 'error'}${e?.$metadata?.httpStatusCode ? ` (HTTP ${e.$metadata.httpStatusCode})` : ''}`);
}

/**
 * The store named by ROLLGATE_ARTIFACT_STORE (`s3://BUCKET/PREFIX[?region=R]` or `file://DIR`),
 * default `file://<stateDir>/artifacts`. A relative file:// path is taken relative to the process.
 */
export function artifactStoreFromUrl(url: string | undefined, stateDir: string, o: S3StoreOptions = {}): ArtifactStore {
  if (!url) return new FileArtifactStore(join(stateDir, 'artifacts'));
  if (url.startsWith('file://')) {
    const raw = url.slice('file://'.length);
    const dir = raw.startsWith('/') ? fileURLToPath(url) : resolve(raw);
    return new FileArtifactStore(dir);
  }
  const m = /^s3:\/\/([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:\/([^?]*))?(?:\?region=([a-z0-9-]+))?$/.exec(url);
  if (m) return new S3ArtifactStore(m[1], (m[2] ?? '').replace(/^\/+|\/+$/g, ''), { ...o, region: o.region ?? m[3] });
  throw new Error(`ROLLGATE_ARTIFACT_STORE must be s3://BUCKET/PREFIX[?region=REGION] or file:///DIR, got "${url}"`);
}

/** Read a stored artifact's bytes from its location (any s3:// or file:// location, not only this process's store). */
export async function readArtifact(location: string, o: S3StoreOptions = {}): Promise<Buffer> {
  if (location.startsWith('file://')) return readFile(fileURLToPath(location));
  const s3 = parseS3Location(location);
  if (!s3) throw new Error(`unknown artifact location ${location}`);
  const client = await s3Client({ ...o, region: o.region ?? process.env.AWS_REGION ?? 'us-east-1' });
  try {
    const { GetObjectCommand } = await s3Library();
    const res = await client.send(new GetObjectCommand({ Bucket: s3.bucket, Key: s3.key }));
    return Buffer.from(await res.Body!.transformToByteArray());
  } catch (err) {
    throw storeError(`cannot read ${location}`, err);
  } finally {
    client.destroy();
  }
}

export class ArtifactUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ArtifactUnavailableError';
  }
}

/**
 * A local, verified copy of an artifact for a deploy: the ref's own path when this machine has it
 * (refs recorded before the shared store carry only `path`), else its location, else the digest in
 * this worker's store; downloads are cached under `cacheDir` by digest.
 */
export async function localArtifactCopy(
  ref: ArtifactRef,
  o: { store?: ArtifactStore; cacheDir: string; s3?: S3StoreOptions },
): Promise<string> {
  const verified = async (p: string) => existsSync(p) && sha256(await readFile(p)) === ref.digest;
  if (ref.path && existsSync(ref.path)) return ref.path; // the provider re-checks its digest
  if (ref.location?.startsWith('file://') && existsSync(fileURLToPath(ref.location))) return fileURLToPath(ref.location);
  if (o.store instanceof FileArtifactStore && (await verified(o.store.pathOf(ref.digest)))) return o.store.pathOf(ref.digest);
  const cached = join(o.cacheDir, `${ref.digest}.zip`);
  if (await verified(cached)) return cached;
  const sources = [
    ...(ref.location && !ref.location.startsWith('file://') ? [ref.location] : []),
    ...(o.store && !(o.store instanceof FileArtifactStore) ? [o.store.locationOf(ref.digest).location] : []),
  ].filter((l, i, a) => a.indexOf(l) === i);
  const s3 = o.s3 ?? (o.store instanceof S3ArtifactStore ? o.store.options : {});
  const tried: string[] = [];
  for (const location of sources) {
    let body: Buffer;
    try {
      body = await readArtifact(location, s3);
    } catch (err) {
      tried.push((err as Error).message);
      continue;
    }
    if (sha256(body) !== ref.digest) {
      tried.push(`${location} has sha256 ${sha256(body)}, not ${ref.digest}`);
      continue;
    }
    await mkdir(dirname(cached), { recursive: true });
    const tmp = `${cached}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
    await writeFile(tmp, body);
    await rename(tmp, cached);
    return cached;
  }
  const where = [ref.path, ref.location].filter(Boolean).join(', ') || 'no location recorded';
  throw new ArtifactUnavailableError(
    `artifact sha256 ${ref.digest} is not available to this worker (${where}${o.store ? `; store ${o.store.url}` : ''}${
      tried.length ? `; ${tried.join('; ')}` : ''
    }): set ROLLGATE_ARTIFACT_STORE to the store the runner uploads to`,
  );
}
