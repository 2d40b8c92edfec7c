/**
 * How much a leader keeps in flight to each follower: the replica's Raft flow control, shared by
 * the agent and the replica simulator so that the simulator runs what production runs.
 */
export const REPLICA_FLOW_CONTROL = Object.freeze({
  /**
   * Appends in flight to one follower. A follower writes its appends one at a time and answers
   * each write once, so a deeper window buys no throughput: with one, the next append takes
   * everything proposed while the follower wrote. A window of 256 sent one small append per
   * leader Ready (each socket read of client records), which the follower then decoded, wrote
   * and acknowledged one by one: about four times the messages per record, and the CPU they cost
   * on both sides.
   */
  inflightCountMax: 1,
  /**
   * Bytes in flight to one follower. Every append to a far-behind follower is read from disk
   * synchronously, and 256 messages of 1 MiB in one task stalled the event loop past an election
   * timeout; this also stays well under the peer queue (64 MiB), so nothing is dropped.
   */
  inflightBytesMax: 8 * 1024 * 1024,
});
