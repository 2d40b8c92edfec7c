import { status as Status } from '@grpc/grpc-js';

/** Status names by code, for labels and logs (`OK`, `OUT_OF_RANGE`, …). */
const CODE_NAMES: ReadonlyMap<number, string> = new Map(
  Object.entries(Status)
    .filter((entry): entry is [string, number] => typeof entry[1] === 'number')
    .map(([name, code]) => [code, name]),
);

/** The status name of a gRPC code (`OUT_OF_RANGE`); the number as text for codes grpc-js does not know. */
export function codeName(code: number): string {
  return CODE_NAMES.get(code) ?? String(code);
}
