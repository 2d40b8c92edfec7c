/** Errors the Raft node reports to callers (besides util's NotLeaderError and ClosedError); defined in util so that the wire mapping and the client share them. */
export { LeadershipLostError, ProposalOutcomeUnknownError, RaftBusyError } from '../util/errors.js';
