"""Random programs for a StreamReader: a feeder task feeds chunks (with loop passes between them,
perhaps EOF or an exception), and one or two consumer tasks read with read(n), readline,
readexactly(n) and readuntil(separator), under a small limit. This script prints each program and
the trace asyncio gives for it; tests/test_random_programs.cpp replays them on every Eddy loop
kind. Data is written as "..." with \\n for a newline.
"""
import asyncio
import random
import sys

PROGRAMS = int(sys.argv[1]) if len(sys.argv) > 1 else 300
FIRST_SEED = int(sys.argv[2]) if len(sys.argv) > 2 else 1

# 8 bytes: longer than what Eddy finds without a coroutine frame.
SEPARATORS = ["\\n", "x", "xy", "yx\\n", "abxyabxy", "empty"]


def unescape(s):
    return "" if s == "empty" else s.replace("\\n", "\n")


def show(data):
    return '"' + data.decode().replace("\n", "\\n") + '"'


def random_chunk(rng):
    text = "".join(rng.choice("abxy\n\n") for _ in range(rng.randint(0, 12)))
    return text.replace("\n", "\\n") or "empty"


def random_read(rng):
    kind = rng.choices(["read", "readline", "readexactly", "readuntil", "at_eof"],
                       weights=[3, 3, 3, 4, 1])[0]
    if kind == "read":
        return (kind, rng.choice([-1, 0, 1, 2, 3, 5, 8, 10]))
    if kind == "readexactly":
        return (kind, rng.choice([-1, 0, 1, 2, 3, 5, 8, 10]))
    if kind == "readuntil":
        return (kind, rng.choices(SEPARATORS, weights=[4, 3, 3, 2, 2, 1])[0])
    return (kind,)


def random_program(rng):
    feeds = []
    for _ in range(rng.randint(1, 8)):
        feeds.append(("feed", random_chunk(rng)))
        feeds.extend([("yield",)] * rng.randint(0, 2))
    end = rng.random()
    if end < 0.6:
        feeds.append(("eof",))
    elif end < 0.7:
        feeds.append(("fail",))
    return {
        "limit": rng.randint(3, 16),
        "passes": rng.randint(0, 12),
        "feeder": feeds,
        "consumers": [[random_read(rng) for _ in range(rng.randint(1, 6))]
                      for _ in range(rng.choice([1, 1, 2]))],
    }


def op_text(op):
    return " ".join(str(x) for x in op)


async def feeder(reader, feeds, trace):
    for op in feeds:
        if op[0] == "feed":
            reader.feed_data(unescape(op[1]).encode())
        elif op[0] == "eof":
            reader.feed_eof()
        elif op[0] == "fail":
            reader.set_exception(ValueError("failed"))
        else:
            await asyncio.sleep(0)
            continue
        trace.append(f"F {op_text(op)}")


async def read_one(reader, op):
    kind = op[0]
    if kind == "read":
        return show(await reader.read(op[1]))
    if kind == "readline":
        return show(await reader.readline())
    if kind == "readexactly":
        return show(await reader.readexactly(op[1]))
    if kind == "readuntil":
        return show(await reader.readuntil(unescape(op[1]).encode()))
    return str(reader.at_eof())


async def consumer(reader, me, reads, trace):
    for op in reads:
        try:
            what = await read_one(reader, op)
        except asyncio.CancelledError:
            trace.append(f"C{me} {op_text(op)} -> cancelled")
            raise
        except asyncio.IncompleteReadError as e:
            what = f"IncompleteReadError partial={show(e.partial)} expected={e.expected}"
        except asyncio.LimitOverrunError as e:
            what = f"LimitOverrunError consumed={e.consumed}"
        except Exception as e:
            what = type(e).__name__
        trace.append(f"C{me} {op_text(op)} -> {what}")


async def main(program):
    trace = []
    reader = asyncio.StreamReader(limit=program["limit"])
    feeding = asyncio.create_task(feeder(reader, program["feeder"], trace))
    consumers = [asyncio.create_task(consumer(reader, me, reads, trace))
                 for me, reads in enumerate(program["consumers"])]
    for _ in range(program["passes"]):
        await asyncio.sleep(0)
    for _ in range(20):
        if feeding.done():
            break
        await asyncio.sleep(0)
    for me, c in enumerate(consumers):
        if not c.done():
            trace.append(f"main cancels C{me} -> {c.cancel()}")
    for _ in range(3):
        await asyncio.sleep(0)
    if not all(c.done() for c in consumers):
        return None
    # What is left, read at EOF.
    reader.feed_eof()
    try:
        rest = show(await reader.read(-1))
    except Exception as e:
        rest = type(e).__name__
    trace.append(f"rest {rest} at_eof={reader.at_eof()}")
    return trace


def print_program(seed, program, trace):
    print(f"program {seed} limit {program['limit']} passes {program['passes']}")
    print("F: " + "; ".join(op_text(op) for op in program["feeder"]))
    for me, reads in enumerate(program["consumers"]):
        print(f"C{me}: " + "; ".join(op_text(op) for op in reads))
    print("trace")
    for line in trace:
        print(line)
    print("end")


def generate():
    made, seed = 0, FIRST_SEED
    while made < PROGRAMS:
        program = random_program(random.Random(seed))
        trace = asyncio.run(main(program))
        if trace is not None:
            print_program(seed, program, trace)
            made += 1
        seed += 1


if __name__ == "__main__":
    generate()
