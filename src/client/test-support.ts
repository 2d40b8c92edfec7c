/**
 * Test support (not a test file): one ProduceBatch call carrying an idempotent producer's fields
 * through a client's generated stub, so that tests choose the producer id and sequences the
 * client's own idempotent producer would pick for itself.
 */
import type { ProduceBatchResponse } from '../gen/log/v1/log.js';
import { errorFromStatus } from '../wire/index.js';
import type { AnnalClient } from './client.js';

/** The answer to one sequenced batch, or the error class its status stands for. */
export function sendSequencedBatch(client: AnnalClient, producerId: number, firstSequence: number, values: string[]): Promise<ProduceBatchResponse> {
  return new Promise((resolve, reject) => {
    const call = client.raw.produceBatch();
    call.on('data', (response: ProduceBatchResponse) => {
      resolve(response);
      call.end();
    });
    call.on('error', (error: { code: number; details: string }) => reject(errorFromStatus(error)));
    call.write({ records: values.map((value) => ({ value: Buffer.from(value), offset: 0, term: 0, type: 0 })), producerId, firstSequence });
  });
}
