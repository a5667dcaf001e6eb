// What a monitor connection received, as busctl of 2015 saw it: a D-Bus
// message (its serialization as the sender put it on the bus, decoded and
// completed from the kdbus header as sd-bus did), a kernel notification
// turned into the message sd-bus made of it (NameOwnerChanged signals, NoReply
// errors; serial 0xffffffff, from org.freedesktop.DBus), or something that is
// no D-Bus message at all (another payload type, a malformed one, a
// notification sd-bus had no message for), kept as the kdbus message.
import { closeSync } from 'node:fs';
import {
  KDBUS_DST_ID_BROADCAST, KDBUS_SRC_ID_KERNEL, NAME_ACTIVATOR, NAME_IN_QUEUE, PAYLOAD_DBUS,
} from '../abi/kdbus.js';
import { CodecError } from '../client/codec-error.js';
import { encodeMessage, MessageFlag, MessageType, type DBusMessage } from '../client/dbus-message.js';
import { DRIVER_NAME, fromKdbus } from '../client/kdbus-envelope.js';
import { readMemfd } from '../client/memfd.js';
import type { Message, Notification } from '../client/message.js';

/** sd-bus's serial for the messages it made itself (bus_seal_synthetic_message). */
export const SYNTHETIC_SERIAL = 0xffff_ffff;
const NO_REPLY = 'org.freedesktop.DBus.Error.NoReply';

export type Observed =
  | {
    kind: 'dbus';
    message: DBusMessage;
    /** the message's D-Bus serialization: what a pcap record holds */
    wire: Buffer;
    /** made from a kernel notification */
    synthetic: boolean;
    kmsg: Message;
  }
  | {
    kind: 'kdbus';
    kmsg: Message;
    /** every payload byte in order (PAYLOAD_OFF parts, then memfds) */
    payload: Buffer;
    /** why this is not shown as a D-Bus message */
    why: string;
  };

/**
 * Makes sense of one received message (in copying mode). Takes what the
 * message carries into this process: memfds are read, and they and the fds
 * are closed (a monitor keeps no fds).
 */
export function observe(kmsg: Message, monitorName: string): Observed {
  const parts = [...kmsg.payload];
  for (const m of kmsg.memfds) {
    if (m.fd >= 0) parts.push(readMemfd(m.fd, m.start, m.size));
  }
  const fdCount = kmsg.fds.length;
  for (const fd of [...kmsg.memfds.map((m) => m.fd), ...kmsg.fds]) {
    if (fd >= 0) closeSync(fd);
  }
  const payload = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  if (kmsg.srcId === KDBUS_SRC_ID_KERNEL && kmsg.notification) {
    const message = fromNotification(kmsg.notification, kmsg);
    if (!message) return { kind: 'kdbus', kmsg, payload, why: 'a queue or activator change sd-bus made no message of' };
    try {
      return { kind: 'dbus', message, wire: encodeMessage(withoutSender(message)), synthetic: true, kmsg };
    } catch (e) {
      if (!(e instanceof CodecError)) throw e;
      return { kind: 'kdbus', kmsg, payload, why: `no message can say this notification: ${e.message}` };
    }
  }
  if (kmsg.payloadType !== PAYLOAD_DBUS) {
    return { kind: 'kdbus', kmsg, payload, why: `payload type 0x${kmsg.payloadType.toString(16)}, not D-Bus` };
  }
  try {
    const message = fromKdbus(payload, {
      flags: kmsg.flags, srcId: kmsg.srcId, dstId: kmsg.dstId, cookie: kmsg.cookie, cookieReply: kmsg.cookieReply,
      fdCount, ...(kmsg.dstName !== undefined && { dstName: kmsg.dstName }),
    }, monitorName);
    return { kind: 'dbus', message, wire: payload, synthetic: false, kmsg };
  } catch (e) {
    if (!(e instanceof CodecError)) throw e;
    return { kind: 'kdbus', kmsg, payload, why: e.message };
  }
}

/** The sender is the kernel's word on kdbus, never a header field: the synthetic messages had none. */
function withoutSender(m: DBusMessage): DBusMessage {
  const copy = { ...m };
  delete copy.sender;
  return copy;
}

const unique = (id: bigint): string => `:1.${id}`;

function nameOwnerChanged(name: string, oldOwner: string, newOwner: string): DBusMessage {
  return {
    type: MessageType.SIGNAL, flags: MessageFlag.NO_REPLY_EXPECTED, cookie: SYNTHETIC_SERIAL,
    path: '/org/freedesktop/DBus', interface: DRIVER_NAME, member: 'NameOwnerChanged', sender: DRIVER_NAME,
    signature: 'sss', body: [name, oldOwner, newOwner],
  };
}

/**
 * The message sd-bus made of a notification (bus_kernel_translate_message),
 * or null where it made none: a name passed between queued owners or
 * activators has no owner change to tell. A reply notification's error goes
 * to the caller the kernel told (sd-bus, receiving it itself, named itself).
 */
function fromNotification(n: Notification, kmsg: Message): DBusMessage | null {
  switch (n.type) {
    case 'id-add':
      return nameOwnerChanged(unique(n.id), '', unique(n.id));
    case 'id-remove':
      return nameOwnerChanged(unique(n.id), unique(n.id), '');
    case 'name-add': case 'name-remove': case 'name-change': {
      const hidden = NAME_IN_QUEUE | NAME_ACTIVATOR;
      const oldOwner = n.type === 'name-add' || (n.oldFlags & hidden) !== 0n ? '' : unique(n.oldId);
      const gone = n.type === 'name-remove' || (n.newFlags & hidden) !== 0n;
      if (gone && oldOwner === '') return null;
      return nameOwnerChanged(n.name, oldOwner, gone ? '' : unique(n.newId));
    }
    case 'reply-timeout': case 'reply-dead':
      return {
        type: MessageType.ERROR, flags: MessageFlag.NO_REPLY_EXPECTED, cookie: SYNTHETIC_SERIAL,
        replyCookie: Number(n.cookie & 0xffff_ffffn),
        ...(kmsg.dstId !== KDBUS_DST_ID_BROADCAST && { destination: unique(kmsg.dstId) }),
        errorName: NO_REPLY, sender: DRIVER_NAME, signature: 's',
        body: [n.type === 'reply-timeout' ? 'Method call timed out' : 'Method call peer died'],
      };
  }
}
