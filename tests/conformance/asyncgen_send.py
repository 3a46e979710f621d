# Scenario: values sent into an async generator with asend, mixed with __anext__ (which sends
# None), a send to a generator not yet started, an asend awaitable awaited after another step, a
# step while one is running, athrow, aclose with asynchronous cleanup and a send after the end,
# while another task runs between the steps. The C++ twin is in test_asyncgen.cpp.
import asyncio

trace = []


async def accumulator():
    total = 0
    caught = None
    try:
        while True:
            await asyncio.sleep(0)
            got = yield total
            trace.append(f"gen got {got}")
            if got is not None:
                total += got
    except ValueError as e:
        caught = e
    trace.append(f"gen caught {caught}")
    try:
        yield -1
    except GeneratorExit:
        trace.append("gen cleanup")
        await asyncio.sleep(0)
        trace.append("gen cleaned up")
        raise


async def ticker():
    for i in range(8):
        trace.append(f"tick {i}")
        await asyncio.sleep(0)


async def send(gen, value):
    return await gen.asend(value)


async def main():
    ticks = asyncio.create_task(ticker())
    gen = accumulator()
    try:
        await gen.asend(5)
    except TypeError as e:
        trace.append(f"TypeError {e}")
    trace.append(f"first {await gen.asend(None)}")
    trace.append(f"sent 3 -> {await gen.asend(3)}")
    trace.append(f"next -> {await gen.__anext__()}")
    early = gen.asend(10)
    trace.append(f"sent 4 -> {await gen.asend(4)}")
    trace.append(f"early 10 -> {await early}")
    running = asyncio.create_task(send(gen, 1))
    await asyncio.sleep(0)
    try:
        await gen.asend(2)
    except RuntimeError as e:
        trace.append(f"RuntimeError {e}")
    trace.append(f"task sent 1 -> {await running}")
    trace.append(f"athrow -> {await gen.athrow(ValueError('boom'))}")
    await gen.aclose()
    trace.append("closed")
    try:
        await gen.asend(7)
    except StopAsyncIteration:
        trace.append("StopAsyncIteration")
    await ticks


asyncio.run(main())
print("\n".join(trace))
