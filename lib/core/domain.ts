// A domain (ipc/kdbus/domain.c): one per mount. Its root holds the control
// file, where BUS_MAKE creates buses as <uid>-<name> directories.
import type { Bus } from './bus.js';
import { UserRegistry, type UserLimits } from './user.js';

/** The file tree the domain keeps current (the native addon answers from it). */
export interface Tree {
  addDir(parent: number, name: string, mode: number, uid: number, gid: number): number;
  addFile(parent: number, name: string, mode: number, uid: number, gid: number, tag: number): number;
  remove(ino: number): void;
}

export const ROOT_INO = 1;

export class Domain {
  readonly buses = new Map<string, Bus>();
  readonly users: UserRegistry;
  private busSeq = 0n;
  private msgSeq = 0n;

  constructor(readonly tree: Tree, limits?: Readonly<UserLimits>) {
    this.users = new UserRegistry(limits);
  }

  nextBusId(): bigint {
    return ++this.busSeq;
  }

  /** Domain-global message sequence number (TIMESTAMP seqnum). */
  nextMsgSeq(): bigint {
    return ++this.msgSeq;
  }
}

/** The root and control node modes of a domain made world-accessible, as kdbusfs mounts it. */
export const DOMAIN_ROOT_MODE = 0o555;
export const CONTROL_MODE = 0o666;
