"""Random programs as in random_programs.py, with timers: tasks also sleep, and run blocking
operations under asyncio.timeout. Time is virtual (it moves only when the loop would wait), so
the traces are exact; tests/test_random_programs.cpp replays them on Eddy's virtual-clock loop.
Delays are sixteenths of a second, and a program where two timers fall due at the same time is
not used (asyncio does not order such timers by creation)."""
import random_programs

if __name__ == "__main__":
    random_programs.generate(timed=True)
