"""A WebSocket echo server on 127.0.0.1 (Debian's python3-websockets): prints its port, then
echoes every message until killed. With CERT KEY arguments it serves wss:// (TLS). The browser
test's real server at the other end."""
import asyncio
import ssl
import sys

import websockets


async def echo(ws, path=None):
    async for message in ws:
        await ws.send(message)


async def main():
    context = None
    if len(sys.argv) == 3:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(sys.argv[1], sys.argv[2])
    async with websockets.serve(echo, "127.0.0.1", 0, max_size=None, ssl=context) as server:
        print(server.sockets[0].getsockname()[1], flush=True)
        await asyncio.Future()


asyncio.run(main())
