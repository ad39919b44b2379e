# CMake toolchain: armhf (ARMv7, hard float) with Debian's g++-arm-linux-gnueabihf.
# Usage: cmake --preset cross-armhf, or cross/build.sh armhf (prepares the sysroot first).
# Default sysroot: the extracted Debian tree of cross/prepare-sysroot.sh armhf; see
# toolchain-common.cmake.
set(AGENTD_CROSS_TRIPLE arm-linux-gnueabihf)
set(AGENTD_CROSS_PROCESSOR armv7l)
set(AGENTD_CROSS_QEMU qemu-arm-static)
set(AGENTD_CROSS_DEFAULT_SYSROOT "/var/cache/agentd-sysroot/armhf")
# GCC notes that the ARM parameter passing of some types changed in GCC 7.1 (-Wpsabi); it only
# matters when linking objects built by GCC < 7, which this build never does.
set(CMAKE_CXX_FLAGS_INIT "-Wno-psabi")
include(${CMAKE_CURRENT_LIST_DIR}/toolchain-common.cmake)
