#!/usr/bin/env python3
"""A TCP proxy that cuts and stalls its connections on command.

Used by bench/gauntlet.sh between the agents and the broker. It listens on
127.0.0.1 on a port the kernel picks (written to --port-file once
listening) and forwards every connection to --upstream.

Control: write one command into --control, then send SIGUSR1.
  cut        reset every open connection (SO_LINGER 0: the peers see a RST,
             as when a NAT or a mobile link forgets the flow)
  stall N    for N seconds forward nothing in either direction and hold new
             connections unanswered (a link that stops passing packets);
             then everything held flows again
Each command handled is appended to --log with its time.
"""

import argparse
import asyncio
import os
import signal
import socket
import struct
import time


class Proxy:
    def __init__(self, upstream_port, control, log):
        self.upstream_port = upstream_port
        self.control = control
        self.log = log
        # Open connections: [client writer, upstream writer or None].
        self.pairs = {}
        self.resume = asyncio.Event()
        self.resume.set()
        self.stall_task = None

    def note(self, text):
        with open(self.log, "a") as f:
            f.write(f"{time.time():.3f} {text}\n")

    async def handle(self, reader, writer):
        pair = [writer, None]
        self.pairs[id(pair)] = pair
        try:
            await self.resume.wait()
            try:
                up_r, up_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            except OSError:
                return  # broker down: the client sees its connection close
            pair[1] = up_w
            await asyncio.gather(self.pipe(reader, up_w), self.pipe(up_r, writer))
        finally:
            self.pairs.pop(id(pair), None)
            for w in pair:
                if w is not None:
                    w.close()

    async def pipe(self, reader, writer):
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                await self.resume.wait()
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            # One side is done: end both, like a connection that broke.
            try:
                writer.close()
            except OSError:
                pass

    def cut(self):
        n = 0
        for pair in list(self.pairs.values()):
            for w in pair:
                if w is None:
                    continue
                sock = w.get_extra_info("socket")
                if sock is not None:
                    try:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    except OSError:
                        pass
                w.transport.abort()
            n += 1
        return n

    async def stall(self, seconds):
        self.resume.clear()
        try:
            await asyncio.sleep(seconds)
        finally:
            self.resume.set()

    def command(self):
        try:
            with open(self.control) as f:
                words = f.read().split()
        except OSError as e:
            self.note(f"control unreadable: {e}")
            return
        if words[:1] == ["cut"]:
            self.note(f"cut {self.cut()} connections")
        elif words[:1] == ["stall"] and len(words) == 2:
            seconds = float(words[1])
            if self.stall_task is not None and not self.stall_task.done():
                self.stall_task.cancel()
            self.stall_task = asyncio.ensure_future(self.stall(seconds))
            self.note(f"stall {seconds:g}s, {len(self.pairs)} connections")
        else:
            self.note(f"unknown command {words!r}")


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--upstream", type=int, required=True)
    p.add_argument("--port-file", required=True)
    p.add_argument("--control", required=True)
    p.add_argument("--log", required=True)
    args = p.parse_args()
    proxy = Proxy(args.upstream, args.control, args.log)
    server = await asyncio.start_server(proxy.handle, "127.0.0.1", 0)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, proxy.command)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    port = server.sockets[0].getsockname()[1]
    with open(args.port_file + ".tmp", "w") as f:
        f.write(f"{port}\n")
    os.rename(args.port_file + ".tmp", args.port_file)
    async with server:
        await stop.wait()
        proxy.cut()


if __name__ == "__main__":
    asyncio.run(main())
