/**
 * The identity check behind every operator action (start, approve, reject, pause, resume, abort,
 * retry): the worker's verifier checks the token. Run as a local activity, so the token (its input)
 * is not written to history again; only the verified identity (the result) is.
 */
import { ApplicationFailure } from '@temporalio/activity';
import { IdentityRefusedError, type IdentityVerifier } from '../identity/verifier';
import type { Identity } from '../contract';

export interface IdentityCheckInput {
  /** What the token is for, named in a refusal ("approve refused: the token has expired"). */
  action: string;
  token?: string;
  /** The name given with --by: the identity when the worker has no verifier. */
  claimedBy?: string;
  /** False for the workflow's own starts (revert mode): no token to check, only whether the worker verifies. */
  requireToken: boolean;
}

export interface IdentityCheck {
  /** Whether this worker verifies identities. */
  verifier: boolean;
  identity: Identity;
}

export function identityActivities(deps: { identityVerifier?: IdentityVerifier }) {
  return {
    async checkIdentity(input: IdentityCheckInput): Promise<IdentityCheck> {
      const unverified: Identity = { name: input.claimedBy?.trim() || 'unknown', verified: false };
      const verifier = deps.identityVerifier;
      if (!verifier) return { verifier: false, identity: unverified };
      if (!input.token) {
        if (!input.requireToken) return { verifier: true, identity: unverified };
        throw ApplicationFailure.nonRetryable(
          `${input.action} refused: this rollout's worker verifies identities, and no token was sent (rollgate --token or ROLLGATE_TOKEN)`,
          'IdentityRefused',
        );
      }
      try {
        const id = await verifier.verify(input.token);
        return { verifier: true, identity: { name: id.name, subject: id.subject, groups: id.groups, verified: true } };
      } catch (err) {
        if (err instanceof IdentityRefusedError)
          throw ApplicationFailure.nonRetryable(`${input.action} refused: ${err.message}`, 'IdentityRefused');
        // JWKS unreachable and the like: retried; the message never holds the token.
        throw new Error(`cannot check the token for ${input.action}: ${(err as Error).message}`);
      }
    },
  };
}
