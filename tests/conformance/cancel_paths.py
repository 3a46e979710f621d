# Scenario: the three ways a cancellation lands - before the task starts, while it is scheduled
# after a bare yield, and while it awaits a future (which is cancelled on its behalf) - plus a task
# that catches its CancelledError, uncancels and returns.
import asyncio

trace = []


async def body(name):
    trace.append(f"{name} start")
    await asyncio.sleep(0)
    trace.append(f"{name} after yield")
    await asyncio.sleep(10)
    trace.append(f"{name} after sleep")


async def survivor():
    try:
        await asyncio.sleep(10)
    except asyncio.CancelledError as e:
        t = asyncio.current_task()
        trace.append(f"survivor caught {e.args[0]} cancelling={t.cancelling()}")
        trace.append(f"survivor uncancel={t.uncancel()}")
        return 7


async def main():
    loop = asyncio.get_running_loop()
    before = loop.create_task(body("before"), name="before")
    before.cancel("b")
    ready = loop.create_task(body("ready"), name="ready")
    waiting = loop.create_task(body("waiting"), name="waiting")
    keep = loop.create_task(survivor())
    await asyncio.sleep(0)   # ready and waiting ran their first step
    ready.cancel("r")        # ready is scheduled (bare yield), not waiting on a future
    await asyncio.sleep(0)
    await asyncio.sleep(0)   # waiting now sleeps on a future
    waiting.cancel("w")
    keep.cancel("k")
    for t in (before, ready, waiting):
        try:
            await t
        except asyncio.CancelledError as e:
            trace.append(f"{t.get_name()} cancelled={t.cancelled()} msg={e.args[0] if e.args else ''}")
    trace.append(f"survivor result={await keep} cancelled={keep.cancelled()}")


asyncio.run(main())
print("\n".join(trace))
