// Goal: the leader's membership rules pick the right single change for each situation and none
// when nothing should change (in particular, a failure never shrinks the quorum by default).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { nextChange, nodeNameOf, type LeaderView, type MemberView } from './cluster-membership.js';

const alive = (raftId: string, sinceMs = 0): MemberView => ({ raftId, name: nodeNameOf(raftId), status: 'alive', sinceMs });
const withStatus = (member: MemberView, status: MemberView['status'], sinceMs = 0): MemberView => ({ ...member, status, sinceMs });

function view(overrides: Partial<LeaderView>): LeaderView {
  return {
    selfId: 'n1@a',
    config: { voters: ['n1@a'], learners: [] },
    commit: 10,
    progress: new Map(),
    members: [alive('n1@a')],
    nowMs: 100_000,
    removeFailedAfterMs: undefined,
    ...overrides,
  };
}

test('a new alive member is added as a learner, then promoted once it has caught up', () => {
  const joined = view({ members: [alive('n1@a'), alive('n2@b')] });
  assert.deepEqual(nextChange(joined)?.change, { type: 'addLearner', nodeId: 'n2@b' });
  const lagging = view({ config: { voters: ['n1@a'], learners: ['n2@b'] }, members: joined.members, progress: new Map([['n2@b', { match: 9, recentActive: true }]]) });
  assert.equal(nextChange(lagging), null);
  const caughtUp = { ...lagging, progress: new Map([['n2@b', { match: 10, recentActive: true }]]) };
  assert.deepEqual(nextChange(caughtUp)?.change, { type: 'addVoter', nodeId: 'n2@b' });
});

test('a learner that keeps up under steady writes is promoted: its match reached an earlier pass commit, though never the current one', () => {
  const members = [alive('n1@a'), alive('n2@b')];
  const config = { voters: ['n1@a'], learners: ['n2@b'] };
  const keepingUp = view({ config, members, commit: 120, earlierCommit: 100, progress: new Map([['n2@b', { match: 117, recentActive: true }]]) });
  assert.deepEqual(nextChange(keepingUp)?.change, { type: 'addVoter', nodeId: 'n2@b' });
  const behind = { ...keepingUp, progress: new Map([['n2@b', { match: 99, recentActive: true }]]) };
  assert.equal(nextChange(behind), null, 'not yet where the leader was a pass ago');
  assert.equal(nextChange({ ...keepingUp, earlierCommit: undefined }), null, 'a new leader without an earlier pass waits for the commit index');
});

test('a graceful leave removes the member; a failure keeps it a voter unless --remove-failed-after, never below 3 voters', () => {
  const voters = ['n1@a', 'n2@b', 'n3@c', 'n4@d'];
  const members = voters.map((id) => alive(id));
  const progress = new Map(voters.map((id) => [id, { match: 10, recentActive: true }]));
  const left = view({ config: { voters, learners: [] }, members: [members[0]!, withStatus(members[1]!, 'left'), members[2]!, members[3]!], progress });
  assert.deepEqual(nextChange(left)?.change, { type: 'remove', nodeId: 'n2@b' });
  const failed = view({ config: { voters, learners: [] }, members: [members[0]!, withStatus(members[1]!, 'failed', 10_000), members[2]!, members[3]!], progress });
  assert.equal(nextChange(failed), null, 'off by default');
  assert.equal(nextChange({ ...failed, removeFailedAfterMs: 95_000 }), null, 'not failed long enough');
  assert.deepEqual(nextChange({ ...failed, removeFailedAfterMs: 60_000 })?.change, { type: 'remove', nodeId: 'n2@b' });
  const three = view({ config: { voters: voters.slice(0, 3), learners: [] }, members: failed.members.slice(0, 3), removeFailedAfterMs: 1, progress });
  assert.equal(nextChange(three), null, 'never below 3 voters');
});

test('a new incarnation of a node (wiped data dir) joins first; the old one is removed once the new one votes and the old is silent', () => {
  const config = { voters: ['n1@a', 'n2@old', 'n3@c'], learners: [] };
  const members = [alive('n1@a'), alive('n2@new'), alive('n3@c')];
  assert.deepEqual(nextChange(view({ config, members }))?.change, { type: 'addLearner', nodeId: 'n2@new' });
  const promoted = { voters: [...config.voters, 'n2@new'], learners: [] };
  const stillTalking = new Map([['n2@old', { match: 5, recentActive: true }]]);
  assert.equal(nextChange(view({ config: promoted, members, progress: stillTalking })), null, 'the old incarnation still answers: a name clash, not a replacement');
  const silent = new Map([['n2@old', { match: 5, recentActive: false }], ['n2@new', { match: 5, recentActive: true }], ['n3@c', { match: 5, recentActive: true }]]);
  assert.deepEqual(nextChange(view({ config: promoted, members, progress: silent }))?.change, { type: 'remove', nodeId: 'n2@old' });
});

test('a voter is removed only while the voters left have a quorum the leader hears from; a learner at once', () => {
  // n3 left gracefully while n2 is down: {n1, n2} could not commit the removal without n2, and
  // would need n2 forever after (if n2 lost its data and came back as a new member, no leader).
  const config = { voters: ['n1@a', 'n2@b', 'n3@c'], learners: ['n4@d'] };
  const members = [alive('n1@a'), withStatus(alive('n2@b'), 'failed'), withStatus(alive('n3@c'), 'left'), withStatus(alive('n4@d'), 'left')];
  const n2Silent = new Map([['n2@b', { match: 5, recentActive: false }], ['n3@c', { match: 9, recentActive: true }], ['n4@d', { match: 9, recentActive: true }]]);
  assert.deepEqual(nextChange(view({ config, members, progress: n2Silent }))?.change, { type: 'remove', nodeId: 'n4@d' }, 'a learner goes at once');
  const voters = { voters: config.voters, learners: [] };
  assert.equal(nextChange(view({ config: voters, members: members.slice(0, 3), progress: n2Silent })), null, 'n3 stays while {n1, n2} has no active quorum');
  const n2Back = new Map([...n2Silent, ['n2@b', { match: 9, recentActive: true }]]);
  assert.deepEqual(nextChange(view({ config: voters, members: members.slice(0, 3), progress: n2Back }))?.change, { type: 'remove', nodeId: 'n3@c' });
  // A replaced incarnation is removed once the others (the new one included) have an active quorum.
  const replaced = { voters: ['n1@a', 'n2@old', 'n3@c', 'n2@new'], learners: [] };
  const incarnations = [alive('n1@a'), alive('n2@new'), alive('n3@c')];
  const n3Silent = new Map([['n2@old', { match: 5, recentActive: false }], ['n2@new', { match: 9, recentActive: true }], ['n3@c', { match: 9, recentActive: false }]]);
  assert.deepEqual(nextChange(view({ config: replaced, members: incarnations, progress: n3Silent }))?.change, { type: 'remove', nodeId: 'n2@old' });
  const onlyLeader = new Map([...n3Silent, ['n2@new', { match: 9, recentActive: false }]]);
  assert.equal(nextChange(view({ config: replaced, members: incarnations, progress: onlyLeader })), null);
});

test('the leader never removes itself', () => {
  const config = { voters: ['n1@a', 'n2@b', 'n3@c'], learners: [] };
  const members = [withStatus(alive('n1@a'), 'left'), alive('n2@b'), alive('n3@c')];
  assert.equal(nextChange(view({ config, members })), null);
});
