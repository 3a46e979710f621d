#pragma once
#define EDDY_VERSION_MAJOR 0
#define EDDY_VERSION_MINOR 1
#define EDDY_VERSION_PATCH 0
namespace eddy {
inline constexpr const char* version = "0.1.0";
}
