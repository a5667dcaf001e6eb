// An endpoint (ipc/kdbus/endpoint.c): a file in a bus directory that
// connections are made on. Every bus has the default endpoint "bus"; custom
// endpoints carry their own policy (issue #3).
import type { Bus } from './bus.js';
import { PolicyDb } from './policy.js';
import { User } from './user.js';
import type { Connection } from './connection.js';

export class Endpoint {
  readonly connections = new Set<Connection>();
  /** a custom endpoint's own policy (ENDPOINT_MAKE / ENDPOINT_UPDATE) */
  readonly policy = new PolicyDb();
  /** custom endpoints charge all their connections to one anonymous user */
  readonly user: User | null;
  active = true;
  /** the file node in the tree */
  ino = 0;
  /** set by whoever made the file: removes it from the tree */
  onRemoved: () => void = () => {};

  constructor(readonly bus: Bus, readonly name: string, readonly uid: number, readonly gid: number,
              readonly mode: number, readonly hasPolicy: boolean) {
    this.user = hasPolicy ? new User(-1, null, bus.domain.users.limits) : null;
  }

  /** kdbus_ep_deactivate: the file goes away and every connection on it is disconnected. */
  deactivate(): void {
    if (!this.active) return;
    this.active = false;
    for (const conn of [...this.connections]) this.bus.disconnect(conn);
    this.bus.endpoints.delete(this.name);
    this.onRemoved();
  }
}

/** Node modes kdbus gives endpoint files for MAKE_ACCESS_* (S_IRUSR|S_IWUSR, + group, + world). */
export function endpointMode(accessGroup: boolean, accessWorld: boolean): number {
  return 0o600 | (accessGroup || accessWorld ? 0o060 : 0) | (accessWorld ? 0o006 : 0);
}
