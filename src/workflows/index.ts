// Workflow entry points bundled for the worker. Only deterministic code may be reached from here.
export { rolloutWorkflow } from './rollout';
export { dependencyLockWorkflow } from './dependency-lock';
export { scheduledAnalysisWorkflow } from './scheduled-analysis';
export { trainWorkflow } from './train';
export { releaseRegistryWorkflow } from './release-registry';
