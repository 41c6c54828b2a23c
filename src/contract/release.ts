/**
 * The deployment contract: the release metadata every new revision carries in its environment and
 * every command gets in its own (same names both places), and the image reference format a Cloud
 * Run release is pinned by. Defined once; providers, checks and the spec schema read it from here.
 */

/** The release metadata every new revision carries in its environment. */
export interface ReleaseContract {
  RELEASE_ID: string;
  SCHEMA_REV: string;
  INDEX_HASH?: string;
}

/** The contract's variable names, in the order they are written. */
export const RELEASE_CONTRACT_KEYS = ['RELEASE_ID', 'SCHEMA_REV', 'INDEX_HASH'] as const;
export type ReleaseContractKey = (typeof RELEASE_CONTRACT_KEYS)[number];

/** Whether an environment variable is one of the contract's (ours, never a secret, never drift). */
export function isReleaseContractKey(name: string): name is ReleaseContractKey {
  return (RELEASE_CONTRACT_KEYS as readonly string[]).includes(name);
}

/** The contract a release's spec asks for (INDEX_HASH only when the spec has one). */
export function releaseContract(spec: { release: string; schema_rev: string; index_hash?: string }): ReleaseContract {
  return { RELEASE_ID: spec.release, SCHEMA_REV: spec.schema_rev, ...(spec.index_hash ? { INDEX_HASH: spec.index_hash } : {}) };
}

/** An image reference pinned by digest: `NAME@sha256:<64 lowercase hex>`. */
export const PINNED_IMAGE = /^[^@\s]+@sha256:([a-f0-9]{64})$/;

/** The sha256 hex of a pinned image reference, or undefined when it is not pinned by digest. */
export function imageDigest(image: string | undefined): string | undefined {
  return image === undefined ? undefined : PINNED_IMAGE.exec(image)?.[1];
}
