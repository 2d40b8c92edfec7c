export { AnnalClient, ProduceStreamHandle, ProduceBatchHandle } from './client.js';
export type { AnnalClientOptions, ConsumeStreamOptions, ConsumedRecord, ProduceBatchResult, ServerInfo, MemberInfo } from './client.js';
export { BatchingProducer } from './batching-producer.js';
export type { BatchingProducerOptions } from './batching-producer.js';
export { channelCredentials } from './credentials.js';
export type { ClientSecurity, TlsClientOptions } from './credentials.js';
