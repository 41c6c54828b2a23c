// Workflow entry points bundled for the worker. Only deterministic code may be reached from here.
export { rolloutWorkflow } from './rollout';
export { dependencyLockWorkflow } from './dependency-lock';
export { scheduledAnalysisWorkflow } from './scheduled-analysis';
export { releaseRegistryWorkflow } from './release-registry';
