#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Independent check of an agentcage audit store's hash chain (standard library only).

Follows the recipe in daemon/core/store/store.h without agentcage's code:
  rows in seq order, consecutive from meta.checkpoint_seq + 1 to meta.head_seq;
  row.prev_hash == previous row's hash (the checkpoint hash for the first row);
  row.hash == SHA-256(row.prev_hash || row.event), or in a keyed stretch of the chain
  (meta.chain_epochs "FIRST_SEQ:KEY_ID;...", KEY_ID "-" = unkeyed)
  HMAC-SHA256(key, row.prev_hash || row.event) with the key of that id from --key FILE;
  a keyed stretch is never followed by an unkeyed one;
  the last hash == meta.head_hash;
  node stores: the event's protobuf field 1 (seq) == row seq.
Prints "OK: N events, chain intact" or "BROKEN at seq N: ..." (exit 1), or
"UNVERIFIED ..." (exit 2) when the chain is keyed and the key is not given.
Usage: verify_audit_chain.py [--key CHAIN_KEY_FILE] STORE.db
"""
import hashlib
import hmac
import sqlite3
import sys


def varint(buf, i):
    shift = value = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, i


def event_seq(blob):
    """Field 1 (seq, varint) of an agentcage.v1.Event; 0 when absent."""
    i = 0
    while i < len(blob):
        key, i = varint(blob, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            v, i = varint(blob, i)
            if field == 1:
                return v
        elif wire == 2:
            n, i = varint(blob, i)
            i += n
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        else:
            raise ValueError("bad wire type %d" % wire)
    return 0


def load_keys(path):
    """Key id -> secret from a chain key file ("v1 ID HEX CREATED" lines)."""
    keys = {}
    if path:
        for line in open(path):
            f = line.split()
            if len(f) >= 3 and f[0] == "v1":
                keys[f[1]] = bytes.fromhex(f[2])
    return keys


def epochs_of(meta, head):
    """[(first_seq, key_id)]; a store without chain_epochs is unkeyed from seq 1."""
    raw = meta.get("chain_epochs")
    if raw is None:
        return [(1, "-")] if head else []
    raw = raw.decode() if isinstance(raw, bytes) else raw
    out = []
    for item in filter(None, raw.split(";")):
        seq, key_id = item.split(":", 1)
        out.append((int(seq), key_id))
    return out


def main(path, keys):
    db = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
    meta = {k: v for k, v in db.execute("SELECT key, value FROM meta")}
    as_int = lambda v: int(v.decode() if isinstance(v, bytes) else v)
    node_store = (meta["mode"].decode() if isinstance(meta["mode"], bytes) else meta["mode"]) == "node"
    expect = as_int(meta["checkpoint_seq"]) + 1
    prev = bytes(meta["checkpoint_hash"])
    head = as_int(meta["head_seq"])
    epochs = epochs_of(meta, head)
    for (_, a), (s2, b) in zip(epochs, epochs[1:]):
        if a != "-" and b == "-":
            return "BROKEN at seq %d: the chain drops its key" % s2
    n = 0
    for seq, event, prev_hash, h in db.execute("SELECT seq, event, prev_hash, hash FROM events ORDER BY seq"):
        if seq != expect:
            return "BROKEN at seq %d: expected seq %d, found %d" % (expect, expect, seq)
        key_id = [k for first, k in epochs if first <= seq][-1:] or [None]
        key_id = key_id[0]
        data = bytes(prev_hash) + bytes(event)
        if key_id is None:
            return "BROKEN at seq %d: no chain epoch covers it" % seq
        if key_id == "-":
            want = hashlib.sha256(data).digest()
        elif key_id in keys:
            want = hmac.new(keys[key_id], data, hashlib.sha256).digest()
        else:
            return "UNVERIFIED at seq %d: keyed with key id %s; pass --key FILE" % (seq, key_id)
        if want != bytes(h):
            return "BROKEN at seq %d: hash does not match the event" % seq
        if bytes(prev_hash) != prev:
            return "BROKEN at seq %d: prev_hash does not link to seq %d" % (seq, seq - 1)
        if node_store and event_seq(bytes(event)) != seq:
            return "BROKEN at seq %d: the event says seq %d" % (seq, event_seq(bytes(event)))
        prev = bytes(h)
        expect += 1
        n += 1
    if expect - 1 != head:
        return "BROKEN at seq %d: rows end before the head %d" % (expect, head)
    if prev != bytes(meta["head_hash"]):
        return "BROKEN at seq %d: head hash mismatch" % head
    return "OK: %d events, chain intact" % n


if __name__ == "__main__":
    args = sys.argv[1:]
    key_file = None
    if len(args) == 3 and args[0] == "--key":
        key_file, args = args[1], args[2:]
    if len(args) != 1:
        sys.exit(__doc__)
    msg = main(args[0], load_keys(key_file))
    print(msg)
    sys.exit(0 if msg.startswith("OK") else 2 if msg.startswith("UNVERIFIED") else 1)
