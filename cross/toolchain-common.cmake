# Shared part of the cross toolchain files; the per-target files set AGENTD_CROSS_TRIPLE
# (GNU triplet = Debian multiarch tuple), AGENTD_CROSS_PROCESSOR, AGENTD_CROSS_QEMU and
# AGENTD_CROSS_DEFAULT_SYSROOT, then include this.
#
# Compilers: Debian's cross packages (g++-<triple>), which bring the C++ standard library
# to link against; the target's other libraries come from AGENTD_SYSROOT:
#   "/"  Debian multiarch: the target's -dev packages installed on this host (arm64 default)
#   DIR  an extracted Debian tree (cross/prepare-sysroot.sh, mmdebstrap --variant=extract)
# cross/build.sh passes what cross/prepare-sysroot.sh printed.

set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR ${AGENTD_CROSS_PROCESSOR})
set(CMAKE_C_COMPILER ${AGENTD_CROSS_TRIPLE}-gcc)
set(CMAKE_CXX_COMPILER ${AGENTD_CROSS_TRIPLE}-g++)

set(AGENTD_SYSROOT "${AGENTD_CROSS_DEFAULT_SYSROOT}" CACHE PATH
    "Target libraries: / for Debian multiarch, else an extracted Debian tree")
# try_compile projects read this file again; hand them the same sysroot.
list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES AGENTD_SYSROOT)

if(AGENTD_SYSROOT STREQUAL "/" OR AGENTD_SYSROOT STREQUAL "")
  # Multiarch: the Debian cross compiler already searches /usr/include/<triple> and
  # /usr/lib/<triple>, and CMake's find_* use lib/<triple> (CMAKE_LIBRARY_ARCHITECTURE),
  # so the host's own (x86-64) libraries are never picked.
  set(_agentd_root "")
else()
  if(NOT EXISTS "${AGENTD_SYSROOT}/usr/lib/${AGENTD_CROSS_TRIPLE}")
    message(FATAL_ERROR "AGENTD_SYSROOT=${AGENTD_SYSROOT} holds no ${AGENTD_CROSS_TRIPLE} libraries; "
                        "run cross/prepare-sysroot.sh first (cross/build.sh does)")
  endif()
  set(_agentd_root "${AGENTD_SYSROOT}")
  set(CMAKE_SYSROOT "${AGENTD_SYSROOT}")
  set(CMAKE_FIND_ROOT_PATH "${AGENTD_SYSROOT}")
  set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
  set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
  set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
endif()
# Tools (pkg-config, strip, ...) are the host's.
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)

# pkg-config (pkg_check_modules) must see the target's .pc files only: LIBDIR replaces the
# host's search path; SYSROOT_DIR prefixes the -I/-L paths it prints with the tree.
set(ENV{PKG_CONFIG_LIBDIR}
    "${_agentd_root}/usr/lib/${AGENTD_CROSS_TRIPLE}/pkgconfig:${_agentd_root}/usr/share/pkgconfig")
set(ENV{PKG_CONFIG_PATH} "")
set(ENV{PKG_CONFIG_SYSROOT_DIR} "${_agentd_root}")

# ctest runs target executables (the unit tests) through qemu-user; -L points its ELF
# interpreter and library lookups at the target tree ("/" for multiarch).
find_program(AGENTD_QEMU ${AGENTD_CROSS_QEMU})
if(AGENTD_QEMU)
  if(_agentd_root STREQUAL "")
    set(CMAKE_CROSSCOMPILING_EMULATOR ${AGENTD_QEMU})
  else()
    set(CMAKE_CROSSCOMPILING_EMULATOR ${AGENTD_QEMU} -L ${_agentd_root})
  endif()
endif()
# Tests that start other target executables (the stand-ins) run them through the
# kernel's binfmt handler, which knows no -L; qemu reads QEMU_LD_PREFIX instead.
set(AGENTD_CROSS_SYSROOT "${_agentd_root}" CACHE INTERNAL "target tree for qemu-user")
