"""
How big the SQLite store grows with the sync hook's copy map: N bridged messages (default
1,000,000), each posted on one channel and copied to K others (default 2), written as the sync
hook writes them (an entry per message keyed by its origin, one index row per copy), then the
file's size after a WAL checkpoint, and per message.

    hatch run python benchmarks/store_size.py [-n 1000000] [-k 2] [--keep]

The IDs are like IRC msgids and Matrix event IDs in length (16 and 44 characters); channel keys
like a plug name and an IRC channel. Retention (30 days by default) deletes entries older than
it, so the file stays near the size of the messages of one retention period; SQLite reuses the
freed pages (the file itself shrinks only with VACUUM).
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import tempfile
import time

import trio

import immp


async def fill(path: str, n: int, k: int) -> float:
    store = immp.SQLiteStore(path, namespace="bridge")
    await store.open()
    origin = "irc\x1f#bridge"
    copies = [f"matrix{i}\x1f!abcdefghijklmnop:example.org" for i in range(k)]
    started = time.perf_counter()
    for i in range(n):
        msgid = f"{i:016x}"
        ids = {c: [f"${i:043x}"] for c in copies}
        # As immp_sync's StoreCopyMap writes it: the origin's own ID only in "origin", and no
        # "deleted" while it is false.
        entry = {"origin": [origin, msgid], "ids": ids}
        key = immp.message_key(origin, msgid)
        store.messages.put("sync", key, entry, [])
        for channel, (event,) in ids.items():
            store.messages.put("sync", key, entry, [(channel, event)])
        if i % 5000 == 4999:
            await store.flush()  # as a bridge's flushes come: a batch at a time
    await store.flush()
    took = time.perf_counter() - started
    await store.close()
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=1_000_000)
    parser.add_argument("-k", type=int, default=2)
    parser.add_argument("--keep", action="store_true", help="keep the database file")
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="immp-size-")
    path = os.path.join(folder, "bridge.db")
    took = trio.run(fill, path, args.n, args.k)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    rows = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("messages", "message_ids")}  # fmt: skip
    conn.close()
    size = os.path.getsize(path)
    print(f"{args.n} messages, {args.k} copies each, in {took:.1f} s "
          f"({args.n / took:.0f} messages/s through the store's thread)")  # fmt: skip
    print(f"rows: {rows['messages']} entries, {rows['message_ids']} copy IDs")
    print(f"file: {size / 2**20:.1f} MiB, {size / args.n:.0f} bytes per message")
    if args.keep:
        print(path)
    else:
        os.remove(path)
        os.rmdir(folder)


if __name__ == "__main__":
    main()
