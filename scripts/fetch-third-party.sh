#!/bin/sh
# Fetches Catch2 3.7.x (amalgamated) and Dear ImGui 1.90.x (core + SDL2/GLFW/OpenGL3 backends) from
# Debian's source packages into third_party/ (git-ignored, never committed). apt runs with private
# state in a temp dir: /etc/apt is not changed and nothing is installed. bookworm ships Catch2 2.x
# and ImGui 1.86 (whose GLFW backend asserts in browsers), so the sources come from trixie's deb-src.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
want=""
[ -f "$ROOT/third_party/catch2/catch_amalgamated.hpp" ] || want="$want catch2"
[ -f "$ROOT/third_party/imgui/backends/imgui_impl_opengl3.cpp" ] || want="$want imgui"
[ -n "$want" ] || exit 0
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
mkdir -p "$T/lists/partial" "$T/parts" "$T/cache/archives/partial" "$T/src"
URI=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
[ -n "$URI" ] || URI=$(awk '/^deb /{print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
[ -n "$URI" ] || { echo "fetch-third-party: no Debian mirror configured in /etc/apt" >&2; exit 1; }
echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $URI trixie main" > "$T/sources.list"
O="-o Dir::Etc::SourceList=$T/sources.list -o Dir::Etc::SourceParts=$T/parts -o Dir::State::Lists=$T/lists -o Dir::Cache=$T/cache -o APT::Sandbox::User=root"
# shellcheck disable=SC2086
apt-get $O update -qq
# shellcheck disable=SC2086
(cd "$T/src" && apt-get $O source -qq $want >/dev/null)
for pkg in $want; do
  S=$(ls -d "$T"/src/"$pkg"-*/ | head -1)
  case $pkg in
  catch2)
    mkdir -p "$ROOT/third_party/catch2"
    (cd "$S/extras" && cp catch_amalgamated.hpp catch_amalgamated.cpp Catch.cmake CatchAddTests.cmake "$ROOT/third_party/catch2/")
    cp "$S/LICENSE.txt" "$ROOT/third_party/catch2/" ;;
  imgui)
    mkdir -p "$ROOT/third_party/imgui/backends"
    (cd "$S" && cp LICENSE.txt imconfig.h imgui.cpp imgui.h imgui_demo.cpp imgui_draw.cpp imgui_internal.h \
       imgui_tables.cpp imgui_widgets.cpp imstb_rectpack.h imstb_textedit.h imstb_truetype.h "$ROOT/third_party/imgui/" &&
     cp backends/imgui_impl_sdl2.* backends/imgui_impl_glfw.* backends/imgui_impl_opengl3* "$ROOT/third_party/imgui/backends/") ;;
  esac
  echo "third_party/$pkg: $(basename "$S")"
done
