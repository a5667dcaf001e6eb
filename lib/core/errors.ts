// kdbus errors: the core throws KdbusError(errno); the ioctl edge turns it
// into the negative errno the kernel would have returned.
import { constants } from 'node:os';

const E = constants.errno;
export const errno = {
  EPERM: E.EPERM, ENOENT: E.ENOENT, ESRCH: E.ESRCH, EINTR: E.EINTR, ENXIO: E.ENXIO,
  E2BIG: E.E2BIG, EBADF: E.EBADF, EAGAIN: E.EAGAIN, ENOMEM: E.ENOMEM, EFAULT: E.EFAULT,
  EBUSY: E.EBUSY, EEXIST: E.EEXIST, ENOTTY: E.ENOTTY, EINVAL: E.EINVAL, EMFILE: E.EMFILE,
  ENOSPC: E.ENOSPC, EMLINK: E.EMLINK, EPIPE: E.EPIPE, ENAMETOOLONG: E.ENAMETOOLONG,
  ENOMSG: E.ENOMSG, EBADMSG: E.EBADMSG, EOVERFLOW: E.EOVERFLOW, ENOTUNIQ: 76,
  EBADFD: 77, ECOMM: 70, EMSGSIZE: E.EMSGSIZE, EOPNOTSUPP: E.EOPNOTSUPP, ENOBUFS: E.ENOBUFS,
  ECONNRESET: E.ECONNRESET, ESHUTDOWN: 108, ETIMEDOUT: E.ETIMEDOUT, ECONNREFUSED: E.ECONNREFUSED,
  EALREADY: E.EALREADY, ECANCELED: E.ECANCELED, EREMOTEIO: 121, EXFULL: 54, EIO: E.EIO,
  EDESTADDRREQ: E.EDESTADDRREQ, EDOM: E.EDOM, EMEDIUMTYPE: 124, ETXTBSY: E.ETXTBSY,
  EREMCHG: 78, EADDRNOTAVAIL: E.EADDRNOTAVAIL, ECHRNG: 44, ENOTCONN: E.ENOTCONN, EADDRINUSE: E.EADDRINUSE, EOWNERDEAD: 130, EDEADLK: E.EDEADLK,
} as const;

/**
 * Not an Error subclass on purpose: bad input is routine for a server, and
 * capturing a stack trace for every refused ioctl would dominate its cost.
 */
export class KdbusError {
  constructor(readonly errno: number, readonly message: string = `errno ${errno}`) {}
}

/** Throws KdbusError(err). Typed `never` so callers can `return fail(...)`. */
export function fail(err: number, message?: string): never {
  throw new KdbusError(err, message);
}
