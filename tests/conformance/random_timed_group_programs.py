"""Random programs with TaskGroups (random_group_programs.py) and timers
(random_timed_programs.py): groups also run under asyncio.timeout, and their children and
bodies sleep and time out. tests/test_random_programs.cpp replays them on Eddy's virtual-clock
loop."""
import random_programs

if __name__ == "__main__":
    random_programs.generate(timed=True, groups=True)
