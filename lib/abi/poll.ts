// poll(2) event bits (asm-generic/poll.h), as FUSE_POLL answers carry them.
export const POLL = { IN: 0x1, OUT: 0x4, ERR: 0x8, HUP: 0x10, RDNORM: 0x40, WRNORM: 0x100 } as const;
