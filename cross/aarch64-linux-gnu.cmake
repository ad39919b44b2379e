# CMake toolchain: arm64 (aarch64) with Debian's g++-aarch64-linux-gnu.
# Usage: cmake --preset cross-arm64, or cross/build.sh arm64 (prepares the sysroot first).
# Default sysroot "/" = Debian multiarch (arm64 -dev packages on this host); see
# toolchain-common.cmake and prepare-sysroot.sh.
set(AGENTD_CROSS_TRIPLE aarch64-linux-gnu)
set(AGENTD_CROSS_PROCESSOR aarch64)
set(AGENTD_CROSS_QEMU qemu-aarch64-static)
set(AGENTD_CROSS_DEFAULT_SYSROOT "/")
include(${CMAKE_CURRENT_LIST_DIR}/toolchain-common.cmake)
