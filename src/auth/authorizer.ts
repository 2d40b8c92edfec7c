/**
 * The ACL: a Casbin enforcer built from a model (model.conf) and a policy (policy.csv). A request
 * is (subject, object, action): the subject is the client certificate's Common Name, the object
 * is "*" (the whole log; there are no finer objects yet) and the action one of `Action`.
 *
 * `replace` swaps in a new enforcer atomically, so a policy reload never leaves a moment with a
 * half-loaded policy. Decisions are cached per (subject, object, action) until the next replace:
 * the set of subjects is small and a cache hit keeps authorization off the per-call profile.
 * `onReplace` listeners run right after a replace (the ACL interceptor re-checks open streams).
 */
import { readFile } from 'node:fs/promises';
import { newEnforcer, newModelFromString, StringAdapter, type Enforcer } from 'casbin';
import { InvalidArgumentError, PermissionDeniedError } from '../util/index.js';

export const Action = {
  Produce: 'produce',
  Consume: 'consume',
  /** Server-to-server traffic (Raft, forwarding), held by the peer certificate's subject. */
  Replicate: 'replicate',
} as const;
export type Action = (typeof Action)[keyof typeof Action];

/** The only object for now: the whole log. */
export const ANY_OBJECT = '*';

export interface AclFiles {
  modelFile: string;
  policyFile: string;
}

const DECISION_CACHE_ENTRIES_MAX = 4096;

export class Authorizer {
  private enforcer: Enforcer;
  private readonly decisions = new Map<string, boolean>();
  private readonly replaceListeners = new Set<() => void>();

  constructor(enforcer: Enforcer) {
    this.enforcer = enforcer;
  }

  static async fromFiles(files: AclFiles): Promise<Authorizer> {
    return new Authorizer(await loadEnforcer(files));
  }

  /** Puts a new policy in force for every later decision. */
  replace(enforcer: Enforcer): void {
    this.enforcer = enforcer;
    this.decisions.clear();
    for (const listener of this.replaceListeners) listener();
  }

  /** Calls `listener` after every replace, until the returned function is called. */
  onReplace(listener: () => void): () => void {
    this.replaceListeners.add(listener);
    return () => this.replaceListeners.delete(listener);
  }

  isAllowed(subject: string, object: string, action: Action): boolean {
    const key = `${subject}\u0000${object}\u0000${action}`;
    let allowed = this.decisions.get(key);
    if (allowed === undefined) {
      allowed = this.enforcer.enforceSync(subject, object, action);
      if (this.decisions.size >= DECISION_CACHE_ENTRIES_MAX) this.decisions.clear();
      this.decisions.set(key, allowed);
    }
    return allowed;
  }

  /** Throws PermissionDeniedError naming the subject and the action unless the policy allows it. */
  authorize(subject: string, object: string, action: Action): void {
    if (!this.isAllowed(subject, object, action)) {
      throw new PermissionDeniedError(`subject "${subject}" is not permitted to ${action} on "${object}"`);
    }
  }
}

/** Reads and checks both files; throws InvalidArgumentError saying which file is wrong and why. */
export async function loadEnforcer(files: AclFiles): Promise<Enforcer> {
  const [modelText, policyText] = await Promise.all([readText(files.modelFile, 'ACL model'), readText(files.policyFile, 'ACL policy')]);
  let model;
  try {
    model = newModelFromString(modelText);
  } catch (error) {
    throw new InvalidArgumentError(`${files.modelFile}: not a Casbin model (${(error as Error).message})`, { cause: error });
  }
  const requestTokens = model.model.get('r')?.get('r')?.tokens.length;
  if (requestTokens !== 3) {
    throw new InvalidArgumentError(`${files.modelFile}: the request definition must be "r = sub, obj, act"`);
  }
  checkPolicyLines(policyText, files.policyFile);
  let enforcer: Enforcer;
  try {
    enforcer = await newEnforcer(model, new StringAdapter(policyText));
    // Evaluate once so a matcher that does not compile fails here, not on the first call.
    enforcer.enforceSync('', ANY_OBJECT, Action.Consume);
  } catch (error) {
    throw new InvalidArgumentError(`${files.policyFile} with ${files.modelFile}: ${(error as Error).message}`, { cause: error });
  }
  return enforcer;
}

/**
 * Casbin skips lines it cannot use without a word; a typo in a policy would then silently deny
 * (or, worse, leave a rule out). Each rule line must be `p, sub, obj, act` or `g, ...`.
 */
function checkPolicyLines(text: string, path: string): void {
  const lines = text.split('\n');
  for (let index = 0; index < lines.length; index += 1) {
    const line = lines[index]!.trim();
    if (line.length === 0 || line.startsWith('#')) continue;
    const fields = line.split(',').map((field) => field.trim());
    const valid = (fields[0] === 'p' && fields.length === 4) || (/^g\d*$/.test(fields[0]!) && fields.length >= 3);
    if (!valid || fields.some((field) => field.length === 0)) {
      throw new InvalidArgumentError(`${path}:${index + 1}: "${line}" is not "p, subject, object, action" (or a "g, ..." role line)`);
    }
  }
}

async function readText(path: string, what: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (error) {
    throw new InvalidArgumentError(`cannot read the ${what} file ${path}: ${(error as Error).message}`, { cause: error });
  }
}
