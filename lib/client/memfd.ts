// Sealed memfds: the only memfds kdbus takes as PAYLOAD_MEMFD (sealed
// against shrink, grow, write and further seals).
import { readSync, writeSync, fstatSync } from 'node:fs';
import { KdbusClientError, errnoName } from './errors.js';
import { clientNative } from './native.js';

// fcntl F_SEAL_* (Linux)
export const SEAL_SEAL = 1;
export const SEAL_SHRINK = 2;
export const SEAL_GROW = 4;
export const SEAL_WRITE = 8;
export const SEALS_KDBUS = SEAL_SEAL | SEAL_SHRINK | SEAL_GROW | SEAL_WRITE;

function checked(what: string, ret: number): number {
  if (ret < 0) throw new KdbusClientError(-ret, what, errnoName(-ret) === 'EPERM' ? 'the memfd is already sealed' : undefined);
  return ret;
}

/** A memfd holding data, sealed for kdbus; the caller owns (and closes) the fd. */
export function sealedMemfd(data: Buffer, name = 'kdbusfs-payload'): number {
  const fd = checked('memfd_create', clientNative.memfdCreate(name));
  try {
    for (let off = 0; off < data.length;) off += writeSync(fd, data, off, data.length - off, off);
    checked('F_ADD_SEALS', clientNative.addSeals(fd, SEALS_KDBUS));
  } catch (e) {
    clientNative.close(fd);
    throw e;
  }
  return fd;
}

/** The seals of an fd (F_GET_SEALS). */
export function memfdSeals(fd: number): number {
  return checked('F_GET_SEALS', clientNative.getSeals(fd));
}

/** Reads [start, start+size) of a received memfd (size defaults to the rest of the file). */
export function readMemfd(fd: number, start = 0, size = fstatSync(fd).size - start): Buffer {
  const out = Buffer.alloc(size);
  for (let got = 0; got < size;) {
    const n = readSync(fd, out, got, size - got, start + got);
    if (n === 0) break;
    got += n;
  }
  return out;
}
