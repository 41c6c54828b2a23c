// The workflows as the first release registered them: the frozen v1 rollout under its real name.
export { rolloutWorkflowV1 as rolloutWorkflow } from '../../src/workflows/v1/rollout';
export { dependencyLockWorkflow } from '../../src/workflows/dependency-lock';
export { scheduledAnalysisWorkflow } from '../../src/workflows/scheduled-analysis';
