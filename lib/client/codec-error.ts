// The one error the D-Bus codec throws: for malformed bytes received and for
// values or names a caller asked it to encode that D-Bus does not allow.

export class CodecError extends Error {
  override name = 'CodecError';
}

/** Throws CodecError(message); typed `never` so callers can `return refuse(...)`. */
export function refuse(message: string): never {
  throw new CodecError(message);
}
