// D-Bus messages of protocol version 2, laid out as sd-bus of February 2015
// put them on kdbus (GVARIANT-SERIALIZATION and bus-message.c):
//
//   0   y  endianness, 'l'        8  u  serial (the kdbus cookie, 32 bits)
//   1   y  message type          12  u  size of the header field array
//   2   y  flags                 16     header fields: GVariant a(yv)
//   3   y  version, 2                   zero padding to a multiple of 8
//   4   u  body size                    body: GVariant struct of the signature
//
// Only little-endian (native on x86-64) version 2 messages exist on kdbus;
// sd-bus ignored anything else and so does decodeMessage, with a CodecError.
import { refuse } from './codec-error.js';
import {
  isBusName, isErrorName, isInterfaceName, isMemberName, isObjectPath, requireName,
} from './dbus-names.js';
import { decodeBody, decodeValue, GVariantWriter, writeBody } from './gvariant.js';
import { alignTo, isValidSignature, parseSingleType } from './signature.js';
import { Variant, type DBusValue } from './variant.js';

export const PROTOCOL_VERSION = 2;
export const FIXED_HEADER_SIZE = 16;
export const LITTLE_ENDIAN = 0x6c; // 'l'

export const MessageType = { METHOD_CALL: 1, METHOD_RETURN: 2, ERROR: 3, SIGNAL: 4 } as const;
export type MessageType = (typeof MessageType)[keyof typeof MessageType];

/** The names sd-bus gave message types in match rules and bloom filters. */
export const MESSAGE_TYPE_NAMES: Record<MessageType, string> = {
  1: 'method_call', 2: 'method_return', 3: 'error', 4: 'signal',
};

export const MessageFlag = {
  NO_REPLY_EXPECTED: 1, NO_AUTO_START: 2, ALLOW_INTERACTIVE_AUTHORIZATION: 4,
} as const;

export const HeaderField = {
  PATH: 1, INTERFACE: 2, MEMBER: 3, ERROR_NAME: 4, REPLY_SERIAL: 5,
  DESTINATION: 6, SENDER: 7, SIGNATURE: 8, UNIX_FDS: 9,
} as const;

const HEADER_FIELDS_TYPE = parseSingleType('a(yv)');

export interface DBusMessage {
  type: MessageType;
  /** MessageFlag bits */
  flags: number;
  /** the header's serial; on kdbus it equals the message's kdbus cookie (sd-bus refused others) */
  cookie: number;
  path?: string;
  interface?: string;
  member?: string;
  errorName?: string;
  /** serial of the call a return or error answers (kdbus cookie_reply) */
  replyCookie?: number;
  destination?: string;
  sender?: string;
  /** the body's signature ('' for no body) */
  signature: string;
  /** how many fds the message carries (KDBUS_ITEM_FDS); 'h' values index them */
  unixFds?: number;
  body: DBusValue[];
}

/** Where one header field lives in a DBusMessage, its GVariant type and its check. */
interface FieldRule {
  key: 'path' | 'interface' | 'member' | 'errorName' | 'replyCookie' | 'destination' | 'sender' | 'signature' | 'unixFds';
  type: 'o' | 's' | 'u' | 'g';
  valid: (v: never) => boolean;
  what: string;
}

const positive = (v: number): boolean => Number.isInteger(v) && v > 0 && v <= 0xffff_ffff;
const count = (v: number): boolean => Number.isInteger(v) && v >= 0 && v <= 0xffff_ffff;

const FIELD_RULES: Record<number, FieldRule> = {
  [HeaderField.PATH]: { key: 'path', type: 'o', valid: isObjectPath, what: 'object path' },
  [HeaderField.INTERFACE]: { key: 'interface', type: 's', valid: isInterfaceName, what: 'interface name' },
  [HeaderField.MEMBER]: { key: 'member', type: 's', valid: isMemberName, what: 'member name' },
  [HeaderField.ERROR_NAME]: { key: 'errorName', type: 's', valid: isErrorName, what: 'error name' },
  [HeaderField.REPLY_SERIAL]: { key: 'replyCookie', type: 'u', valid: positive, what: 'reply serial' },
  [HeaderField.DESTINATION]: { key: 'destination', type: 's', valid: isBusName, what: 'destination bus name' },
  [HeaderField.SENDER]: { key: 'sender', type: 's', valid: isBusName, what: 'sender bus name' },
  [HeaderField.SIGNATURE]: { key: 'signature', type: 'g', valid: isValidSignature, what: 'signature' },
  [HeaderField.UNIX_FDS]: { key: 'unixFds', type: 'u', valid: count, what: 'fd count' },
};

// The order sd-bus appended header fields in: as each message kind's
// constructor did, then SIGNATURE and UNIX_FDS when the message was sealed.
const F = HeaderField;
const FIELD_ORDER: Record<MessageType, readonly number[]> = {
  [MessageType.METHOD_CALL]: [F.PATH, F.MEMBER, F.INTERFACE, F.DESTINATION],
  [MessageType.METHOD_RETURN]: [F.REPLY_SERIAL, F.DESTINATION],
  [MessageType.ERROR]: [F.REPLY_SERIAL, F.DESTINATION, F.ERROR_NAME],
  [MessageType.SIGNAL]: [F.PATH, F.INTERFACE, F.MEMBER, F.DESTINATION],
};
const SEAL_ORDER: number[] = [F.SIGNATURE, F.UNIX_FDS];

/** Every field in the order it is written for each type: the type's own, the rest, the sealed ones. */
const FIELD_ORDERS = Object.fromEntries(Object.entries(FIELD_ORDER).map(([type, first]) => {
  const rest = (Object.values(F) as number[]).filter(code => !first.includes(code) && !SEAL_ORDER.includes(code));
  return [type, [...first, ...rest, ...SEAL_ORDER]];
})) as unknown as Record<MessageType, readonly number[]>;

/** The checks sd-bus made of a message's fields for its type. */
function checkRequiredFields(m: DBusMessage): void {
  const need = (ok: unknown, what: string): void => {
    if (!ok) refuse(`${MESSAGE_TYPE_NAMES[m.type]} message ${what}`);
  };
  switch (m.type) {
    case MessageType.SIGNAL:
      need(m.path !== undefined && m.interface !== undefined && m.member !== undefined,
        'needs a path, an interface and a member');
      need(m.replyCookie === undefined, 'cannot carry a reply serial');
      break;
    case MessageType.METHOD_CALL:
      need(m.path !== undefined && m.member !== undefined, 'needs a path and a member');
      need(m.replyCookie === undefined, 'cannot carry a reply serial');
      break;
    case MessageType.METHOD_RETURN:
      need(m.replyCookie !== undefined, 'needs a reply serial');
      break;
    case MessageType.ERROR:
      need(m.replyCookie !== undefined && m.errorName !== undefined, 'needs a reply serial and an error name');
      break;
  }
  // only the local end of a connection speaks for org.freedesktop.DBus.Local
  need(m.path !== '/org/freedesktop/DBus/Local' && m.interface !== 'org.freedesktop.DBus.Local'
    && m.sender !== 'org.freedesktop.DBus.Local', 'claims to come from org.freedesktop.DBus.Local');
}

function checkTypeAndFlags(type: number, flags: number): asserts type is MessageType {
  if (!Object.hasOwn(MESSAGE_TYPE_NAMES, type)) refuse(`unknown message type ${type}`);
  if (!Number.isInteger(flags) || flags < 0 || flags > 0xff) refuse(`message flags ${flags} do not fit a byte`);
}

/**
 * The message as two buffers: fixed header, header fields and padding (a
 * multiple of 8 bytes), and the body. sd-bus sent them as separate kdbus
 * payload items; a large body may go into a memfd.
 */
export function encodeMessageParts(m: DBusMessage): { header: Buffer; body: Buffer } {
  const { message, bodyStart } = encode(m);
  return { header: message.subarray(0, bodyStart), body: message.subarray(bodyStart) };
}

/** The whole message in one buffer. */
export function encodeMessage(m: DBusMessage): Buffer {
  return encode(m).message;
}

function encode(m: DBusMessage): { message: Buffer; bodyStart: number } {
  checkTypeAndFlags(m.type, m.flags);
  if (!positive(m.cookie)) refuse(`message cookie ${m.cookie} is not a serial (1 to 2^32-1)`);
  checkRequiredFields(m);
  const fields: DBusValue[] = [];
  for (const code of FIELD_ORDERS[m.type]) {
    const rule = FIELD_RULES[code]!;
    const value = m[rule.key];
    // sd-bus left out an empty signature and a zero fd count
    if (value === undefined || (code === F.SIGNATURE && value === '') || (code === F.UNIX_FDS && value === 0)) continue;
    requireName(rule.valid as (v: unknown) => boolean, value as never, rule.what);
    fields.push([code, new Variant(rule.type, value)]);
  }
  // one buffer: the fixed header (filled in last), the fields, padding, the body
  const w = new GVariantWriter();
  w.padTo(FIXED_HEADER_SIZE);
  w.write(HEADER_FIELDS_TYPE, fields);
  const fieldsSize = w.len - FIXED_HEADER_SIZE;
  w.align(8);
  const bodyStart = w.len;
  writeBody(w, m.signature, m.body);
  const bodySize = w.len - bodyStart;
  if (bodySize > 0xffff_ffff) refuse(`body of ${bodySize} bytes does not fit the header's 32-bit size`);
  const message = w.result();
  message[0] = LITTLE_ENDIAN;
  message[1] = m.type;
  message[2] = m.flags;
  message[3] = PROTOCOL_VERSION;
  message.writeUInt32LE(bodySize, 4);
  message.writeUInt32LE(m.cookie, 8);
  message.writeUInt32LE(fieldsSize, 12);
  return { message, bodyStart };
}

/** The parts of a message's fixed header, read without looking further. */
export interface FixedHeader {
  type: number;
  flags: number;
  version: number;
  bodySize: number;
  cookie: number;
  fieldsSize: number;
  /** FIXED_HEADER_SIZE + fields + padding + body */
  messageSize: number;
}

export function readFixedHeader(data: Uint8Array): FixedHeader {
  if (data.length < FIXED_HEADER_SIZE) refuse(`malformed message: ${data.length} bytes, shorter than the fixed header`);
  const b = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  if (b[0] !== LITTLE_ENDIAN) refuse(`malformed message: endianness byte 0x${b[0]!.toString(16)} (kdbus carries 'l' only)`);
  const fieldsSize = b.readUInt32LE(12);
  const bodySize = b.readUInt32LE(4);
  return {
    type: b[1]!, flags: b[2]!, version: b[3]!, bodySize, cookie: b.readUInt32LE(8), fieldsSize,
    messageSize: FIXED_HEADER_SIZE + alignTo(fieldsSize, 8) + bodySize,
  };
}

/** Decodes one whole message; throws CodecError when it is malformed. */
export function decodeMessage(data: Uint8Array): DBusMessage {
  const h = readFixedHeader(data);
  if (h.version !== PROTOCOL_VERSION) refuse(`malformed message: protocol version ${h.version}, not ${PROTOCOL_VERSION}`);
  if (h.messageSize !== data.length) {
    refuse(`malformed message: header says ${h.messageSize} bytes (fields ${h.fieldsSize}, body ${h.bodySize}), ${data.length} given`);
  }
  if (h.cookie === 0) refuse('malformed message: serial 0');
  checkTypeAndFlags(h.type, h.flags);
  const fieldsEnd = FIXED_HEADER_SIZE + h.fieldsSize;
  const bodyStart = alignTo(fieldsEnd, 8);
  for (let i = fieldsEnd; i < bodyStart; i++) {
    if (data[i] !== 0) refuse(`malformed message: padding byte ${i} after the header fields is not zero`);
  }
  const m: DBusMessage = { type: h.type, flags: h.flags, cookie: h.cookie, signature: '', body: [] };
  const seen = new Set<number>();
  const fields = decodeValue(HEADER_FIELDS_TYPE, data.subarray(FIXED_HEADER_SIZE, fieldsEnd)) as [number, Variant][];
  for (const [code, variant] of fields) {
    if (code === 0) refuse('malformed message: header field code 0');
    const rule = FIELD_RULES[code];
    if (!rule) continue; // unknown fields are skipped, as sd-bus did
    if (seen.has(code)) refuse(`malformed message: header field ${rule.what} given twice`);
    seen.add(code);
    if (variant.signature !== rule.type) {
      refuse(`malformed message: header field ${rule.what} has type '${variant.signature}', not '${rule.type}'`);
    }
    if (!(rule.valid as (v: unknown) => boolean)(variant.value)) {
      refuse(`malformed message: invalid ${rule.what} ${JSON.stringify(variant.value)}`);
    }
    (m as unknown as Record<string, unknown>)[rule.key] = variant.value;
  }
  checkRequiredFields(m);
  m.body = decodeBody(m.signature, data.subarray(bodyStart));
  return m;
}

// ---------------------------------------------------------------- builders
// Cookies are the sender's business: builders leave 0, which encodeMessage
// refuses, until the connection numbers the message.

export interface Body {
  signature?: string;
  body?: DBusValue[];
}

function withBody(b: Body): { signature: string; body: DBusValue[] } {
  return { signature: b.signature ?? '', body: b.body ?? [] };
}

export function methodCall(o: Body & {
  destination?: string; path: string; interface?: string; member: string; flags?: number;
}): DBusMessage {
  return {
    type: MessageType.METHOD_CALL, flags: o.flags ?? 0, cookie: 0, path: o.path, member: o.member,
    ...(o.interface !== undefined && { interface: o.interface }),
    ...(o.destination !== undefined && { destination: o.destination }),
    ...withBody(o),
  };
}

/** A reply goes back to the call's sender and expects no reply itself (as sd-bus). */
function replyTo(call: DBusMessage, type: MessageType): DBusMessage {
  if (call.type !== MessageType.METHOD_CALL) refuse('only a method call can be replied to');
  return {
    type, flags: MessageFlag.NO_REPLY_EXPECTED, cookie: 0, replyCookie: call.cookie, signature: '', body: [],
    ...(call.sender !== undefined && { destination: call.sender }),
  };
}

export function methodReturn(call: DBusMessage, b: Body = {}): DBusMessage {
  return { ...replyTo(call, MessageType.METHOD_RETURN), ...withBody(b) };
}

/** An error reply; its optional text is the body's one string, as D-Bus has it. */
export function errorReply(call: DBusMessage, errorName: string, text?: string): DBusMessage {
  return {
    ...replyTo(call, MessageType.ERROR), errorName,
    ...(text !== undefined && { signature: 's', body: [text] }),
  };
}

/** A signal: a broadcast, or unicast when `destination` is given. */
export function signal(o: Body & { path: string; interface: string; member: string; destination?: string }): DBusMessage {
  return {
    type: MessageType.SIGNAL, flags: MessageFlag.NO_REPLY_EXPECTED, cookie: 0,
    path: o.path, interface: o.interface, member: o.member,
    ...(o.destination !== undefined && { destination: o.destination }),
    ...withBody(o),
  };
}

/** The text of an error message: its body's first value when that is a string. */
export function errorText(m: DBusMessage): string | undefined {
  return m.signature.startsWith('s') && typeof m.body[0] === 'string' ? m.body[0] : undefined;
}
