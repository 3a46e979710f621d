# Scenario: the order in which tasks, done callbacks and call_soon callbacks run when a future is
# completed and another task is cancelled in the same pass. The C++ twin is in test_conformance.cpp.
import asyncio

trace = []


async def child(name, fut):
    trace.append(f"{name} start")
    try:
        await fut
        trace.append(f"{name} woke")
    except asyncio.CancelledError as e:
        trace.append(f"{name} cancelled {e.args[0] if e.args else ''}")
        raise


async def main():
    loop = asyncio.get_running_loop()
    f1 = loop.create_future()
    f2 = loop.create_future()
    t1 = loop.create_task(child("t1", f1))
    t2 = loop.create_task(child("t2", f2))
    f1.add_done_callback(lambda f: trace.append("f1 callback"))
    loop.call_soon(lambda: trace.append("soon 1"))
    await asyncio.sleep(0)
    trace.append("main after yield")
    f1.set_result(None)
    t2.cancel("bye")
    loop.call_soon(lambda: trace.append("soon 2"))
    trace.append("main set/cancel")
    await asyncio.sleep(0)
    trace.append("main after second yield")
    try:
        await t2
    except asyncio.CancelledError:
        trace.append("t2 is cancelled")
    await t1
    trace.append(f"done t1={t1.done()} t2={t2.cancelled()} f2={f2.cancelled()}")


asyncio.run(main())
print("\n".join(trace))
