# Install rules for the system files and the CPack DEB/RPM packages
# (architecture.md: packaging/, systemd/). Included at the end of the top-level
# CMakeLists.txt. Needs no packaging tool to configure or build; `cpack` needs
# dpkg-shlibdeps for DEB and rpmbuild for RPM (packaging/build-packages.sh
# installs them).
#
#   cpack -G DEB -B build/release/packages     (or: cpack -G "DEB;RPM")
#
# The version is project(VERSION) in the top-level CMakeLists.txt; the package
# release (Debian revision / RPM Release) is AGENTD_PACKAGE_RELEASE.

set(AGENTD_PACKAGE_RELEASE "1" CACHE STRING
    "Package release: Debian revision and RPM Release (bump to rebuild the same version)")
set(AGENTD_PACKAGE_MAINTAINER "agentd maintainers <agentd@example.org>" CACHE STRING
    "Package maintainer, 'Name <address>'")
set(AGENTD_PACKAGE_URL "" CACHE STRING "Project home page for the package metadata (none when empty)")
if(NOT AGENTD_PACKAGE_RELEASE MATCHES "^[0-9][0-9A-Za-z.+~]*$")
  message(FATAL_ERROR "AGENTD_PACKAGE_RELEASE '${AGENTD_PACKAGE_RELEASE}': must start with a digit "
                      "and hold only letters, digits and . + ~")
endif()

# agentd is a system service: its units name /usr/sbin/agentd. Install under
# /usr unless a prefix was given.
if(CMAKE_INSTALL_PREFIX_INITIALIZED_TO_DEFAULT)
  set(CMAKE_INSTALL_PREFIX "/usr" CACHE PATH "Install prefix" FORCE)
endif()
include(GNUInstallDirs)  # after the prefix: it computes the CMAKE_INSTALL_FULL_* paths

set(_pkg_src ${CMAKE_CURRENT_LIST_DIR})
set(_unit_src ${CMAKE_CURRENT_LIST_DIR}/../systemd)
set(_pkg_out ${CMAKE_BINARY_DIR}/packaging)
file(MAKE_DIRECTORY ${_pkg_out})
set_property(DIRECTORY ${CMAKE_SOURCE_DIR} APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS
             ${_unit_src}/agentd.service ${_unit_src}/agentd-rollback.service
             ${_pkg_src}/agentd.8 ${_pkg_src}/agentctl.8)

# The unit files in systemd/ name the /usr paths so that they can be checked
# as they are (systemd-analyze verify); another prefix is substituted here.
foreach(_unit agentd.service agentd-rollback.service)
  file(READ ${_unit_src}/${_unit} _text)
  string(REPLACE "/usr/sbin/agentd" "${CMAKE_INSTALL_FULL_SBINDIR}/agentd" _text "${_text}")
  string(REPLACE "/usr/libexec/agentd/" "${CMAKE_INSTALL_FULL_LIBEXECDIR}/agentd/" _text "${_text}")
  file(CONFIGURE OUTPUT ${_pkg_out}/${_unit} CONTENT "${_text}" @ONLY)
endforeach()

# Debian wants man pages and changelogs compressed with gzip -9n (no name,
# no time stamp: reproducible).
find_program(AGENTD_GZIP gzip REQUIRED)
function(agentd_gzip src dst)
  execute_process(COMMAND ${AGENTD_GZIP} -9nc INPUT_FILE ${src} OUTPUT_FILE ${dst} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "gzip ${src}: ${rc}")
  endif()
endfunction()
agentd_gzip(${_pkg_src}/agentd.8 ${_pkg_out}/agentd.8.gz)
agentd_gzip(${_pkg_src}/agentctl.8 ${_pkg_out}/agentctl.8.gz)

# Changelogs: one entry for the version being packaged. The date honours
# SOURCE_DATE_EPOCH (reproducible builds; build-packages.sh sets it from git).
set(_full_version "${PROJECT_VERSION}-${AGENTD_PACKAGE_RELEASE}")
string(TIMESTAMP _deb_date "%a, %d %b %Y %H:%M:%S +0000" UTC)
string(TIMESTAMP _rpm_date "%a %b %d %Y" UTC)
file(CONFIGURE OUTPUT ${_pkg_out}/changelog.Debian CONTENT
"agentd (${_full_version}) unstable; urgency=medium

  * agentd ${PROJECT_VERSION}, package release ${AGENTD_PACKAGE_RELEASE}.

 -- ${AGENTD_PACKAGE_MAINTAINER}  ${_deb_date}
")
agentd_gzip(${_pkg_out}/changelog.Debian ${_pkg_out}/changelog.Debian.gz)
file(CONFIGURE OUTPUT ${_pkg_out}/changelog.rpm CONTENT
"* ${_rpm_date} ${AGENTD_PACKAGE_MAINTAINER} - ${_full_version}
- agentd ${PROJECT_VERSION}, package release ${AGENTD_PACKAGE_RELEASE}.
")

# ---- Install rules (agentd and agentctl: top-level CMakeLists.txt) -----------
install(FILES ${_pkg_out}/agentd.service ${_pkg_out}/agentd-rollback.service
        DESTINATION lib/systemd/system)
install(PROGRAMS ${_unit_src}/rollback.sh DESTINATION ${CMAKE_INSTALL_LIBEXECDIR}/agentd RENAME rollback)
install(PROGRAMS ${_unit_src}/cron-guard.sh DESTINATION ${CMAKE_INSTALL_LIBEXECDIR}/agentd RENAME cron-guard)
# agentd reads /etc/agentd whatever the prefix.
install(FILES ${_pkg_src}/agentd.conf DESTINATION /etc/agentd)
install(DIRECTORY DESTINATION /etc/agentd/conf.d)
# Keys that may sign upgrade manifests (agentd(8), AGENTD_TRUSTED_KEYS_DIR); empty
# until the operator pins the publisher's key.
install(DIRECTORY DESTINATION /etc/agentd/trusted.d DIRECTORY_PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE WORLD_READ WORLD_EXECUTE)
install(FILES ${_pkg_out}/agentd.8.gz ${_pkg_out}/agentctl.8.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man8)
install(FILES ${_pkg_src}/copyright ${_pkg_out}/changelog.Debian.gz DESTINATION ${CMAKE_INSTALL_DATADIR}/doc/agentd)
# The looser sandbox the commands method needs, as a drop-in to copy (agentd(8)).
install(FILES ${_unit_src}/commands-method.conf DESTINATION ${CMAKE_INSTALL_DATADIR}/doc/agentd/examples)
install(FILES ${_pkg_src}/lintian-overrides DESTINATION ${CMAKE_INSTALL_DATADIR}/lintian/overrides RENAME agentd)
# Prometheus alerting rules with their promtool tests, and a Grafana dashboard (agentd(8), METRICS).
install(FILES ${_pkg_src}/monitoring/agentd-alerts.yml
              ${_pkg_src}/monitoring/agentd-alerts.test.yml
              ${_pkg_src}/monitoring/grafana-dashboard.json
        DESTINATION ${CMAKE_INSTALL_DATADIR}/agentd)

# ---- CPack ---------------------------------------------------------------------
set(CPACK_PACKAGE_NAME agentd)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_VENDOR "agentd")
set(CPACK_PACKAGE_CONTACT "${AGENTD_PACKAGE_MAINTAINER}")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "rolling upgrades of the Open Horizon agent across HA node groups")
set(CPACK_PACKAGE_DESCRIPTION
"agentd runs on every node of an Open Horizon HA node group and upgrades
the node's agent so that only one member of the group is disrupted at a
time. The members coordinate through the group's document on the Exchange:
each takes a lease with an optimistic lock before it installs and restarts
its agent, and a failed upgrade halts the rollout for the whole group.

This package holds the daemon, its systemd units (including a rollback to
the previous agentd package after a crash loop) and agentctl, the
administrator's command line tool.")
set(CPACK_PACKAGING_INSTALL_PREFIX ${CMAKE_INSTALL_PREFIX})
set(CPACK_PACKAGE_DIRECTORY ${CMAKE_BINARY_DIR}/packages)
set(CPACK_STRIP_FILES ON)
# CPack's strip keeps .comment (the compiler's ident); Debian's dh_strip drops it.
set(CPACK_PRE_BUILD_SCRIPTS ${_pkg_src}/cpack-pre-build.cmake)
set(CPACK_AGENTD_STRIP ${CMAKE_STRIP})
# /etc/agentd is absolute on purpose (see above).
set(CPACK_WARN_ON_ABSOLUTE_INSTALL_DESTINATION OFF)

# Target architecture names, for cross builds (native builds ask dpkg / uname).
if(CMAKE_CROSSCOMPILING)
  if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(aarch64|arm64)$")
    set(CPACK_DEBIAN_PACKAGE_ARCHITECTURE arm64)
    set(CPACK_RPM_PACKAGE_ARCHITECTURE aarch64)
  elseif(CMAKE_SYSTEM_PROCESSOR MATCHES "^arm")
    set(CPACK_DEBIAN_PACKAGE_ARCHITECTURE armhf)
    set(CPACK_RPM_PACKAGE_ARCHITECTURE armv7hl)
  elseif(CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|amd64)$")
    set(CPACK_DEBIAN_PACKAGE_ARCHITECTURE amd64)
    set(CPACK_RPM_PACKAGE_ARCHITECTURE x86_64)
  endif()
endif()

# DEB
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_RELEASE ${AGENTD_PACKAGE_RELEASE})
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
if(AGENTD_PACKAGE_URL)
  set(CPACK_DEBIAN_PACKAGE_HOMEPAGE ${AGENTD_PACKAGE_URL})
endif()
find_program(AGENTD_DPKG_SHLIBDEPS dpkg-shlibdeps)
if(AGENTD_DPKG_SHLIBDEPS)
  # Depends: from the shared libraries the binaries really use.
  set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
else()
  message(STATUS "dpkg-shlibdeps not found: a DEB package would lack its Depends")
endif()
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${_pkg_src}/deb/conffiles ${_pkg_src}/deb/postinst ${_pkg_src}/deb/prerm ${_pkg_src}/deb/postrm
    ${_pkg_src}/deb/triggers)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)

# RPM
set(CPACK_RPM_FILE_NAME RPM-DEFAULT)
set(CPACK_RPM_PACKAGE_RELEASE ${AGENTD_PACKAGE_RELEASE})
set(CPACK_RPM_PACKAGE_SUMMARY "Rolling upgrades of the Open Horizon agent across HA node groups")
set(CPACK_RPM_PACKAGE_DESCRIPTION "${CPACK_PACKAGE_DESCRIPTION}")
set(CPACK_PACKAGE_RELOCATABLE OFF)  # the units name fixed paths
set(CPACK_RPM_SPEC_MORE_DEFINE "%define packager ${AGENTD_PACKAGE_MAINTAINER}")
set(CPACK_RPM_PACKAGE_LICENSE "Apache-2.0")
set(CPACK_RPM_PACKAGE_GROUP "System Environment/Daemons")
if(AGENTD_PACKAGE_URL)
  set(CPACK_RPM_PACKAGE_URL ${AGENTD_PACKAGE_URL})
endif()
# Requires: from the ELF files and script interpreters (rpm's dependency generators).
set(CPACK_RPM_PACKAGE_AUTOREQ ON)
set(CPACK_RPM_PACKAGE_AUTOPROV ON)
set(CPACK_RPM_CHANGELOG_FILE ${_pkg_out}/changelog.rpm)
set(CPACK_RPM_POST_INSTALL_SCRIPT_FILE ${_pkg_src}/rpm/post.sh)
set(CPACK_RPM_PRE_UNINSTALL_SCRIPT_FILE ${_pkg_src}/rpm/preun.sh)
set(CPACK_RPM_POST_UNINSTALL_SCRIPT_FILE ${_pkg_src}/rpm/postun.sh)
set(_datadir ${CMAKE_INSTALL_FULL_DATADIR})
set(CPACK_RPM_USER_FILELIST
    "%config(noreplace) /etc/agentd/agentd.conf"
    "%license ${_datadir}/doc/agentd/copyright"
    # Debian-only files.
    "%exclude ${_datadir}/doc/agentd/changelog.Debian.gz"
    "%exclude ${_datadir}/lintian")
# Directories that belong to the system (filesystem, systemd, man-db packages).
set(CPACK_RPM_EXCLUDE_FROM_AUTO_FILELIST_ADDITION
    /etc ${CMAKE_INSTALL_FULL_SBINDIR} ${CMAKE_INSTALL_PREFIX}/lib/systemd ${CMAKE_INSTALL_PREFIX}/lib/systemd/system
    ${CMAKE_INSTALL_FULL_LIBEXECDIR} ${CMAKE_INSTALL_FULL_MANDIR} ${CMAKE_INSTALL_FULL_MANDIR}/man8
    ${_datadir}/doc ${_datadir}/lintian ${_datadir}/lintian/overrides)

set(_generators)
list(APPEND _generators DEB)
find_program(AGENTD_RPMBUILD rpmbuild)
if(AGENTD_RPMBUILD)
  list(APPEND _generators RPM)
endif()
set(CPACK_GENERATOR "${_generators}")

include(CPack)
