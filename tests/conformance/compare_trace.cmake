# Runs a conformance scenario under Python's asyncio and fails unless its trace equals the
# committed .trace file that the C++ twin is checked against.
execute_process(COMMAND ${PYTHON} ${SCRIPT} OUTPUT_VARIABLE actual RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${SCRIPT} failed (${rc})")
endif()
file(READ ${EXPECTED} expected)
if(NOT actual STREQUAL expected)
  message(FATAL_ERROR "Python's trace differs from ${EXPECTED}:\n--- python\n${actual}\n--- expected\n${expected}")
endif()
message(STATUS "python3 trace == ${EXPECTED}")
