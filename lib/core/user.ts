// Users of a domain (kdbus_domain_user): what each uid is charged for, so one
// user cannot exhaust the domain: connections, buses, and the messages it has
// queued in other connections.
import { LIMITS } from '../abi/kdbus.js';
import { errno, fail } from './errors.js';

export class User {
  connections = 0;
  buses = 0;
  constructor(readonly uid: number) {}
}

export class UserRegistry {
  private readonly users = new Map<number, User>();

  get(uid: number): User {
    let u = this.users.get(uid);
    if (!u) {
      u = new User(uid);
      this.users.set(uid, u);
    }
    return u;
  }

  chargeConnection(u: User): void {
    if (u.connections + 1 > LIMITS.USER_MAX_CONN) fail(errno.EMFILE, `uid ${u.uid} has too many connections`);
    u.connections++;
  }

  chargeBus(u: User): void {
    if (u.buses + 1 > LIMITS.USER_MAX_BUSES) fail(errno.EMFILE, `uid ${u.uid} has too many buses`);
    u.buses++;
  }

  uncharge(u: User, what: 'connections' | 'buses'): void {
    u[what]--;
    if (u.connections === 0 && u.buses === 0) this.users.delete(u.uid);
  }

  /** Teardown check. */
  get size(): number {
    return this.users.size;
  }

  /** Every user charged for something (for the census). */
  all(): IterableIterator<User> {
    return this.users.values();
  }
}
