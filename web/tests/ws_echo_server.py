"""A WebSocket echo server on 127.0.0.1 (Debian's python3-websockets): prints its port, then
echoes every message until killed. The browser test's real server at the other end."""
import asyncio

import websockets


async def echo(ws, path=None):
    async for message in ws:
        await ws.send(message)


async def main():
    async with websockets.serve(echo, "127.0.0.1", 0, max_size=None) as server:
        print(server.sockets[0].getsockname()[1], flush=True)
        await asyncio.Future()


asyncio.run(main())
