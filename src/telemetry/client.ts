/**
 * The light entry point for client code (the client library, the CLI's client commands): trace
 * propagation into gRPC calls without loading the metrics and tracing SDKs that `index.ts` pulls
 * in (about 0.3 s of module loading).
 */
export { createClientInterceptor } from './client-interceptor.js';
export type { ClientInterceptorOptions } from './client-interceptor.js';
export { extractTraceContext, injectTraceContext } from './propagation.js';
