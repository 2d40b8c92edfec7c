export { LogServer, LOG_SERVICE_NAME } from './server.js';
export type { LogServerOptions } from './server.js';
export type { ServiceLogger } from './log-service.js';
export type { ServedLog } from './served-log.js';
export { statusFromError, errorFromStatus, grpcCodeFor, ErrorMetadataKey } from '../wire/index.js';
export type { StatusLike } from '../wire/index.js';
export { MeteredLog } from './metered-log.js';
export { ADMIN_SERVICE_NAME } from './admin-service.js';
export type { AdminMember } from './admin-service.js';
