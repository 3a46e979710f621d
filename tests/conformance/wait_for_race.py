# Scenario: wait_for against its timeout. In time it returns the value; on timeout the inner task
# is cancelled and awaited before TimeoutError; with timeout 0 a done future still gives its
# result; and when the timeout fires but the inner task absorbs the cancellation and returns a
# value in the same pass, wait_for returns that value instead of raising.
# The C++ twin is in test_combinators.cpp.
import asyncio

trace = []


async def child(name, n):
    trace.append(f"{name} start")
    for _ in range(n):
        await asyncio.sleep(0)
    trace.append(f"{name} done")
    return n


async def sleeper(name):
    trace.append(f"{name} start")
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError as e:
        trace.append(f"{name} cancelled {e.args[0] if e.args else ''}")
        raise
    return 0


async def stubborn(name):
    trace.append(f"{name} start")
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        trace.append(f"{name} absorbs the cancellation")
    return 42


async def main():
    loop = asyncio.get_running_loop()
    trace.append(f"a result {await asyncio.wait_for(child('a', 2), 10)}")
    try:
        await asyncio.wait_for(sleeper("b"), 0.01)
    except TimeoutError:
        trace.append("b timeout")
    f = loop.create_future()
    f.set_result(7)
    trace.append(f"done at 0: {await asyncio.wait_for(f, 0)}")
    try:
        await asyncio.wait_for(child("c", 1), 0)
    except TimeoutError:
        trace.append("c timeout at 0")
    trace.append(f"none {await asyncio.wait_for(child('d', 1), None)}")
    trace.append(f"race result {await asyncio.wait_for(stubborn('e'), 0.01)}")


asyncio.run(main())
print("\n".join(trace))
