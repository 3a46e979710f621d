#!/usr/bin/python3
"""Remote attach end to end: a native process under load (eddy-inspector --serve: the demo
workload and the agent), with real clients: Python asyncio over raw TCP and over WebSocket
(Debian's python3-websockets), hostile clients (wrong token, garbage, oversized and truncated
input, commands to a read-only agent) that must be refused without disturbing the others, HTTP for
the browser page, the desktop app attached under Xvfb and, with --browser, the browser inspector in
headless Chromium attached at the same time.

usage: agent_e2e.py --inspector PATH [--web-root DIR] [--browser-test web/tests/inspector_test.mjs]
                    [--artefacts DIR]
"""
import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import urllib.request

import websockets

failures = []


def check(what, ok, detail=None):
    print(("ok   " if ok else "FAIL ") + what + ("" if ok else f": {detail}"), flush=True)
    if not ok:
        failures.append(what)


async def read_lines(reader, n, timeout=10):
    lines = []
    for _ in range(n):
        line = await asyncio.wait_for(reader.readline(), timeout)
        if not line:
            break
        lines.append(json.loads(line))
    return lines


def hello(token):
    return (json.dumps({"type": "hello", "protocol": 2, "token": token}) + "\n").encode()


async def raw_good_client(port, token, stop):
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=64 << 20)  # updates can be large
    writer.write(hello(token))
    welcome = json.loads(await asyncio.wait_for(reader.readline(), 10))
    updates, kinds, paused_events, above_high = 0, welcome.get("event_kinds", []), 0, False
    pause_kind = kinds.index("pause_writing") if "pause_writing" in kinds else -1
    transports = {}
    while not stop.is_set() or updates < 5:
        line = await asyncio.wait_for(reader.readline(), 10)
        if not line:
            break
        msg = json.loads(line)
        if msg["type"] != "update":
            continue
        updates += 1
        for change in msg["transports"]["upsert"]:  # a known row comes as its changed fields
            row = transports.setdefault(change["id"], {})
            row.update(change)
            if row["high"] and row["buffer"] > row["high"]:
                above_high = True
        for gone in msg["transports"]["removed"]:
            transports.pop(gone, None)
        paused_events += sum(1 for e in msg["events"] if e[1] == pause_kind)
    # A ping is fine; anything else is refused: the agent is read-only.
    writer.write(b'{"type":"ping"}\n')
    pong = None
    while True:
        m = json.loads(await asyncio.wait_for(reader.readline(), 10))
        if m["type"] == "pong":
            pong = m
            break
    writer.write(b'{"type":"eval","code":"loop.stop()"}\n')
    refusal = None
    while True:
        line = await asyncio.wait_for(reader.readline(), 10)
        if not line:
            break
        m = json.loads(line)
        if m["type"] == "error":
            refusal = m
    writer.close()
    return {"welcome": welcome, "updates": updates, "pause_events": paused_events, "above_high": above_high,
            "transports": len(transports), "pong": pong, "refusal": refusal}


async def websocket_client(port, token, n):
    async with websockets.connect(f"ws://127.0.0.1:{port}/ws", max_size=None) as ws:
        await ws.send(hello(token))
        buf, msgs = b"", []
        while len(msgs) < n:
            data = await asyncio.wait_for(ws.recv(), 10)
            buf += data if isinstance(data, bytes) else data.encode()
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                msgs.append(json.loads(line))
        return msgs


async def refused(port, payload, close_after=False):
    """Sends `payload`; returns (error message or None, closed by the agent)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(payload)
    if close_after:
        writer.close()
        return None, True
    message, closed = None, False
    try:
        while True:
            line = await asyncio.wait_for(reader.readline(), 10)
            if not line:
                closed = True
                break
            try:
                m = json.loads(line)
            except ValueError:  # an HTTP status line or header
                continue
            if m.get("type") == "error":
                message = m["message"]
    except (asyncio.TimeoutError, ConnectionResetError):
        closed = isinstance(sys.exc_info()[1], ConnectionResetError)
    writer.close()
    return message, closed


def http_get(port, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, b""


def start_clients(args, port, token, artefacts):
    """The desktop app (Xvfb) and, with --browser, the browser inspector: attached together."""
    procs = []
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0")
    summary = os.path.join(artefacts, "desktop-attached.json")
    shot = os.path.join(artefacts, "desktop-attached.png")
    cmd = (f"'{args.inspector}' --attach 127.0.0.1:{port} --token {token} --tab transports --seconds 6 "
           f"--summary '{summary}' & APP=$!; sleep 5; import -window root '{shot}'; wait $APP")
    procs.append(("desktop", subprocess.Popen(["xvfb-run", "-a", "-s", "-screen 0 1280x720x24", "sh", "-c", cmd], env=env),
                  summary))
    if args.browser_test:
        url = f"http://127.0.0.1:{port}/#token={token}"
        procs.append(("browser", subprocess.Popen(["node", args.browser_test, "url", url,
                                                   os.path.join(artefacts, "browser-attached.png")]), None))
    return procs


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--inspector", required=True)
    ap.add_argument("--web-root", default="")
    ap.add_argument("--browser-test", default="")
    ap.add_argument("--artefacts", default=tempfile.mkdtemp(prefix="eddy-inspector-e2e-"))
    args = ap.parse_args()
    os.makedirs(args.artefacts, exist_ok=True)
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0")
    cmd = [args.inspector, "--serve", "--seconds", "60", "--e2e-marker"]
    if args.web_root:
        cmd += ["--web-root", args.web_root]
    agent = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    port = token = None
    for line in agent.stdout:
        print("agent> " + line.rstrip(), flush=True)
        if line.startswith("agent: "):
            _, port, token = line.split()
            port = int(port)
            break
    check("the agent started and printed its port and token", port is not None)
    if port is None:
        return 1

    stop = asyncio.Event()
    good = asyncio.create_task(raw_good_client(port, token, stop))
    clients = start_clients(args, port, token, args.artefacts)

    # Hostile or broken clients, while the good one watches.
    msg, closed = await refused(port, hello("not-the-token"))
    check("a wrong token is refused and the connection closed", msg == "invalid token" and closed, (msg, closed))
    msg, closed = await refused(port, b"GARBAGE\n")
    check("garbage instead of hello: refused and closed", msg is not None and closed, (msg, closed))
    msg, closed = await refused(port, b"{" * 9000)
    check("an oversized line: closed", closed, (msg, closed))
    msg, closed = await refused(port, b'{"type":"hello","protocol":1,"tok', close_after=True)
    check("a truncated hello then a hang-up: nothing breaks", closed)
    msg, closed = await refused(port, b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n")
    check("a WebSocket request without upgrade headers: closed", closed, (msg, closed))

    if args.web_root:
        status, body = http_get(port, "/")
        check("the agent serves the browser inspector page", status == 200 and b"inspector.js" in body, status)
        status, _ = http_get(port, "/../../etc/passwd")
        check("no path outside the page's directory", status == 404, status)

    ws_msgs = await websocket_client(port, token, 4)
    check("a WebSocket client gets the welcome and updates",
          ws_msgs[0]["type"] == "welcome" and all(m["type"] == "update" for m in ws_msgs[1:]), [m["type"] for m in ws_msgs])
    try:
        async with websockets.connect(f"ws://127.0.0.1:{port}/ws") as ws:
            await ws.send(hello("wrong"))
            reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
            check("a WebSocket client with a wrong token is refused", reply == {"type": "error", "message": "invalid token"},
                  reply)
    except websockets.ConnectionClosed:
        check("a WebSocket client with a wrong token is refused", False, "closed without an error message")

    results = {}
    for name, proc, summary in clients:
        rc = await asyncio.get_running_loop().run_in_executor(None, proc.wait)
        check(f"the {name} client exited cleanly", rc == 0, rc)
        if summary:
            try:
                with open(summary) as f:
                    results[name] = json.load(f)
            except (OSError, ValueError) as e:
                results[name] = {"error": str(e)}
    if "desktop" in results:
        d = results["desktop"]
        check("desktop attached: updates arrived", d.get("updates", 0) >= 10, d.get("updates"))
        check("desktop attached: no protocol error", d.get("error") == "", d.get("error"))
        check("desktop attached: a transport above its high water mark",
              any(t["above_high"] for t in d.get("transports", [])), d.get("transports"))
        check("desktop attached: pause_writing markers drawn", d.get("shown", {}).get("pause_writing_markers", 0) >= 1,
              d.get("shown"))

    stop.set()
    g = await good
    check("the good raw client kept receiving updates throughout", g["updates"] >= 20, g["updates"])
    check("its welcome names the protocol and the kinds", g["welcome"].get("protocol") == 2 and "handle_kinds" in g["welcome"])
    check("it saw pause_writing events", g["pause_events"] >= 1, g["pause_events"])
    check("it saw a transport above its high water mark", g["above_high"])
    check("ping is answered", g["pong"] is not None)
    check("a command to the read-only agent is refused", g["refusal"] is not None, g["refusal"])

    # Wrong token from the desktop app: it reports the refusal.
    summary = os.path.join(args.artefacts, "desktop-refused.json")
    r = subprocess.run(["xvfb-run", "-a", "-s", "-screen 0 1280x720x24", args.inspector, "--attach", f"127.0.0.1:{port}",
                        "--token", "wrong", "--frames", "60", "--summary", summary], env=env)
    check("the desktop app with a wrong token exits cleanly", r.returncode == 0, r.returncode)
    with open(summary) as f:
        refused_summary = json.load(f)
    check("the desktop app with a wrong token shows the refusal",
          "invalid token" in refused_summary.get("error", ""), refused_summary.get("error"))

    agent.terminate()
    out, _ = agent.communicate(timeout=30)
    print("agent> " + out.replace("\n", "\nagent> "), flush=True)
    check("the agent process exited cleanly after SIGTERM", agent.returncode == 0, agent.returncode)
    print(f"artefacts in {args.artefacts}")
    return 1 if failures else 0


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(main()))
    finally:
        subprocess.run(["pkill", "-f", "eddy-inspector --serve --seconds 60 --e2e-marker"], check=False)
