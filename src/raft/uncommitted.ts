/** Bytes proposed by this leader and not yet committed, released as the commit index passes. */
export class UncommittedBytes {
  private readonly lastIndexes: number[] = [];
  private readonly sizesBytes: number[] = [];
  private head = 0;
  totalBytes = 0;

  add(lastIndex: number, sizeBytes: number): void {
    this.lastIndexes.push(lastIndex);
    this.sizesBytes.push(sizeBytes);
    this.totalBytes += sizeBytes;
  }

  commitTo(index: number): void {
    while (this.head < this.lastIndexes.length && (this.lastIndexes[this.head] as number) <= index) {
      this.totalBytes -= this.sizesBytes[this.head] as number;
      this.head++;
    }
    if (this.head === this.lastIndexes.length) this.reset();
  }

  reset(): void {
    this.lastIndexes.length = 0;
    this.sizesBytes.length = 0;
    this.head = 0;
    this.totalBytes = 0;
  }
}
