// Built against an installed Eddy (find_package or pkg-config); prints the answer and exits 0.
#include <eddy/eddy.hpp>
#include <eddy/inspect.hpp>

#include <cstdio>

eddy::Coro<int> answer() {
  co_await eddy::sleep(0.01);
  co_return 42;
}

int main() {
  int v = eddy::run(answer());
  std::printf("consumer: eddy::run(answer()) = %d, inspector hooks compiled in: %d\n", v,
              static_cast<int>(eddy::inspect::compiled_in()));
  return v == 42 ? 0 : 1;
}
