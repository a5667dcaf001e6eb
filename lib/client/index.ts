// kdbusfs/client: a kdbus client for Node (the package export).
export {
  Connection, connect, endpointPath, DEFAULT_ROOT, DEFAULT_POOL_SIZE, DEFAULT_CALL_TIMEOUT_MS,
  type ConnectOptions, type ConnectionKind, type NameFlags, type SendOptions, type RecvOptions, type NameListFlags,
} from './connection.js';
export { BusOwner, makeBus, makeEndpoint, type MakeBusOptions, type MakeEndpointOptions, type MakeAccess } from './bus-owner.js';
export { KdbusClientError, errnoName } from './errors.js';
export type { Message, Notification, ReceivedMemfd } from './message.js';
export type { Metadata, Timestamp, Creds, Pids, Caps, Audit, OwnedName, RawItem } from './metadata.js';
export type { Info, NameListEntry, BloomParameter } from './info.js';
export type { MatchRule, NameChangeRule, IdChangeRule } from './match-items.js';
export type { PolicyEntry, Grant, Access } from './policy.js';
export { sealedMemfd, readMemfd, memfdSeals, SEALS_KDBUS, SEAL_SEAL, SEAL_SHRINK, SEAL_GROW, SEAL_WRITE } from './memfd.js';
export { ATTACH, ATTACH_ALL, ATTACH_ANY } from '../abi/kdbus.js';
export {
  BusConnection, MEMFD_MIN_SIZE, RequestNameFlag, RequestNameReply, ReleaseNameReply,
  type BusConnectOptions, type CallOptions, type SignalOptions, type IncomingMessage, type Subscription, type Credentials,
} from './bus-connection.js';
export { DBusError, ErrorName } from './dbus-error.js';
export { ObjectTree, ExportedObject, ReplyWithFds, type InterfaceSpec, type MethodSpec, type PropertySpec } from './objects.js';
export { Proxy } from './proxy.js';
export { Variant, type DBusValue } from './variant.js';
export { MessageType, MessageFlag, type DBusMessage } from './dbus-message.js';
