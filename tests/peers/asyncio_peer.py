"""Python asyncio as the other end of Eddy's socket tests.

    asyncio_peer.py MODE ADDR [N]

ADDR is "tcp:HOST:PORT" (PORT 0 picks one) or "unix:PATH". Servers print "READY <port or
path>" once listening and exit after one connection is done; clients print "OK ..." or
"FAIL ...". Payloads use pattern(): byte i is ((i % 4096) * 7 + i // 4096) % 251, so loss,
duplication and reordering of blocks are detected.
"""
import asyncio
import socket
import struct
import sys
import time


_BLOCKS = [bytes(((j * 7 + k) % 251) for j in range(4096)) for k in range(251)]


def pattern(start, n):
    out = bytearray()
    i = start
    while len(out) < n:
        k, j = divmod(i, 4096)
        take = min(4096 - j, n - len(out))
        out += _BLOCKS[k % 251][j:j + take]
        i += take
    return bytes(out)


def check_pattern(data):
    step = 1 << 20
    for off in range(0, len(data), step):
        if data[off:off + step] != pattern(off, min(step, len(data) - off)):
            return off
    return -1


async def serve(addr, handler):
    done = asyncio.get_running_loop().create_future()

    async def wrapped(reader, writer):
        try:
            await handler(reader, writer)
        except ConnectionError:
            pass  # the tests abort connections on purpose
        finally:
            if not done.done():
                done.set_result(None)

    kind, _, rest = addr.partition(":")
    if kind == "unix":
        server = await asyncio.start_unix_server(wrapped, rest)
        print("READY", rest, flush=True)
    else:
        host, _, port = rest.rpartition(":")
        server = await asyncio.start_server(wrapped, host, int(port))
        print("READY", server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await asyncio.wait_for(done, 60)


async def connect(addr):
    kind, _, rest = addr.partition(":")
    if kind == "unix":
        return await asyncio.open_unix_connection(rest)
    host, _, port = rest.rpartition(":")
    return await asyncio.open_connection(host, int(port))


async def echo_handler(reader, writer):
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()  # our EOF after theirs


async def reset_handler(reader, writer):
    await reader.read(1)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def half_close_handler(reader, writer):
    # Reads until the peer's EOF, then answers and closes: the peer half-closed, we did not.
    data = await reader.read()
    writer.write(b"after-eof:%d" % len(data))
    await writer.drain()
    writer.close()


async def eof_first_handler(reader, writer):
    # Sends, half-closes, and still listens: the peer keeps writing after our EOF.
    writer.write(b"hello")
    writer.write_eof()
    data = await reader.read()
    print("GOT", data.decode(), flush=True)
    writer.close()


async def client_echo(addr, n):
    reader, writer = await connect(addr)
    payload = pattern(0, n)

    async def send():
        for off in range(0, n, 65536):
            writer.write(payload[off:off + 65536])
            await writer.drain()
        writer.write_eof()

    sender = asyncio.create_task(send())
    got = await reader.read()
    await sender
    writer.close()
    if got == payload:
        print("OK", len(got), flush=True)
    else:
        print("FAIL got", len(got), "bytes, first difference at", check_pattern(got), flush=True)


async def slow_reader(addr, n):
    # Reads with pauses so that the sender's buffer fills and drains repeatedly.
    reader, writer = await connect(addr)
    got = bytearray()
    await asyncio.sleep(0.3)  # let the kernel buffers fill: the sender must queue and pause
    while chunk := await reader.read(1 << 20):
        got += chunk
        if len(got) % (4 << 20) < len(chunk):
            await asyncio.sleep(0.03)
    writer.close()
    bad = check_pattern(bytes(got))
    if len(got) == n and bad < 0:
        print("OK", len(got), flush=True)
    else:
        print("FAIL got", len(got), "bytes, first difference at", bad, flush=True)


class UdpEcho(asyncio.DatagramProtocol):
    def __init__(self, count, done):
        self.count, self.done = count, done

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.transport.sendto(data, addr)
        self.count -= 1
        if self.count == 0 and not self.done.done():
            self.done.set_result(None)


async def udp_echo_server(addr, n):
    # Echoes n datagrams, then exits.
    host, _, port = addr.partition(":")[2].rpartition(":")
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    transport, _ = await loop.create_datagram_endpoint(lambda: UdpEcho(n, done), local_addr=(host, int(port)))
    print("READY", transport.get_extra_info("sockname")[1], flush=True)
    await asyncio.wait_for(done, 60)
    transport.close()


class UdpClient(asyncio.DatagramProtocol):
    def __init__(self, n, done):
        self.n, self.done, self.got = n, done, []

    def datagram_received(self, data, addr):
        self.got.append(data)
        if len(self.got) == self.n and not self.done.done():
            self.done.set_result(None)


async def datagram_client(n, ordered, **endpoint):
    # Sends n datagrams to the connected peer and waits for their echoes (in order if asked:
    # Unix datagrams keep it, UDP need not).
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    transport, proto = await loop.create_datagram_endpoint(lambda: UdpClient(n, done), **endpoint)
    sent = [b"datagram %d" % i for i in range(n)]
    for d in sent:
        transport.sendto(d)
    try:
        await asyncio.wait_for(done, 20)
    except asyncio.TimeoutError:
        pass
    transport.close()
    same = proto.got == sent if ordered else sorted(proto.got) == sorted(sent)
    print("OK" if same else "FAIL %r" % proto.got, len(proto.got), flush=True)


async def udp_client(addr, n):
    host, _, port = addr.partition(":")[2].rpartition(":")
    await datagram_client(n, False, remote_addr=(host, int(port)))


async def unix_dgram_echo_server(path, n):
    # Echoes n datagrams on a Unix datagram socket bound to path, then exits.
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: UdpEcho(n, done), local_addr=path, family=socket.AF_UNIX)
    print("READY", transport.get_extra_info("sockname"), flush=True)
    await asyncio.wait_for(done, 60)
    transport.close()


async def unix_dgram_client(server_path, n, own_path):
    # From own_path (a Unix datagram client needs a path of its own to get replies).
    await datagram_client(n, True, local_addr=own_path, remote_addr=server_path, family=socket.AF_UNIX)


async def many_clients(addr, n):
    # Opens n connections at once; each sends one byte and waits briefly for its echo.
    async def one():
        try:
            reader, writer = await connect(addr)
            writer.write(b"x")
            data = await asyncio.wait_for(reader.read(1), 3)
            writer.close()
            return data == b"x"
        except (OSError, asyncio.TimeoutError):
            return False

    results = await asyncio.gather(*(one() for _ in range(n)))
    print("ECHOED", sum(results), flush=True)


async def tls_client(addr, n, cafile):
    import ssl
    ctx = ssl.create_default_context(cafile=cafile)
    host, _, port = addr.partition(":")[2].rpartition(":")
    reader, writer = await asyncio.open_connection(host, int(port), ssl=ctx, server_hostname="localhost")
    payload = pattern(0, n)
    writer.write(payload)
    await writer.drain()
    got = await reader.readexactly(n)
    writer.close()
    print("OK" if got == payload else "FAIL", writer.get_extra_info("ssl_object").version(), flush=True)


async def starttls_after_bulk_client(addr, n, cafile):
    # The server sends n plain bytes and upgrades straight away: read them late (so that they
    # sit in the server's buffer when it calls start_tls), then upgrade and echo one line.
    import ssl
    reader, writer = await connect(addr)
    await asyncio.sleep(0.3)
    plain = await reader.readexactly(n)
    ctx = ssl.create_default_context(cafile=cafile)
    await writer.start_tls(ctx, server_hostname="localhost")
    writer.write(b"hello\n")
    line = await reader.readline()
    writer.close()
    ok = plain == pattern(0, n) and line == b"echo: hello\n"
    print("OK" if ok else "FAIL", len(plain), check_pattern(plain), line, flush=True)


async def starttls_handler(reader, writer):
    # Plain text until "STARTTLS", then TLS (cert and key from argv), then echo one line.
    import ssl
    line = await reader.readline()
    if line != b"STARTTLS\n":
        writer.write(b"ERR\n")
        return
    writer.write(b"GO\n")
    await writer.drain()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(sys.argv[3], sys.argv[4])
    await writer.start_tls(ctx)
    data = await reader.readline()
    writer.write(b"secure: " + data)
    await writer.drain()
    writer.close()


async def sni_server(addr, certfile, keyfile):
    # A TLS server that answers each client with the server name it sent ("None" for none).
    import ssl
    names = []
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(certfile, keyfile)
    ctx.sni_callback = lambda sslobj, name, context: names.append(name)
    done = asyncio.get_running_loop().create_future()

    async def handler(reader, writer):
        writer.write(f"sni: {names[-1] if names else None}\n".encode())
        await writer.drain()
        writer.close()
        if not done.done():
            done.set_result(None)

    host, _, port = addr.partition(":")[2].rpartition(":")
    server = await asyncio.start_server(handler, host, int(port), ssl=ctx)
    print("READY", server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await asyncio.wait_for(done, 60)


# Blocking ssl peers: asyncio reports an EOF without close_notify like a clean one, the ssl
# module (suppress_ragged_eofs=False) tells them apart. "close_notify" means the stream ended
# with the other side's close_notify, anything else names what ended it.

def ssl_read_all(s):
    got = bytearray()
    try:
        while chunk := s.recv(1 << 20):
            got += chunk
        return bytes(got), "close_notify"
    except OSError as e:  # ssl.SSLEOFError for an EOF without close_notify
        return bytes(got), type(e).__name__


def ssl_server_socket(addr, certfile, keyfile, version):
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certfile, keyfile)
    if version == "1.2":
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    host, _, port = addr.partition(":")[2].rpartition(":")
    listener = socket.create_server((host, int(port)))
    print("READY", listener.getsockname()[1], flush=True)
    listener.settimeout(30)
    raw, _ = listener.accept()
    listener.close()
    raw.settimeout(30)
    return ctx.wrap_socket(raw, server_side=True, suppress_ragged_eofs=False)


def tls_slow_read_server(addr, certfile, keyfile, version):
    # Reads late (so that the client's writes queue up), then everything up to the end.
    s = ssl_server_socket(addr, certfile, keyfile, version)
    time.sleep(0.5)
    got, end = ssl_read_all(s)
    print("GOT", len(got), check_pattern(got), end, flush=True)
    s.close()


def tls_mute_server(addr, certfile, keyfile):
    # Takes the client's close_notify without answering it, and reports when the TCP
    # connection then ends (the client should wait for an answer, up to its shutdown timeout).
    s = ssl_server_socket(addr, certfile, keyfile, "1.3")
    got, end = ssl_read_all(s)
    start = time.monotonic()
    try:
        rest = socket.socket.recv(s, 100)
        how = "EOF" if not rest else "data"
    except OSError as e:
        how = type(e).__name__
    print("GOT", len(got), end, "then", how, "after %.2f" % (time.monotonic() - start), flush=True)
    s.close()


def tls_burst_server(addr, certfile, keyfile):
    # 20 records of 4000 bytes at once, then waits for the client to end.
    s = ssl_server_socket(addr, certfile, keyfile, "1.3")
    for i in range(20):
        s.sendall(pattern(i * 4000, 4000))
    got, end = ssl_read_all(s)
    print("END", end, flush=True)
    s.close()


def tls_line_then_read_server(addr, certfile, keyfile):
    # Answers the client's first line with "ok", then reports how the stream ends.
    s = ssl_server_socket(addr, certfile, keyfile, "1.3")
    line = b""
    while not line.endswith(b"\n"):
        chunk = s.recv(100)
        if not chunk:
            break
        line += chunk
    s.sendall(b"ok\n")
    got, end = ssl_read_all(s)
    print("GOT", len(got), end, flush=True)
    s.close()


def tls_slow_read_client(addr, cafile):
    # Handshakes, reads late, then everything up to the end.
    import ssl
    ctx = ssl.create_default_context(cafile=cafile)
    host, _, port = addr.partition(":")[2].rpartition(":")
    raw = socket.create_connection((host, int(port)), timeout=30)
    s = ctx.wrap_socket(raw, server_hostname="localhost", suppress_ragged_eofs=False)
    time.sleep(0.5)
    got, end = ssl_read_all(s)
    print("GOT", len(got), check_pattern(got), end, flush=True)
    s.close()


def main():
    mode, addr = sys.argv[1], sys.argv[2]
    n = int(sys.argv[3]) if len(sys.argv) > 3 and sys.argv[3].isdigit() else 0
    handlers = {"echo-server": echo_handler, "reset-server": reset_handler,
                "half-close-server": half_close_handler, "eof-first-server": eof_first_handler,
                "starttls-server": starttls_handler}
    if mode in handlers:
        asyncio.run(serve(addr, handlers[mode]))
    elif mode == "client-echo":
        asyncio.run(client_echo(addr, n))
    elif mode == "udp-echo-server":
        asyncio.run(udp_echo_server(addr, n))
    elif mode == "udp-client":
        asyncio.run(udp_client(addr, n))
    elif mode == "unix-dgram-echo-server":
        asyncio.run(unix_dgram_echo_server(addr.partition(":")[2], n))
    elif mode == "unix-dgram-client":
        asyncio.run(unix_dgram_client(addr.partition(":")[2], n, sys.argv[4]))
    elif mode == "many-clients":
        asyncio.run(many_clients(addr, n))
    elif mode == "tls-client":
        asyncio.run(tls_client(addr, n, sys.argv[4]))
    elif mode == "starttls-after-bulk-client":
        asyncio.run(starttls_after_bulk_client(addr, n, sys.argv[4]))
    elif mode == "sni-server":
        asyncio.run(sni_server(addr, sys.argv[3], sys.argv[4]))
    elif mode == "tls-slow-read-server":
        tls_slow_read_server(addr, sys.argv[3], sys.argv[4], sys.argv[5])
    elif mode == "tls-mute-server":
        tls_mute_server(addr, sys.argv[3], sys.argv[4])
    elif mode == "tls-burst-server":
        tls_burst_server(addr, sys.argv[3], sys.argv[4])
    elif mode == "tls-line-then-read-server":
        tls_line_then_read_server(addr, sys.argv[3], sys.argv[4])
    elif mode == "tls-slow-read-client":
        tls_slow_read_client(addr, sys.argv[3])
    elif mode == "slow-reader":
        asyncio.run(slow_reader(addr, n))
    else:
        sys.exit("unknown mode " + mode)


if __name__ == "__main__":
    main()
