export { failpoints, Failpoints, FailpointSpecError, FAILPOINTS_ENV, parseFailpoints } from './failpoints.js';
export type { FailpointSpec } from './failpoints.js';
