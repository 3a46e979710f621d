// Eddy: Python's asyncio event loop in C++20. This umbrella header is the whole public API.
#pragma once

#include "eddy/backend.hpp"
#include "eddy/config.hpp"
#include "eddy/errors.hpp"
#include "eddy/executor.hpp"
#include "eddy/future.hpp"
#include "eddy/handle.hpp"
#include "eddy/log.hpp"
#include "eddy/loop.hpp"
#include "eddy/policy.hpp"
#include "eddy/net.hpp"
#include "eddy/protocols.hpp"
#include "eddy/runner.hpp"
#include "eddy/server.hpp"
#include "eddy/task.hpp"
#include "eddy/transports.hpp"
#include "eddy/version.hpp"
