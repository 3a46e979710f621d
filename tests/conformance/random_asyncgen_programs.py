"""Random programs as in random_programs.py, whose tasks also share an async generator: they
step it with __anext__, asend, athrow and aclose, concurrently (RuntimeError), before it started
(TypeError) or after it ended, and cancel one another while the generator awaits inside a step.
Between its yields the generator runs operations on the shared locks, queue, event and futures.
tests/test_random_programs.cpp replays them on every Eddy loop kind."""
import random_programs

if __name__ == "__main__":
    random_programs.generate(agens=True)
