#!/usr/bin/env python3
"""The gauntlet's reconciliation: every seq each agent assigned against the
rows the collector stored (see bench/gauntlet.sh for the run around it).

Ground truth, per agent, from what the agent itself keeps and says:
- its queue's `meta` file, written by the clean `close()` that ends the
  run: `next_floor` is then exact (every seq below it was handed out, none
  at or above it), `acked` is the last seq the broker acknowledged,
  `dropped_total` the records the size cap dropped (oldest first, counted,
  not named) and `quarantined_total` the segments recovery set aside;
- the ranges it declared skipped after an unclean stop on another boot
  (`OpenReport::seq_skipped`): from its log, each lifetime's warning
  "sequence numbers skipped from=A to=B" (half-open), cross-checked
  against the `agent_started` events the collector stored.

A sample refused by a full disk is never assigned a seq (the queue's
append fails and its next seq stays where it was), so it appears nowhere
here: that loss is by design and only visible as a gap in time.

Per device: assigned = [0, next_floor) minus the declared ranges; a seq
assigned and acknowledged (<= acked) but in none of `sample`,
`sample_new`, `event` is lost; assigned above `acked`, not stored and
found in a valid frame of the agent's segment files is pending (not
lost: the next run sends it), and lost if it is not there; rows beyond the
count of distinct seqs are stored twice; a stored seq that was never
assigned is a phantom. Exit 1 on any loss, double store, phantom, cap
drop or quarantine.
"""

import argparse
import json
import re
import sqlite3
import struct
import sys
import zlib
from pathlib import Path


def read_meta(path):
    b = Path(path).read_bytes()
    if b[:4] != b"PKQM":
        raise SystemExit(f"{path}: not a queue meta file")
    _ver, flags = struct.unpack_from("<HH", b, 4)
    lease, floor, acked, dropped, quarantined = struct.unpack_from("<5Q", b, 8)
    return {
        "clean": bool(flags & 1),
        "acked": acked if flags & 2 else None,
        "lease": lease,
        "next": floor,
        "dropped": dropped,
        "quarantined": quarantined,
    }


def queued_seqs(qdir):
    """The seqs of the valid frames in the queue's segment files (format in
    agent/src/queue/segment.rs): what the agent still holds to send."""
    seqs = set()
    for seg in sorted(Path(qdir).glob("*.seg")):
        b = seg.read_bytes()
        off = 20
        while off + 25 <= len(b):
            (length, crc) = struct.unpack_from("<II", b, off)
            end = off + 25 + length
            if end > len(b) or zlib.crc32(b[off : off + 4] + b[off + 8 : end]) != crc:
                break
            seqs.add(struct.unpack_from("<Q", b, off + 8)[0])
            off = end
    return seqs


def ranges(seqs):
    """Sorted ints as 'a-b' runs."""
    out, start, prev = [], None, None
    for s in seqs:
        if start is None:
            start = prev = s
        elif s == prev + 1:
            prev = s
        else:
            out.append((start, prev))
            start = prev = s
    if start is not None:
        out.append((start, prev))
    return out


def fmt_ranges(rs, limit=12):
    text = ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in rs[:limit])
    return text + (f", ... ({len(rs)} ranges)" if len(rs) > limit else "")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--db", required=True)
    p.add_argument("--collector-view", help="JSON: device -> the API's seq object")
    p.add_argument("agents", nargs="+", help="DEVICE:QUEUE_DIR:AGENT_LOG")
    a = p.parse_args()
    db = sqlite3.connect(f"file:{a.db}?mode=ro", uri=True)
    view = json.loads(Path(a.collector_view).read_text()) if a.collector_view else {}
    cols = ("assigned", "stored", "dup_rows", "lost", "skipped", "pending", "dropped", "quarant")
    print(f"{'device':<14}" + "".join(f"{c:>10}" for c in cols) + f"{'collector dup':>15}")
    total = dict.fromkeys(cols, 0)
    total_cdup = 0
    problems = []
    details = []
    for spec in a.agents:
        dev, qdir, log = spec.split(":")
        m = read_meta(Path(qdir) / "meta")
        if not m["clean"]:
            problems.append(f"{dev}: the queue was not closed cleanly: its next seq is not exact")
        declared = []
        text = re.sub(r"\x1b\[[0-9;]*m", "", Path(log).read_text(errors="replace"))
        for line in text.splitlines():
            if "sequence numbers skipped" in line:
                f = re.search(r"from=(\d+)", line)
                t = re.search(r"to=(\d+)", line)
                if f and t:
                    declared.append((int(f.group(1)), int(t.group(1))))
        row = db.execute("SELECT id FROM device WHERE name = ?", (dev,)).fetchone()
        counts = {}
        events_skipped = []
        if row:
            did = row[0]
            for table in ("sample", "sample_new", "event"):
                for (seq,) in db.execute(f"SELECT seq FROM {table} WHERE device_id = ?", (did,)):
                    counts[seq] = counts.get(seq, 0) + 1
            for (body,) in db.execute(
                "SELECT body FROM event WHERE device_id = ? AND kind = 'agent_started'", (did,)
            ):
                nums = re.findall(r'"seq_skipped"\s*:\s*\[\s*(\d+)\s*,\s*(\d+)\s*\]', body)
                events_skipped += [(int(x), int(y)) for x, y in nums]
        if sorted(events_skipped) != sorted(set(declared)):
            details.append(
                f"{dev}: skipped ranges in the agent's log {sorted(declared)}, "
                f"in its stored agent_started events {sorted(events_skipped)}"
            )
        skipped = set()
        for f, t in declared:
            skipped.update(range(f, t))
        acked = m["acked"] if m["acked"] is not None else -1
        assigned = [s for s in range(m["next"]) if s not in skipped]
        # Above the ack cursor and not stored: still queued on the agent's
        # disk (sent by its next run), or lost if its queue does not hold it.
        queued = queued_seqs(qdir)
        lost = [s for s in assigned if s not in counts and (s <= acked or s not in queued)]
        pending = [s for s in assigned if s > acked and s not in counts and s in queued]
        phantom = sorted(s for s in counts if s >= m["next"] or s in skipped)
        dup_rows = sum(n - 1 for n in counts.values() if n > 1)
        twice = sorted(s for s, n in counts.items() if n > 1)
        cdup = (view.get(dev) or {}).get("duplicates", 0)
        r = {
            "assigned": len(assigned),
            "stored": len(counts),
            "dup_rows": dup_rows,
            "lost": len(lost),
            "skipped": len(skipped),
            "pending": len(pending),
            "dropped": m["dropped"],
            "quarant": m["quarantined"],
        }
        for c in cols:
            total[c] += r[c]
        total_cdup += cdup
        print(f"{dev:<14}" + "".join(f"{r[c]:>10}" for c in cols) + f"{cdup:>15}")
        if lost:
            problems.append(f"{dev}: lost seqs {fmt_ranges(ranges(lost))}")
            for lo, hi in ranges(lost)[:12]:
                before = neighbour(db, did, lo, "<", "DESC")
                after = neighbour(db, did, hi, ">", "ASC")
                details.append(f"{dev}: lost {lo}-{hi}: stored neighbours {before} and {after}")
        if twice:
            problems.append(f"{dev}: stored twice: seqs {fmt_ranges(ranges(twice))}")
        if phantom:
            problems.append(f"{dev}: stored but never assigned: seqs {fmt_ranges(ranges(phantom))}")
        if m["dropped"] or m["quarantined"]:
            problems.append(
                f"{dev}: the queue dropped {m['dropped']} records (cap) and quarantined "
                f"{m['quarantined']} segments: their records are lost"
            )
        if pending:
            details.append(f"{dev}: still in its queue after the clean stop: {fmt_ranges(ranges(pending))}")
        v = view.get(dev)
        if v and v.get("missing"):
            details.append(f"{dev}: the collector counts {v['missing']} missing: {v.get('missing_ranges')}")
    print(f"{'total':<14}" + "".join(f"{total[c]:>10}" for c in cols) + f"{total_cdup:>15}")
    for d in details:
        print(f"  note: {d}")
    for pr in problems:
        print(f"  FAIL: {pr}")
    return 1 if problems else 0


def neighbour(db, did, seq, op, order):
    """The nearest stored record's seq and time (unix ms) on one side."""
    best = None
    for table in ("sample", "sample_new", "event"):
        r = db.execute(
            f"SELECT seq, ts FROM {table} WHERE device_id = ? AND seq {op} ? ORDER BY seq {order} LIMIT 1",
            (did, seq),
        ).fetchone()
        if r and (best is None or (r[0] > best[0] if op == "<" else r[0] < best[0])):
            best = r
    return f"seq {best[0]} ts {best[1]}" if best else "none"


if __name__ == "__main__":
    sys.exit(main())
