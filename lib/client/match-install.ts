// A D-Bus match rule installed on a kdbus connection: its kdbus matches (the
// bloom mask and sender, and the name/id notifications NameOwnerChanged
// stands for) added under one cookie, all or none.
import { ITEM } from '../abi/kdbus.js';
import type { Connection } from './connection.js';
import type { KdbusMatch } from './match-rule.js';

export function installMatch(kdbus: Connection, cookie: bigint, km: KdbusMatch): void {
  try {
    const r = km.rule;
    kdbus.addMatch(cookie, {
      ...(r.bloomMask && { bloomMask: r.bloomMask }),
      ...(r.senderName !== undefined && { name: r.senderName }),
      ...(r.senderId !== undefined && { id: r.senderId }),
    });
    for (const n of km.notifications) {
      if ('id' in n) {
        kdbus.addMatch(cookie, n.itemType === ITEM.ID_ADD ? { idAdd: { id: n.id } } : { idRemove: { id: n.id } });
      } else {
        const change = { oldId: n.oldId, newId: n.newId, ...(n.name !== undefined && { name: n.name }) };
        kdbus.addMatch(cookie, n.itemType === ITEM.NAME_ADD ? { nameAdd: change }
          : n.itemType === ITEM.NAME_REMOVE ? { nameRemove: change } : { nameChange: change });
      }
    }
  } catch (e) {
    try { kdbus.removeMatch(cookie); } catch { /* nothing was added */ }
    throw e;
  }
}
