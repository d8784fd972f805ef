#!/usr/bin/env python3
"""The gauntlet's fault schedule, drawn from a seed (see bench/gauntlet.sh).

Prints one action a line, `SECONDS ACTION [ARGS]`, in time order, SECONDS
counted from the start of the fault phase. A fault with a duration (a
broker down, a stall, a full disk) is two actions, its start and its
repair; a resource is never hit again before its repair, so every line
makes sense when it runs. The same seed, count, agents and seconds give
the same schedule. The faults by kind go to stderr as `kind count` lines.
"""

import argparse
import random
import sys

# kind: weight. The resource each kind needs free is in `resource` below.
KINDS = {
    "agent_kill": 18,  # SIGKILL an agent, restart it 0-3 s later
    "agent_reboot": 4,  # the same, and its host "reboots": a new boot id
    "proxy_cut": 14,  # reset every agent connection
    "proxy_stall": 10,  # agent connections pass nothing for 1-8 s
    "clock_step": 14,  # an agent's wall clock stepped back or forward
    "disk_full": 12,  # an agent's queue file system full for 2-12 s
    "broker_kill": 11,  # SIGKILL Mosquitto, restart it 0.2-5 s later
    "broker_restart": 6,  # SIGTERM Mosquitto (it saves), start it again
    "collector_kill": 11,  # SIGKILL the collector, restart it 0-5 s later
}


def resource(kind, agent):
    if kind in ("agent_kill", "agent_reboot"):
        return f"agent{agent}"
    if kind == "disk_full":
        return f"disk{agent}"
    if kind == "clock_step":
        return f"clock{agent}"
    if kind == "proxy_stall":
        return "stall"
    if kind in ("broker_kill", "broker_restart"):
        return "broker"
    if kind == "collector_kill":
        return "collector"
    return None  # proxy_cut: always possible


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--faults", type=int, required=True)
    p.add_argument("--agents", type=int, required=True)
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--exclude", default="", help="kinds left out, comma-separated")
    a = p.parse_args()
    excluded = {k for k in a.exclude.split(",") if k}
    unknown = excluded - set(KINDS)
    if unknown or excluded == set(KINDS):
        sys.exit(f"--exclude: unknown kinds {sorted(unknown)} or nothing left")
    rng = random.Random(a.seed)
    gap = a.seconds / a.faults
    busy = {}  # resource -> time it is repaired
    clock = [0] * a.agents  # each agent's offset, seconds
    actions = []
    counts = {k: 0 for k in KINDS if k not in excluded}
    kinds, weights = list(counts), [KINDS[k] for k in counts]
    t = 0.0
    for _ in range(a.faults):
        # Exponential gaps: faults sometimes come in quick succession.
        t += rng.expovariate(1 / gap)
        while True:
            kind = rng.choices(kinds, weights)[0]
            agent = rng.randrange(a.agents)
            res = resource(kind, agent)
            if res is None or busy.get(res, -1) <= t:
                break
        counts[kind] += 1
        if kind in ("agent_kill", "agent_reboot"):
            down = rng.uniform(0, 3)
            actions.append((t, f"agent_kill {agent}"))
            if kind == "agent_reboot":
                actions.append((t + 0.01, f"agent_new_boot {agent}"))
            actions.append((t + down, f"agent_start {agent}"))
            busy[res] = t + down + 0.5
        elif kind == "proxy_cut":
            actions.append((t, "proxy_cut"))
        elif kind == "proxy_stall":
            secs = rng.randint(1, 8)
            actions.append((t, f"proxy_stall {secs}"))
            busy[res] = t + secs
        elif kind == "clock_step":
            # Within +-6 h of true time: steps back and forward of minutes
            # to hours, never so far that the collector's retention applies.
            new = clock[agent]
            while new == clock[agent]:
                new = rng.choice([0, rng.randint(-6 * 3600, 6 * 3600)])
            clock[agent] = new
            actions.append((t, f"clock {agent} {new:+d}"))
            busy[res] = t + 2
        elif kind == "disk_full":
            secs = rng.uniform(2, 12)
            actions.append((t, f"disk_fill {agent}"))
            actions.append((t + secs, f"disk_free {agent}"))
            busy[res] = t + secs + 1
        elif kind in ("broker_kill", "broker_restart"):
            down = rng.uniform(0.2, 5) if kind == "broker_kill" else rng.uniform(0, 2)
            actions.append((t, "broker_kill" if kind == "broker_kill" else "broker_term"))
            actions.append((t + down, "broker_start"))
            busy[res] = t + down + 1
        elif kind == "collector_kill":
            down = rng.uniform(0, 5)
            actions.append((t, "collector_kill"))
            actions.append((t + down, "collector_start"))
            busy[res] = t + down + 1
    # sorted() is stable: a fault's own actions keep their order.
    for when, what in sorted(actions, key=lambda x: x[0]):
        print(f"{when:.3f} {what}")
    for k, n in counts.items():
        print(f"{k} {n}", file=sys.stderr)


if __name__ == "__main__":
    main()
