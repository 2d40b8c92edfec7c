/** A Lamport clock as serf uses it: starts at 1; witnessing v moves it to v + 1 when v >= now. */
import { assert } from '../util/index.js';

export class LamportClock {
  /** Invariant: a safe integer >= 1 that never decreases. */
  private value = 1;

  time(): number {
    return this.value;
  }

  /** Returns the current time and advances the clock. */
  increment(): number {
    const current = this.value;
    this.value++;
    assert(Number.isSafeInteger(this.value), 'lamport clock stays a safe integer');
    return current;
  }

  witness(observed: number): void {
    assert(Number.isSafeInteger(observed) && observed >= 0, 'witnessed lamport time is a safe integer');
    if (observed >= this.value) this.value = observed + 1;
  }
}
