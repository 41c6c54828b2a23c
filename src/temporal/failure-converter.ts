/**
 * Failure converter used with the payload codec: failure messages and stack traces go into the
 * encoded attributes (a payload, so the codec encrypts them). Any SDK client and the Temporal UI
 * (through the codec server) restore them. Loaded by path: by the worker for activity failures and
 * bundled into workflow code for workflow failures; must stay free of Node APIs.
 */
import { DefaultFailureConverter } from '@temporalio/common';

export const failureConverter = new DefaultFailureConverter({ encodeCommonAttributes: true });
