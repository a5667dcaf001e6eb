// The JavaScript shape of D-Bus values, and the Variant that carries its own
// signature.
//
//   y n q i u h   number          (h: index into the message's fd list)
//   b             boolean
//   x t           bigint
//   d             number
//   s o g         string
//   ay            Buffer (decoded; Uint8Array or number[] accepted when encoding)
//   a{KV}         Map (decoded, a repeated key keeping its last value; a plain
//                 object for string keys, or [key, value] pairs, accepted
//                 when encoding)
//   aT            array
//   (...)         array of the fields
//   v             Variant
import { parseSingleType, type DBusType } from './signature.js';

export type DBusValue =
  | number | bigint | boolean | string
  | Uint8Array
  | Variant
  | DBusValue[]
  | Map<DBusValue, DBusValue>
  | { [key: string]: DBusValue };

export class Variant {
  /** the parsed single complete type of `signature` */
  readonly type: DBusType;

  /** Throws CodecError when `signature` is not one complete type. */
  constructor(readonly signature: string, readonly value: DBusValue) {
    this.type = parseSingleType(signature);
  }
}
