// The D-Bus specification's rules for object paths, interface, member, error
// and bus names (what sd-bus checked with object_path_is_valid & co.).
import { refuse } from './codec-error.js';

/** Names of every kind are at most this long (D-Bus specification). */
export const MAX_NAME_LENGTH = 255;

const PATH = /^\/(?:[A-Za-z0-9_]+(?:\/[A-Za-z0-9_]+)*)?$/;
const DOTTED = /^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+$/;
const MEMBER = /^[A-Za-z_][A-Za-z0-9_]*$/;
const WELL_KNOWN = /^[A-Za-z_-][A-Za-z0-9_-]*(?:\.[A-Za-z_-][A-Za-z0-9_-]*)+$/;
const UNIQUE = /^:[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)+$/;

export function isObjectPath(s: string): boolean {
  return PATH.test(s);
}

export function isInterfaceName(s: string): boolean {
  return s.length <= MAX_NAME_LENGTH && DOTTED.test(s);
}

/** Error names follow the interface name rules. */
export const isErrorName = isInterfaceName;

export function isMemberName(s: string): boolean {
  return s.length <= MAX_NAME_LENGTH && MEMBER.test(s);
}

export function isUniqueName(s: string): boolean {
  return s.length <= MAX_NAME_LENGTH && UNIQUE.test(s);
}

export function isWellKnownName(s: string): boolean {
  return s.length <= MAX_NAME_LENGTH && WELL_KNOWN.test(s);
}

export function isBusName(s: string): boolean {
  return isUniqueName(s) || isWellKnownName(s);
}

/** Throws CodecError unless `valid(value)`; `what` names the value in the message. */
export function requireName(valid: (s: string) => boolean, value: string, what: string): string {
  if (!valid(value)) refuse(`invalid ${what}: ${JSON.stringify(value)}`);
  return value;
}

/**
 * The id of a kdbus unique name ":1.<id>" (bus_kernel_parse_unique_name), null
 * for any other name; a ":1." name without a 64-bit decimal id is refused.
 */
export function uniqueNameId(name: string): bigint | null {
  if (!name.startsWith(':1.')) return null;
  const digits = name.slice(3);
  if (!/^[0-9]+$/.test(digits) || BigInt(digits) >= 1n << 64n) {
    refuse(`${JSON.stringify(name)} is not a kdbus unique name (":1." and a 64-bit decimal id)`);
  }
  return BigInt(digits);
}
