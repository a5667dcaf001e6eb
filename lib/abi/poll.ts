// poll(2) event bits (asm-generic/poll.h), as FUSE_POLL answers carry them.
export const POLLIN = 0x1;
export const POLLOUT = 0x4;
export const POLLERR = 0x8;
export const POLLHUP = 0x10;
export const POLLRDNORM = 0x40;
export const POLLWRNORM = 0x100;
