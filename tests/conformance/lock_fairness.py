# Scenario: fairness of Lock and Semaphore under cancellation. Waiters are served in FIFO order;
# a waiter cancelled while queued is skipped; a waiter woken by release() and cancelled before it
# runs hands its turn to the next one, so no wake-up is lost.
# The C++ twin is in test_locks.cpp.
import asyncio

trace = []


async def take_lock(lock, name):
    await lock.acquire()
    trace.append(name)
    lock.release()


async def cancelled(task, name):
    try:
        await task
    except asyncio.CancelledError:
        trace.append(f"{name} cancelled")


async def lock_fifo():
    lock = asyncio.Lock()
    await lock.acquire()
    tasks = [asyncio.create_task(take_lock(lock, n)) for n in "abc"]
    await asyncio.sleep(0)
    lock.release()
    for t in tasks:
        await t


async def lock_cancel_after_wakeup():
    lock = asyncio.Lock()
    await lock.acquire()
    a = asyncio.create_task(take_lock(lock, "a"))
    b = asyncio.create_task(take_lock(lock, "b"))
    await asyncio.sleep(0)
    lock.release()
    a.cancel()
    await cancelled(a, "a")
    await b
    trace.append(f"locked {lock.locked()}")


async def lock_cancel_queued():
    lock = asyncio.Lock()
    await lock.acquire()
    a, b, c = (asyncio.create_task(take_lock(lock, n)) for n in "abc")
    await asyncio.sleep(0)
    b.cancel()
    await asyncio.sleep(0)
    lock.release()
    await a
    await c
    await cancelled(b, "b")


async def sem_user(sem, name):
    await sem.acquire()
    trace.append(f"{name} in")
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    trace.append(f"{name} out")
    sem.release()


async def semaphore_fifo():
    sem = asyncio.Semaphore(2)
    tasks = [asyncio.create_task(sem_user(sem, n)) for n in "abcde"]
    await asyncio.sleep(0)
    tasks[2].cancel()
    for t, n in zip(tasks, "abcde"):
        if n == "c":
            await cancelled(t, n)
        else:
            await t


async def semaphore_cancel_after_wakeup():
    sem = asyncio.Semaphore(1)
    await sem.acquire()
    a = asyncio.create_task(sem_user(sem, "a"))
    b = asyncio.create_task(sem_user(sem, "b"))
    await asyncio.sleep(0)
    sem.release()
    a.cancel()
    await cancelled(a, "a")
    await b
    trace.append(f"locked {sem.locked()}")


async def main():
    for part in (lock_fifo, lock_cancel_after_wakeup, lock_cancel_queued, semaphore_fifo,
                 semaphore_cancel_after_wakeup):
        trace.append(f"-- {part.__name__}")
        await part()


asyncio.run(main())
print("\n".join(trace))
