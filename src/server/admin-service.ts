/**
 * `annal.admin.v1.Admin`: cluster introspection outside the proglog-compatible Log service.
 * GetMembers answers from a `members` callback (the agent's gossip membership), so this folder
 * needs nothing from membership/; without the callback the list is empty.
 */
import type { sendUnaryData, ServerUnaryCall, UntypedServiceImplementation } from '@grpc/grpc-js';
import type { GetMembersRequest, GetMembersResponse, Member as WireMember } from '../gen/annal/admin/v1/admin.js';

export const ADMIN_SERVICE_NAME = 'annal.admin.v1.Admin';

/** A gossip member as GetMembers reports it. */
export interface AdminMember {
  name: string;
  /** Gossip address, `host:port` (IPv6 in brackets). */
  addr: string;
  status: string;
  tags: Readonly<Record<string, string>>;
}

export function adminHandlers(members: (() => readonly AdminMember[]) | undefined): UntypedServiceImplementation {
  return {
    getMembers: (_call: ServerUnaryCall<GetMembersRequest, GetMembersResponse>, callback: sendUnaryData<GetMembersResponse>) => {
      const list = (members?.() ?? []).map((member): WireMember => ({ name: member.name, addr: member.addr, status: member.status, tags: { ...member.tags } }));
      list.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      callback(null, { members: list });
    },
  };
}
