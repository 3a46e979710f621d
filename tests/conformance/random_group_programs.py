"""Random programs as in random_programs.py, with TaskGroups: an operation may be
`async with TaskGroup()` with one or two children and a body, each an operation of its own;
others raise (`fail`) or call Task.uncancel. random_programs.py's TaskGroup and Task give
asyncio 3.13's behaviour on this machine's 3.11. tests/test_random_programs.cpp replays them on
every Eddy loop kind."""
import random_programs

if __name__ == "__main__":
    random_programs.generate(groups=True)
