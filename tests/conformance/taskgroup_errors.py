# Scenario: TaskGroup error collection. Two failing children cancel their sibling and come back
# together in one ExceptionGroup; a failing body cancels the children; results of a clean group;
# cancelling the task that runs a group cancels its children and stays a cancellation.
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


async def groups():
    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(child("a", 1, True))
            tg.create_task(child("b", 1, True))
            tg.create_task(child("c", 5))
            trace.append("body done")
    except ExceptionGroup as eg:
        trace.append(" ".join([f"group {len(eg.exceptions)}"] + [str(e) for e in eg.exceptions]))
    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(child("d", 5))
            await asyncio.sleep(0)
            raise RuntimeError("body")
    except ExceptionGroup as eg:
        trace.append(f"body error {len(eg.exceptions)}")
    async with asyncio.TaskGroup() as tg:
        x = tg.create_task(child("x", 1))
        y = tg.create_task(child("y", 2))
    trace.append(f"results {x.result()} {y.result()}")


async def group_in_task():
    async with asyncio.TaskGroup() as tg:
        tg.create_task(child("a", 10))
        await asyncio.sleep(1)


async def outer_cancel():
    t = asyncio.ensure_future(group_in_task())
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    t.cancel()
    try:
        await t
    except asyncio.CancelledError:
        trace.append("outer cancelled")


async def main():
    for part in (groups, outer_cancel):
        trace.append(f"-- {part.__name__}")
        await part()


asyncio.run(main())
print("\n".join(trace))
