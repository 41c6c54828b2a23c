/**
 * Connection settings from the environment: TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, and for a real
 * cluster TEMPORAL_API_KEY or TEMPORAL_TLS_CERT/TEMPORAL_TLS_KEY (mTLS, Temporal Cloud).
 * ROLLGATE_CODEC_KEY/ROLLGATE_CODEC_KEY_ID turn on payload encryption (see ./codec.ts) for the
 * client and the worker alike.
 */
import { readFileSync } from 'node:fs';
import { Client, Connection } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import type { DataConverter } from '@temporalio/common';
import { dataConverterFromEnv } from './codec';
import { SEARCH_ATTRIBUTES } from '../contract';

export interface ConnectionSettings {
  address: string;
  namespace: string;
  apiKey?: string;
  tls?: { clientCertPair?: { crt: Buffer; key: Buffer } } | boolean;
  /** Payload codec (encryption) when configured; the same for Client and Worker. */
  dataConverter?: DataConverter;
}

export function connectionSettingsFromEnv(env: NodeJS.ProcessEnv = process.env): ConnectionSettings {
  const cert = env.TEMPORAL_TLS_CERT;
  const key = env.TEMPORAL_TLS_KEY;
  return {
    address: env.TEMPORAL_ADDRESS || '127.0.0.1:7233',
    namespace: env.TEMPORAL_NAMESPACE || 'default',
    apiKey: env.TEMPORAL_API_KEY || undefined,
    tls: cert && key ? { clientCertPair: { crt: readFileSync(cert), key: readFileSync(key) } } : env.TEMPORAL_API_KEY ? true : undefined,
    dataConverter: dataConverterFromEnv(env),
  };
}

export async function connectClient(s: ConnectionSettings = connectionSettingsFromEnv()): Promise<Client> {
  const connection = await Connection.connect({ address: s.address, apiKey: s.apiKey, tls: s.tls, connectTimeout: '5 seconds' });
  return new Client({ connection, namespace: s.namespace, dataConverter: s.dataConverter });
}

/**
 * Register rollgate's search attributes if they are missing (dev server, self-hosted). Temporal
 * Cloud registers them through its console or tcld instead; a refusal here is reported, not fatal.
 */
export async function ensureSearchAttributes(client: Client): Promise<string | undefined> {
  const op = client.connection.operatorService;
  const ns = client.options.namespace;
  try {
    const existing = await op.listSearchAttributes({ namespace: ns });
    const have = new Set(Object.keys(existing.customAttributes ?? {}));
    const missing = SEARCH_ATTRIBUTES.filter((a) => !have.has(a.name));
    if (missing.length === 0) return undefined;
    const T = temporal.api.enums.v1.IndexedValueType;
    await op.addSearchAttributes({
      namespace: ns,
      searchAttributes: Object.fromEntries(
        missing.map((a) => [a.name, a.type === 'Keyword' ? T.INDEXED_VALUE_TYPE_KEYWORD : T.INDEXED_VALUE_TYPE_KEYWORD_LIST]),
      ),
    });
    return `registered search attributes ${missing.map((m) => m.name).join(', ')}`;
  } catch (err) {
    return `could not register search attributes (${(err as Error).message}); register ${SEARCH_ATTRIBUTES.map((a) => `${a.name}:${a.type}`).join(', ')} by hand`;
  }
}
