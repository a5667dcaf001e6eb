// RequestName and ReleaseName on kdbus: the D-Bus specification's flags and
// answers mapped onto NAME_ACQUIRE / NAME_RELEASE and their errnos, as sd-bus
// of 2015 read them (bus_request_name_kernel, bus_release_name_kernel).
import type { Connection } from './connection.js';
import { KdbusClientError } from './errors.js';

/** RequestName's flags and answers (the D-Bus specification's numbers). */
export const RequestNameFlag = { ALLOW_REPLACEMENT: 1, REPLACE_EXISTING: 2, DO_NOT_QUEUE: 4 } as const;
export const RequestNameReply = { PRIMARY_OWNER: 1, IN_QUEUE: 2, EXISTS: 3, ALREADY_OWNER: 4 } as const;
export const ReleaseNameReply = { RELEASED: 1, NON_EXISTENT: 2, NOT_OWNER: 3 } as const;

function errnoOf(e: unknown): string | undefined {
  return e instanceof KdbusClientError ? e.code : undefined;
}

/** RequestName's answer; other refusals (policy, limits) are thrown as the KdbusClientError they are. */
export function requestName(kdbus: Connection, name: string, flags: number): number {
  try {
    const r = kdbus.acquireName(name, {
      allowReplacement: (flags & RequestNameFlag.ALLOW_REPLACEMENT) !== 0,
      replaceExisting: (flags & RequestNameFlag.REPLACE_EXISTING) !== 0,
      queue: (flags & RequestNameFlag.DO_NOT_QUEUE) === 0,
    });
    return r.inQueue ? RequestNameReply.IN_QUEUE : RequestNameReply.PRIMARY_OWNER;
  } catch (e) {
    if (errnoOf(e) === 'EEXIST') return RequestNameReply.EXISTS;
    if (errnoOf(e) === 'EALREADY') return RequestNameReply.ALREADY_OWNER;
    throw e;
  }
}

/**
 * ReleaseName's answer. kdbus answers ESRCH both for a name nobody owns and
 * for another's (the kernel's code, not kdbus.txt): hasOwner tells them apart.
 */
export function releaseName(kdbus: Connection, name: string, hasOwner: () => boolean): number {
  try {
    kdbus.releaseName(name);
    return ReleaseNameReply.RELEASED;
  } catch (e) {
    if (errnoOf(e) === 'ESRCH') return hasOwner() ? ReleaseNameReply.NOT_OWNER : ReleaseNameReply.NON_EXISTENT;
    if (errnoOf(e) === 'EADDRINUSE') return ReleaseNameReply.NOT_OWNER;
    throw e;
  }
}
