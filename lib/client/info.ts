// Answers the kernel writes into the pool as struct kdbus_info records
// (CONN_INFO, BUS_CREATOR_INFO, NAME_LIST), decoded into plain objects.
import { BLOOM_PARAMETER, INFO, ITEM, NAME_INFO, NAME_LIST_HEADER } from '../abi/kdbus.js';
import { addMetadata, itemString, ownedName, rawItems, type Metadata, type RawItem } from './metadata.js';

export interface BloomParameter { size: number; nHash: number }

export interface Info {
  /** the connection's id (CONN_INFO) or the bus's id (BUS_CREATOR_INFO) */
  id: bigint;
  /** the connection's HELLO flags or the bus's flags */
  flags: bigint;
  metadata: Metadata;
  /** BUS_CREATOR_INFO: the bus's bloom parameters */
  bloom?: BloomParameter;
  /** BUS_CREATOR_INFO: the bus's name */
  busName?: string;
  /** items this decoder does not know, as views */
  otherItems: RawItem[];
}

/** One entry of a NAME_LIST answer: a connection and, unless listed by id only, one of its names. */
export interface NameListEntry {
  ownerId: bigint;
  connFlags: bigint;
  name?: string;
  /** the name's flags (IN_QUEUE, ACTIVATOR, ...) */
  nameFlags?: bigint;
  metadata: Metadata;
}

export function bloomParameter(data: Buffer): BloomParameter {
  return { size: Number(data.readBigUInt64LE(BLOOM_PARAMETER.size)), nHash: Number(data.readBigUInt64LE(BLOOM_PARAMETER.n_hash)) };
}

/** The kdbus_info at buf[off, off+size). */
export function decodeInfo(buf: Buffer, off: number): Info {
  const size = Number(buf.readBigUInt64LE(off + INFO.size));
  const info: Info = {
    id: buf.readBigUInt64LE(off + INFO.id), flags: buf.readBigUInt64LE(off + INFO.flags), metadata: {}, otherItems: [],
  };
  for (const it of rawItems(buf, off + INFO.items, off + size)) {
    if (addMetadata(info.metadata, it)) continue;
    if (it.type === ITEM.BLOOM_PARAMETER) info.bloom = bloomParameter(it.data);
    else if (it.type === ITEM.MAKE_NAME) info.busName = itemString(it.data, 'latin1');
    else info.otherItems.push(it);
  }
  return info;
}

/** The struct kdbus_name_list at buf[off]: its kdbus_name_info records. */
export function decodeNameList(buf: Buffer, off: number): NameListEntry[] {
  const end = off + Number(buf.readBigUInt64LE(off));
  const out: NameListEntry[] = [];
  for (let p = off + NAME_LIST_HEADER; p < end;) {
    const size = Number(buf.readBigUInt64LE(p + NAME_INFO.size));
    if (size < NAME_INFO.items) break;
    const e: NameListEntry = {
      ownerId: buf.readBigUInt64LE(p + NAME_INFO.owner_id), connFlags: buf.readBigUInt64LE(p + NAME_INFO.conn_flags), metadata: {},
    };
    for (const it of rawItems(buf, p + NAME_INFO.items, p + size)) {
      if (it.type === ITEM.OWNED_NAME) {
        const n = ownedName(it.data);
        e.name = n.name;
        e.nameFlags = n.flags;
      } else {
        addMetadata(e.metadata, it);
      }
    }
    out.push(e);
    p += Math.ceil(size / 8) * 8;
  }
  return out;
}
