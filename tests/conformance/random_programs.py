"""Random programs for a differential test of the synchronisation layer against Python's asyncio.

Each program is a few tasks sharing a Lock, a Semaphore, a Condition, an Event, a Queue and two
Futures, each task running a short list of operations; the main task lets them run for some loop
passes, then cancels whatever is left and prints every task's end. This script prints each
program and the trace asyncio gives for it; tests/test_conformance.cpp replays the programs on
every Eddy loop kind and must print the same traces. No timers: only loop passes order things,
so the traces are exact.

Only operations whose semantics did not change between this machine's Python (3.11) and 3.13,
which Eddy follows, are generated, or this script gives asyncio 3.13's behaviour: the Condition
below hands on a notification a cancelled waiter got; the Semaphore below wakes as many waiters
as its value allows (in the first two kinds, values are 1 and 2 without raw releases, where
3.11 does the same); the queues have 3.13's shutdown (used with groups); with groups (random_group_programs.py and
random_timed_group_programs.py), the TaskGroup below takes back its
own cancellation of the parent as 3.13 does, and Task.uncancel clears a pending cancellation.
"""
import asyncio
import collections
import gc
import random
import selectors
import sys

PROGRAMS = int(sys.argv[1]) if len(sys.argv) > 1 else 300
FIRST_SEED = int(sys.argv[2]) if len(sys.argv) > 2 else 1


class Condition(asyncio.Condition):  # also asyncio.Barrier's (set below)
    """asyncio.Condition.wait as 3.13 has it (3.11's differs in two cancellation details):
    a cancellation that comes while the lock is being re-acquired is raised as it came, with its
    message (3.11 raises a new, empty CancelledError), and a waiter that fails after being
    notified passes one notification on to another waiter (3.11 drops it)."""

    async def wait(self):
        if not self.locked():
            raise RuntimeError("cannot wait on un-acquired lock")
        notified = asyncio.get_running_loop().create_future()
        self.release()
        try:
            try:
                self._waiters.append(notified)
                try:
                    await notified
                    return True
                finally:
                    self._waiters.remove(notified)
            finally:
                last_cancel = None  # the lock comes back whatever happens, cancelled or not
                while True:
                    try:
                        await self.acquire()
                        break
                    except asyncio.CancelledError as e:
                        last_cancel = e
                if last_cancel is not None:
                    raise last_cancel
        except BaseException:
            for waiter in self._waiters:
                if not waiter.done():
                    waiter.set_result(False)
                    break
            raise


class Semaphore(asyncio.Semaphore):
    """asyncio.Semaphore.acquire as 3.13 has it. 3.11's, once woken, wakes at most one more
    waiter, and a waiter cancelled after being woken hands its unit to the next one; 3.13's
    gives the unit back and then, however acquire ended, wakes waiters while units are left."""

    async def acquire(self):
        if not self.locked():
            self._value -= 1
            return True
        if self._waiters is None:
            self._waiters = collections.deque()
        woken = asyncio.get_running_loop().create_future()
        self._waiters.append(woken)
        try:
            try:
                await woken
            finally:
                self._waiters.remove(woken)
        except asyncio.CancelledError:
            if woken.done() and not woken.cancelled():
                self._value += 1  # woken, with a unit taken for it, but not acquiring
            raise
        finally:
            while self._value > 0 and self._wake_up_next():
                pass
        return True

    def _wake_up_next(self):
        for waiter in self._waiters or ():
            if not waiter.done():
                self._value -= 1
                waiter.set_result(True)
                return True
        return False


class QueueShutDown(Exception):
    """asyncio.QueueShutDown (3.13)."""


class Shutdown:
    """Queue.shutdown (3.13) on 3.11's queues: once shut down, puts raise QueueShutDown, and gets
    too once the queue is empty (at once if the shutdown was immediate: it drops the items, and
    counts them as done for join()); every waiting getter and putter is woken to see it."""

    _is_shutdown = False

    def shutdown(self, immediate=False):
        self._is_shutdown = True
        if immediate:
            while not self.empty():
                self._get()
                self._unfinished_tasks = max(0, self._unfinished_tasks - 1)
            if self._unfinished_tasks == 0:
                self._finished.set()
        for waiters in (self._getters, self._putters):
            while waiters:
                waiter = waiters.popleft()
                if not waiter.done():
                    waiter.set_result(None)

    def put_nowait(self, item):
        if self._is_shutdown:
            raise QueueShutDown
        super().put_nowait(item)

    def get_nowait(self):
        if self._is_shutdown and self.empty():
            raise QueueShutDown
        return super().get_nowait()

    async def put(self, item):
        while self.full():
            if self._is_shutdown:
                raise QueueShutDown
            await self._wait_in(self._putters, self.full)
        self.put_nowait(item)

    async def get(self):
        while self.empty():
            if self._is_shutdown:
                raise QueueShutDown
            await self._wait_in(self._getters, self.empty)
        return self.get_nowait()

    async def _wait_in(self, waiters, blocked):
        """One wait for a turn; a waiter woken but failing (cancelled) passes the turn on."""
        waiter = self._get_loop().create_future()
        waiters.append(waiter)
        try:
            await waiter
        except BaseException:
            waiter.cancel()
            if waiter in waiters:
                waiters.remove(waiter)
            if not blocked() and not waiter.cancelled():
                self._wakeup_next(waiters)
            raise


class Queue(Shutdown, asyncio.Queue):
    pass


class LifoQueue(Shutdown, asyncio.LifoQueue):
    pass


class PriorityQueue(Shutdown, asyncio.PriorityQueue):
    pass


class TaskGroup(asyncio.TaskGroup):
    """asyncio.TaskGroup leaving its `async with` as 3.13 does. 3.11 takes back (uncancel) the
    cancellation the group made of its parent before it waits for the children; 3.13 does so
    after, so a child failing while the group waits is handled too; and when children failed
    while the parent is also being cancelled from outside, 3.13 re-issues that cancellation
    (uncancel, cancel) so it stays pending after the ExceptionGroup. Its children are kept in
    creation order, which is the order it cancels them in (asyncio's set has no fixed order;
    Eddy uses creation order)."""

    class Children(dict):
        def add(self, task):
            self[task] = None

        def discard(self, task):
            self.pop(task, None)

    def __init__(self):
        super().__init__()
        self._tasks = TaskGroup.Children()

    async def __aexit__(self, et, exc, tb):
        self._exiting = True
        cancelled = et is not None and issubclass(et, asyncio.CancelledError)
        propagate = exc if cancelled else None
        if et is not None and not self._aborting:
            self._abort()  # the body failed or was cancelled: stop the children
        while self._tasks:  # a cancellation while waiting only stops the children
            if self._on_completed_fut is None:
                self._on_completed_fut = self._loop.create_future()
            try:
                await self._on_completed_fut
            except asyncio.CancelledError as e:
                if not self._aborting:
                    propagate = e
                    self._abort()
            self._on_completed_fut = None
        if self._parent_cancel_requested and self._parent_task.uncancel() == 0:
            propagate = None  # only the group's own cancellation: it ends here
        if propagate is not None and not self._errors:
            raise propagate
        if et is not None and not cancelled:
            self._errors.append(exc)
        if self._errors:
            if self._parent_task.cancelling():
                self._parent_task.uncancel()
                self._parent_task.cancel()
            errors, self._errors = self._errors, None
            raise BaseExceptionGroup("unhandled errors in a TaskGroup", errors) from None


class Task(asyncio.tasks._PyTask):
    """A task whose uncancel() also drops a cancellation not yet delivered once the count of
    requests is back to zero, as 3.13's does (3.11's would still deliver it); and which, made
    with eager_start=True in a running loop, runs its first step inside its constructor, as
    the current task in place of its creator (3.12's eager tasks)."""

    def __init__(self, coro, *, loop, eager_start=False, **kwargs):
        super().__init__(coro, loop=loop, **kwargs)
        if not eager_start:
            return
        # 3.11 scheduled the first step: it runs now instead.
        first_step = loop._ready.pop()
        assert first_step._callback == self._Task__step
        current = asyncio.tasks._current_tasks
        creator = current.pop(loop, None)
        try:
            first_step._run()
        finally:
            if creator is not None:
                current[loop] = creator

    def uncancel(self):
        left = super().uncancel()
        if left == 0:
            self._must_cancel = False
        return left


# What a timeout may interrupt (timed programs only).
BLOCKING = ["get", "put", "fut_await", "ev_wait", "lock", "sem", "cond_wait", "join", "sleep",
            "gather", "shield", "await_task", "barrier"]


# asyncio.Barrier is the same in 3.11 and 3.13 but for the Condition it makes.
asyncio.locks.Condition = Condition


# What the shared async generator (random_asyncgen_programs.py) may run between its yields.
GEN_KINDS = ["yield", "lock", "sem", "cond_wait", "notify", "ev_wait", "ev_set", "put", "get",
             "get_nowait", "fut_await", "fut_set", "fut_fail"]


def gather(*children, return_exceptions=False):
    """asyncio.gather of futures and tasks as 3.12 made it (3.11 differs in one detail): a child
    already done when gather is called counts at once, once the callbacks of the others are in
    place, instead of through a callback a loop pass later. So gathering a cancelled or failed
    future raises without waiting, and gathering finished children does not wait at all."""
    outer = asyncio.tasks._GatheringFuture(list(children), loop=asyncio.get_running_loop())
    finished = 0

    def child_done(child):
        nonlocal finished
        finished += 1
        if outer.done():
            if not child.cancelled():
                child.exception()  # retrieved: nobody is told of it any more
            return
        if not return_exceptions:
            if child.cancelled():
                outer.set_exception(child._make_cancelled_error())
                return
            if child.exception() is not None:
                outer.set_exception(child.exception())
                return
        if finished < len(children):
            return
        if outer._cancel_requested:  # cancelled through gather: ends with the last child's error
            outer.set_exception(child._make_cancelled_error())
            return
        outer.set_result([c._make_cancelled_error() if c.cancelled() else
                          c.exception() or c.result() for c in children])

    for child in children:
        if not child.done():
            child.add_done_callback(child_done)
    for child in children:
        if child.done():
            child_done(child)
    return outer


def random_op(rng, me, ntasks, timed=False, groups=False, agens=False):
    if agens and rng.random() < 0.35:  # a step of the shared async generator
        kind = rng.choices(["agen_next", "agen_send", "agen_throw", "agen_close"],
                           weights=[5, 5, 1, 1])[0]
        return (kind, rng.randint(1, 9)) if kind == "agen_send" else (kind,)
    if timed and rng.random() < 0.3:
        if rng.random() < 0.4:
            return ("sleep", rng.randint(1, 16))
        if rng.random() < 0.2:  # asyncio.wait on the futures, with a timeout
            return ("wait_timeout", rng.randint(1, 16))
        kind = "group" if groups and rng.random() < 0.3 else rng.choice(BLOCKING)
        inner = group_op(rng, me, ntasks, timed) if kind == "group" else op_args(
            rng, kind, me, ntasks)
        return ("timeout", rng.randint(1, 16)) + inner
    if groups:
        r = rng.random()
        if r < 0.2:
            return group_op(rng, me, ntasks, timed)
        if r < 0.26:
            return ("fail",)
        if r < 0.32:
            return ("uncancel",)
        if r < 0.36:  # the current task cancels itself; perhaps takes it back at once
            return ("cancel_current", rng.randint(0, 1))
        if r < 0.41:
            return ("sem_release",)
        if r < 0.49:  # more Semaphore traffic, for its wake-ups with several units free
            return op_args(rng, "sem", me, ntasks)
        if r < 0.51:
            return ("q_shutdown", rng.randint(0, 1))
        if r < 0.53:
            return ("cond_wait_for",)
        if r < 0.58:  # an eager task running an operation; awaited after `yields` passes
            return ("eager", rng.randint(0, 2)) + random_op(rng, me, ntasks, timed)
        if r < 0.59:  # wait(ALL_COMPLETED / FIRST_EXCEPTION) and as_completed on later tasks
            kind = rng.choice(["wait_tasks_all", "wait_tasks_exc", "as_completed_tasks"])
            op = op_args(rng, kind, me, ntasks)
            if kind == "as_completed_tasks" and op[0] == kind:  # and its timeout, if timed
                op += (rng.randint(0, 16) if timed else 0,)
            return op
    kind = rng.choices(
        ["yield", "lock", "unlock", "sem", "cond_wait", "notify", "notify_all", "ev_wait",
         "ev_set", "ev_clear", "put", "get", "put_nowait", "get_nowait", "task_done", "join",
         "fut_await", "fut_set", "fut_fail", "fut_cancel", "shield", "gather", "wait_first",
         "cancel", "await_task", "cancelling", "notify_unlocked", "state", "callback", "soon",
         "gather_tasks", "shield_task", "wait_tasks", "barrier", "barrier_reset",
         "barrier_abort"],
        weights=[6, 6, 1, 4, 3, 3, 1, 3, 3, 1, 4, 4, 2, 2, 2, 1, 3, 3, 1, 2, 2, 2, 2, 3, 2, 1, 1,
                 2, 2, 2, 1, 1, 1, 4, 1, 1])[0]
    return op_args(rng, kind, me, ntasks)


def group_op(rng, me, ntasks, timed):
    """`async with TaskGroup()`: one or two children, each running an operation in a task of
    its own, and an operation as the body; the last of the ops is the body."""
    ops = [random_op(rng, me, ntasks, timed) for _ in range(rng.randint(2, 3))]
    return ("group",) + tuple(ops)


def op_args(rng, kind, me, ntasks):
    if kind == "sleep":  # in sixteenths of a second: sums stay exact in binary floating point
        return (kind, rng.randint(1, 16))
    if kind in ("lock", "sem"):
        return (kind, rng.randint(0, 2))
    if kind == "notify":
        return (kind, rng.randint(1, 2))
    if kind in ("put", "put_nowait"):
        return (kind, rng.randint(1, 9))
    if kind in ("fut_await", "fut_fail", "fut_cancel", "shield", "callback"):
        return (kind, rng.randint(0, 1))
    if kind == "fut_set":
        return (kind, rng.randint(0, 1), rng.randint(10, 99))
    if kind == "cancel":
        return (kind, rng.randrange(ntasks))
    if kind in ("await_task", "shield_task"):
        if me + 1 >= ntasks:  # only later tasks, so no task waits on itself or in a cycle
            return ("yield",)
        return (kind, rng.randint(me + 1, ntasks - 1))
    if kind in ("gather_tasks", "wait_tasks", "wait_tasks_all", "wait_tasks_exc",
                "as_completed_tasks"):
        if me + 2 >= ntasks:
            return ("yield",)
        first = rng.randint(me + 1, ntasks - 2)
        return (kind, first, rng.randint(first + 1, ntasks - 1))
    return (kind,)


def random_program(rng, timed=False, groups=False, agens=False):
    ntasks = rng.randint(2, 5)
    program = {
        "sleep": rng.randint(0, 16) if timed else 0,  # main's sleep before it cancels the rest
        "sem": rng.randint(1, 3 if groups else 2),
        "queue": rng.choice(["fifo", "lifo", "priority"]),
        "cond": rng.choice(["own", "shared"]),  # the Condition's lock: its own, or the Lock
        "parties": rng.randint(2, 3),  # the Barrier's
        "qmax": rng.randint(0, 2),
        "passes": rng.randint(0, 8),
        "tasks": [[random_op(rng, me, ntasks, timed, groups, agens)
                   for _ in range(rng.randint(1, 6))]
                  for me in range(ntasks)],
    }
    if agens:  # the generator's operations, taken in turn between its yields
        program["gen"] = [op_args(rng, rng.choice(GEN_KINDS), 0, 1)
                          for _ in range(rng.randint(1, 4))]
    return program


def op_text(op):
    if op[0] == "group":  # "group <child> / <child> / <body>"
        return "group " + " / ".join(op_text(x) for x in op[1:])
    if op[0] in ("timeout", "eager"):
        return f"{op[0]} {op[1]} " + op_text(op[2:])
    return " ".join(str(x) for x in op)


class World:
    def __init__(self, program):
        loop = asyncio.get_running_loop()
        self.lock = asyncio.Lock()
        self.sem = Semaphore(program["sem"])
        self.cond = Condition(self.lock if program["cond"] == "shared" else None)
        self.event = asyncio.Event()
        self.barrier = asyncio.Barrier(program["parties"])
        queue_type = {"fifo": Queue, "lifo": LifoQueue,
                      "priority": PriorityQueue}[program["queue"]]
        self.queue = queue_type(program["qmax"])
        self.futs = [loop.create_future(), loop.create_future()]
        self.tasks = []
        self.trace = []
        self.gen = agen_body(self, program["gen"]) if "gen" in program else None

    def say(self, me, op, what=None):
        self.trace.append(f"T{me} {op_text(op)}" + ("" if what is None else f" -> {what}"))


async def agen_body(w, ops):
    """The async generator the tasks share: yields 0, 1, ... and between two yields traces what
    it was sent and runs its next operation (as task "g"); traces how it ends."""
    i = 0
    try:
        while True:
            got = yield i
            w.trace.append(f"G got {got}")
            await run_traced(w, "g", ops[i % len(ops)])
            i += 1
    except GeneratorExit:
        w.trace.append("G exit")
        raise
    except BaseException as e:
        w.trace.append(f"G raises {type(e).__name__}")
        raise


async def yields(n):
    for _ in range(n):
        await asyncio.sleep(0)


async def run_op(w, me, op):
    kind = op[0]
    if kind == "yield":
        await asyncio.sleep(0)
        w.say(me, op)
    elif kind == "lock":
        async with w.lock:
            w.say(me, op, "in")
            await yields(op[1])
        w.say(me, op, "out")
    elif kind == "unlock":
        w.lock.release()
        w.say(me, op)
    elif kind == "sem":
        async with w.sem:
            w.say(me, op, "in")
            await yields(op[1])
        w.say(me, op, "out")
    elif kind == "cond_wait":
        async with w.cond:
            await w.cond.wait()
            w.say(me, op, "woke")
    elif kind == "notify":
        async with w.cond:
            w.cond.notify(op[1])
        w.say(me, op)
    elif kind == "notify_all":
        async with w.cond:
            w.cond.notify_all()
        w.say(me, op)
    elif kind == "ev_wait":
        await w.event.wait()
        w.say(me, op, "set")
    elif kind == "ev_set":
        w.event.set()
        w.say(me, op)
    elif kind == "ev_clear":
        w.event.clear()
        w.say(me, op)
    elif kind == "put":
        await w.queue.put(op[1])
        w.say(me, op, w.queue.qsize())
    elif kind == "get":
        w.say(me, op, await w.queue.get())
    elif kind == "put_nowait":
        w.queue.put_nowait(op[1])
        w.say(me, op, w.queue.qsize())
    elif kind == "get_nowait":
        w.say(me, op, w.queue.get_nowait())
    elif kind == "task_done":
        w.queue.task_done()
        w.say(me, op)
    elif kind == "join":
        await w.queue.join()
        w.say(me, op, "joined")
    elif kind == "fut_await":
        w.say(me, op, await w.futs[op[1]])
    elif kind == "fut_set":
        w.futs[op[1]].set_result(op[2])
        w.say(me, op)
    elif kind == "fut_fail":
        w.futs[op[1]].set_exception(ValueError("failed"))
        w.say(me, op)
    elif kind == "fut_cancel":
        w.say(me, op, w.futs[op[1]].cancel(f"f by T{me}"))
    elif kind == "shield":
        w.say(me, op, await asyncio.shield(w.futs[op[1]]))
    elif kind == "gather":
        a, b = await gather(*w.futs)
        w.say(me, op, f"{a} {b}")
    elif kind == "wait_timeout":
        done, _ = await asyncio.wait(w.futs, timeout=op[1] / 16)
        w.say(me, op, len(done))
    elif kind == "wait_first":
        done, _ = await asyncio.wait(w.futs, return_when=asyncio.FIRST_COMPLETED)
        w.say(me, op, len(done))
    elif kind == "cancel":
        w.say(me, op, w.tasks[op[1]].cancel(f"by T{me}"))
    elif kind == "await_task":
        w.say(me, op, await w.tasks[op[1]])
    elif kind == "sleep":
        await asyncio.sleep(op[1] / 16)
        w.say(me, op)
    elif kind == "timeout":
        async with asyncio.timeout(op[1] / 16):
            await run_op(w, me, op[2:])
        w.say(me, op, "in time")
    elif kind == "group":
        try:
            async with TaskGroup() as tg:
                for k, child in enumerate(op[1:-1]):
                    tg.create_task(run_traced(w, f"{me}.{k}", child, group_member=True))
                await run_traced(w, me, op[-1], group_member=True)
            w.say(me, op, "ok")
        except ExceptionGroup as eg:
            w.say(me, op, "errors " + " ".join(type(e).__name__ for e in eg.exceptions))
    elif kind == "fail":
        w.say(me, op)
        raise ValueError("fail")
    elif kind == "eager":
        name = f"{me}.e"
        task = Task(run_traced(w, name, op[2:]), loop=asyncio.get_running_loop(),
                    eager_start=True)
        w.say(me, op, "started " + ("done" if task.done() else "pending"))
        try:
            await yields(op[1])
        except asyncio.CancelledError:
            # Not left pending for ever: asyncio reports such a task when it is collected, Eddy
            # when the loop closes (docs/architecture.md, Lifetime).
            task.cancel()
            raise
        await task
        w.say(me, op, "joined")
    elif kind in ("wait_tasks_all", "wait_tasks_exc"):
        when = asyncio.ALL_COMPLETED if kind == "wait_tasks_all" else asyncio.FIRST_EXCEPTION
        done, _ = await asyncio.wait([w.tasks[op[1]], w.tasks[op[2]]], return_when=when)
        w.say(me, op, len(done))
    elif kind == "as_completed_tasks":  # the results in the order the tasks end
        results = []
        for next_done in asyncio.as_completed([w.tasks[op[1]], w.tasks[op[2]]],
                                              timeout=op[3] / 16 if op[3] else None):
            results.append(str(await next_done))
        w.say(me, op, " ".join(results))
    elif kind == "cond_wait_for":
        async with w.cond:
            await w.cond.wait_for(lambda: w.queue.qsize() > 0)
            w.say(me, op, w.queue.qsize())
    elif kind == "q_shutdown":
        w.queue.shutdown(immediate=bool(op[1]))
        w.say(me, op, w.queue.qsize())
    elif kind == "sem_release":
        w.sem.release()
        w.say(me, op, w.sem._value)
    elif kind == "uncancel":
        w.say(me, op, asyncio.current_task().uncancel())
    elif kind == "cancel_current":
        task = asyncio.current_task()
        w.say(me, op, task.cancel(f"self T{me}"))
        if op[1]:
            w.say(me, op, f"uncancel {task.uncancel()}")
    elif kind == "barrier":
        w.say(me, op, await w.barrier.wait())
    elif kind == "barrier_reset":
        await w.barrier.reset()
        w.say(me, op)
    elif kind == "barrier_abort":
        await w.barrier.abort()
        w.say(me, op)
    elif kind == "callback":
        def done(f, i=op[1]):
            w.trace.append(f"T{me} callback f{i} -> {describe_future(f)}")
        w.futs[op[1]].add_done_callback(done)
        w.say(me, op)
    elif kind == "soon":
        asyncio.get_running_loop().call_soon(lambda: w.trace.append(f"T{me} soon ran"))
        w.say(me, op)
    elif kind == "gather_tasks":
        outcomes = await gather(w.tasks[op[1]], w.tasks[op[2]], return_exceptions=True)
        w.say(me, op, " ".join(describe_outcome(x) for x in outcomes))
    elif kind == "shield_task":
        w.say(me, op, await asyncio.shield(w.tasks[op[1]]))
    elif kind == "wait_tasks":
        done, _ = await asyncio.wait([w.tasks[op[1]], w.tasks[op[2]]],
                                     return_when=asyncio.FIRST_COMPLETED)
        w.say(me, op, len(done))
    elif kind == "cancelling":
        w.say(me, op, asyncio.current_task().cancelling())
    elif kind == "notify_unlocked":
        w.cond.notify()
        w.say(me, op)
    elif kind in ("agen_next", "agen_send", "agen_throw"):
        try:
            if kind == "agen_next":
                value = await w.gen.__anext__()
            elif kind == "agen_send":
                value = await w.gen.asend(op[1])
            else:
                # None if it had already ended: Eddy's athrow gives nullopt, as for the
                # StopAsyncIteration of a generator that ends in this step.
                value = await w.gen.athrow(ValueError("thrown in"))
                value = "stop" if value is None else value
        except StopAsyncIteration:
            value = "stop"
        w.say(me, op, value)
    elif kind == "agen_close":
        await w.gen.aclose()
        w.say(me, op, "closed")
    elif kind == "state":
        w.say(me, op, f"lock={w.lock.locked()} sem={w.sem.locked()} cond={w.cond.locked()} "
                      f"event={w.event.is_set()} queue={w.queue.qsize()} full={w.queue.full()} "
                      f"barrier={w.barrier.n_waiting}{' broken' if w.barrier.broken else ''}")
    else:
        raise AssertionError(kind)


def cancelled_text(op, e):
    """How a CancelledError that `op` raised is traced. Not with the message of an awaited task's
    cancellation: asyncio gives it to the first awaiter only (later ones get an empty
    CancelledError), Eddy to every awaiter."""
    return "cancelled" + ("" if awaits_tasks(op) else f" '{e.args[0] if e.args else ''}'")


# Operations that await other tasks: a cancellation they raise is traced without its message.
TASK_AWAITS = ("await_task", "gather_tasks", "shield_task", "wait_tasks", "wait_tasks_all",
               "wait_tasks_exc", "as_completed_tasks")


def awaits_tasks(op):
    if op[0] == "eager":
        return True
    if op[0] == "timeout":
        return awaits_tasks(op[2:])
    if op[0] == "group":
        return any(awaits_tasks(x) for x in op[1:])
    return op[0] in TASK_AWAITS


async def run_traced(w, me, op, group_member=False):
    """One operation, its errors traced; a CancelledError ends the task. In a TaskGroup's member
    (a child, or the body) every error is raised on, for the group to collect."""
    try:
        await run_op(w, me, op)
    except asyncio.CancelledError as e:
        w.say(me, op, cancelled_text(op, e))
        raise
    except Exception as e:
        if not group_member:
            w.say(me, op, type(e).__name__)
            return
        w.say(me, op, "raises " + type(e).__name__)
        raise


async def actor(w, me, ops):
    for op in ops:
        await run_traced(w, me, op)
    return me


def describe_outcome(x):
    if isinstance(x, asyncio.CancelledError):
        return "cancelled"
    if isinstance(x, BaseException):
        return type(x).__name__
    return str(x)


def describe_future(f):
    if not f.done():
        return "pending"
    if f.cancelled():
        return "cancelled"
    if f._exception is not None:  # without marking it retrieved, as exception() would
        return f"exception {type(f._exception).__name__}"
    return f"result {f.result()}"


async def main(program):
    w = World(program)
    for me, ops in enumerate(program["tasks"]):
        w.tasks.append(asyncio.create_task(actor(w, me, ops)))
    await yields(program["passes"])
    if program["sleep"]:
        await asyncio.sleep(program["sleep"] / 16)
    for me, t in enumerate(w.tasks):
        if not t.done():
            w.trace.append(f"main cancels T{me} -> {t.cancel('by main')}")
    for _ in range(20):
        if all(t.done() for t in w.tasks):
            break
        await asyncio.sleep(0)
    else:
        return None  # something still waits: not a usable program
    await yields(3)  # what the last steps scheduled (done callbacks, call_soon) runs now
    if w.gen is not None:  # closed here, not by the garbage collector at some later time
        try:
            await w.gen.aclose()
            w.trace.append("main closes G -> ok")
        except BaseException as e:
            w.trace.append(f"main closes G -> {type(e).__name__}")
    for me, t in enumerate(w.tasks):
        w.trace.append(f"T{me} end {describe_future(t)}")
    w.trace.append(f"lock={w.lock.locked()} sem={w.sem.locked()} event={w.event.is_set()} "
                   f"queue={w.queue.qsize()} f0={describe_future(w.futs[0])} "
                   f"f1={describe_future(w.futs[1])}")
    return w.trace


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """Time moves only when the loop would wait, by exactly the wait (as Eddy's virtual-clock
    loop). Two timers due at the same time mark the program as tied: asyncio's timer heap does
    not order them by creation, so such a program is not used."""

    class Selector(selectors.DefaultSelector):
        def __init__(self, loop):
            super().__init__()
            self.loop = loop

        def select(self, timeout=None):
            if timeout is None:
                raise RuntimeError("the program would wait forever")
            self.loop.now += timeout
            return super().select(0)

    def __init__(self):
        self.now = 0.0
        self.deadlines = set()
        self.tied = False
        super().__init__(VirtualTimeLoop.Selector(self))

    def time(self):
        return self.now

    def call_at(self, when, callback, *args, context=None):
        self.tied = self.tied or when in self.deadlines
        self.deadlines.add(when)
        return super().call_at(when, callback, *args, context=context)


def run(program, timed=False, groups=False):
    loop = VirtualTimeLoop() if timed else asyncio.new_event_loop()
    if groups:
        loop.set_task_factory(lambda loop, coro, **kwargs: Task(coro, loop=loop, **kwargs))
    reports = []
    loop.set_exception_handler(lambda loop, context: reports.append(context["message"]))
    try:
        trace = loop.run_until_complete(main(program))
        if timed and loop.tied:
            return None
        gc.collect()  # what is left unretrieved is reported as it goes
        if trace is not None:
            trace.append(f"reports {len(reports)}")
            trace.extend(f"report {message}" for message in reports)
        return trace
    finally:
        loop.close()


def print_program(seed, program, trace):
    print(f"program {seed} sem {program['sem']} queue {program['queue']} qmax {program['qmax']} "
          f"cond {program['cond']} parties {program['parties']} passes {program['passes']} "
          f"sleep {program['sleep']}")
    for me, ops in enumerate(program["tasks"]):
        print(f"T{me}: " + "; ".join(op_text(op) for op in ops))
    if "gen" in program:
        print("G: " + "; ".join(op_text(op) for op in program["gen"]))
    print("trace")
    for line in trace:
        print(line)
    print("end")


def generate(timed=False, groups=False, agens=False):
    made, seed = 0, FIRST_SEED
    while made < PROGRAMS:
        program = random_program(random.Random(seed), timed, groups, agens)
        trace = run(program, timed, groups)
        if trace is not None:
            print_program(seed, program, trace)
            made += 1
        seed += 1


if __name__ == "__main__":
    generate()
