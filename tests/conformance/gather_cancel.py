# Scenario: gather under cancellation. Cancelling the gather cancels its children with the
# message; a failing child fails the gather while its siblings keep running; a child cancelled on
# its own fails the gather with CancelledError; return_exceptions collects every outcome.
# Once every child is done, a cancelled gather raises the cancellation of the *last child in its
# arguments* (asyncio's loop variable), with that child's message: children that absorbed it still
# carry it, a child that had finished before has none.
# The C++ twin is in test_combinators.cpp.
import asyncio

trace = []


async def child(name, n, fail=False):
    trace.append(f"{name} start")
    try:
        for _ in range(n):
            await asyncio.sleep(0)
    except asyncio.CancelledError as e:
        trace.append(f"{name} cancelled {e.args[0] if e.args else ''}")
        raise
    if fail:
        trace.append(f"{name} fails")
        raise ValueError(name)
    trace.append(f"{name} done")
    return n


async def stubborn(name):
    trace.append(f"{name} start")
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        trace.append(f"{name} absorbs the cancellation")
    return 42


def b(x):
    return "True" if x else "False"


async def gather_cancel():
    g = asyncio.gather(child("a", 5), child("b", 5))
    await asyncio.sleep(0)
    trace.append(f"cancel {b(g.cancel('stop'))}")
    try:
        await g
    except asyncio.CancelledError as e:
        trace.append(f"gather cancelled {e.args[0] if e.args else ''}")
    trace.append(f"g.cancelled {b(g.cancelled())}")


async def gather_fail():
    t = asyncio.ensure_future(child("b", 3))
    g = asyncio.gather(child("a", 1, True), t)
    try:
        await g
    except ValueError as e:
        trace.append(f"gather raised {e}")
    trace.append(f"b done {b(t.done())}")
    trace.append(f"b result {await t}")


async def gather_child_cancelled():
    a = asyncio.ensure_future(child("a", 3))
    t = asyncio.ensure_future(child("b", 3))
    g = asyncio.gather(a, t)
    await asyncio.sleep(0)
    a.cancel()
    try:
        await g
    except asyncio.CancelledError:
        trace.append("gather raised CancelledError")
    trace.append(f"g.cancelled {b(g.cancelled())} b.done {b(t.done())}")
    await t


async def gather_return_exceptions():
    a = asyncio.ensure_future(child("a", 3))
    g = asyncio.gather(child("x", 1), child("y", 1, True), a, return_exceptions=True)
    await asyncio.sleep(0)
    a.cancel()
    x, y, z = await g
    trace.append(f"{x} {y} {type(z).__name__}")
    tasks = [asyncio.ensure_future(child("v1", 1)), asyncio.ensure_future(child("v2", 2, True))]
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    trace.append(f"outcomes {outcomes[0]} {outcomes[1]}")
    trace.append(f"empty {len(await asyncio.gather())}")


async def gather_cancel_absorbed():
    g = asyncio.gather(stubborn("s1"), stubborn("s2"))
    await asyncio.sleep(0)
    trace.append(f"cancel {b(g.cancel('stop'))}")
    try:
        await g
    except asyncio.CancelledError as e:
        trace.append(f"gather cancelled '{e.args[0] if e.args else ''}'")


async def gather_cancel_after_last_done():
    a = asyncio.ensure_future(child("a", 5))
    t = asyncio.ensure_future(child("b", 0))
    g = asyncio.gather(a, t, return_exceptions=True)
    await asyncio.sleep(0)
    trace.append(f"cancel {b(g.cancel('stop'))} b.done {b(t.done())}")
    try:
        await g
    except asyncio.CancelledError as e:
        trace.append(f"gather cancelled '{e.args[0] if e.args else ''}'")


async def main():
    for part in (gather_cancel, gather_fail, gather_child_cancelled, gather_return_exceptions,
                 gather_cancel_absorbed, gather_cancel_after_last_done):
        trace.append(f"-- {part.__name__}")
        await part()


asyncio.run(main())
print("\n".join(trace))
