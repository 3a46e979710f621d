# Scenario: asyncio.timeout scopes. Expiry turns the scope's own cancellation into TimeoutError;
# reschedule() moves the deadline later or sooner while the scope runs; nested scopes report the
# one that fired; timeout_at with a past deadline fires at the first await.
# The C++ twin is in test_combinators.cpp.
import asyncio

trace = []


def b(x):
    return "True" if x else "False"


async def main():
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(0.01) as scope:
            trace.append(f"expired {b(scope.expired())}")
            await asyncio.sleep(1)
    except TimeoutError:
        trace.append(f"timeout expired {b(scope.expired())}")
    async with asyncio.timeout(None) as scope:
        scope.reschedule(loop.time() + 10)
        await asyncio.sleep(0.01)
        trace.append("rescheduled later: ran")
    try:
        async with asyncio.timeout(10) as scope:
            await asyncio.sleep(0)
            scope.reschedule(loop.time() + 0.01)
            await asyncio.sleep(1)
    except TimeoutError:
        trace.append("rescheduled sooner: timeout")
    async with asyncio.timeout(10) as outer:
        try:
            async with asyncio.timeout(0.01) as inner:
                await asyncio.sleep(1)
        except TimeoutError:
            trace.append("inner timeout")
    trace.append(f"inner {b(inner.expired())} outer {b(outer.expired())}")
    try:
        async with asyncio.timeout(0.01) as outer:
            try:
                async with asyncio.timeout(10) as inner:
                    await asyncio.sleep(1)
            except TimeoutError:
                trace.append("inner timeout")
    except TimeoutError:
        trace.append(f"outer fired: inner {b(inner.expired())} outer {b(outer.expired())}")
    try:
        async with asyncio.timeout_at(loop.time() + 0.01):
            await asyncio.sleep(1)
    except TimeoutError:
        trace.append("timeout_at fired")
    try:
        async with asyncio.timeout_at(loop.time() - 1):
            await asyncio.sleep(0)
    except TimeoutError:
        trace.append("past deadline fired")


asyncio.run(main())
print("\n".join(trace))
