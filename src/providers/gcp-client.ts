/**
 * Client options shared by the Google Cloud clients (Cloud Run Admin, Cloud Monitoring).
 * Without an endpoint the clients talk to Google with Application Default Credentials. With
 * `host:port` they talk plaintext gRPC to that address (the dev/test fakes on loopback); `grpc`
 * must come from google-gax (a separately installed grpc-js fails the client's credentials check)
 * and `universeDomain` keeps the client from asking the metadata server which universe it is in.
 */
import { grpc, type ClientOptions } from 'google-gax';

export function gcpClientOptions(endpoint?: string): ClientOptions {
  if (!endpoint) return {};
  const m = /^([^:/\s]+|\[[^\]]+\]):(\d+)$/.exec(endpoint.trim());
  if (!m) throw new Error(`endpoint "${endpoint}" must be host:port (plaintext gRPC, for the dev/test fakes)`);
  // With a local endpoint there are no Google credentials to find: never probe the GCE metadata
  // server (a non-loopback address) while the auth library looks for them.
  process.env.METADATA_SERVER_DETECTION ??= 'none';
  return {
    apiEndpoint: m[1],
    port: Number(m[2]),
    sslCreds: grpc.credentials.createInsecure(),
    universeDomain: 'googleapis.com',
  };
}
