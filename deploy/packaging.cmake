# Installation layout of the system files and the Debian packages (CPack, DEB generator).
#
# Included from the top CMakeLists.txt before the subdirectories: they call the
# mxcache_install_* functions below for the files whose place is not under the prefix.
#
# Components and packages:
#   server  -> mxcached        /usr/sbin/mxcached, /etc/mxcache/mxcached.conf (conffile), its
#                              systemd unit, /usr/share/doc/mxcached/examples/
#   policy  -> mxcache-policy  /usr/sbin/mxcache-policy, /etc/mxcache/mxcache-policy.conf
#                              (conffile), its unit, the Postfix snippets in
#                              /usr/share/doc/mxcache-policy/examples/postfix/
#   tools   -> mxcache-tools   /usr/bin/mxcachectl, libmxcache.so.*, its headers and pkg-config
#                              file, the Prometheus rules and the Grafana dashboard in
#                              /usr/share/doc/mxcache-tools/examples/
# mxcache-bench (tools/bench) is left out of the packages.
#
# /etc and the systemd unit directory are chosen when installing, not when configuring: with the
# prefix /usr (what cpack uses, whatever the build's CMAKE_INSTALL_PREFIX) they are /etc/mxcache
# and /lib/systemd/system; with any other prefix (`cmake --install build`, default /usr/local)
# PREFIX/etc/mxcache, and the units are not installed (they name /usr/sbin).
#
# Packages: `cpack -B OUTDIR` in a plain build directory (CMAKE_BUILD_TYPE RelWithDebInfo; the
# binaries are stripped). A build with MXCACHE_SANITIZE=ON refuses to be packaged.

set(MXCACHE_DEPLOY_DIR ${CMAKE_CURRENT_LIST_DIR})

# _mxcache_install_at(USR_DIR REL_DIR COMPONENT FILE...) - installs FILEs into USR_DIR when the
# install prefix is /usr, else into PREFIX/REL_DIR (REL_DIR "" skips the install then).
function(_mxcache_install_at usr_dir rel_dir component)
  set(files "")
  foreach(f IN LISTS ARGN)
    get_filename_component(abs "${f}" ABSOLUTE BASE_DIR "${CMAKE_CURRENT_SOURCE_DIR}")
    string(APPEND files " \"${abs}\"")
  endforeach()
  if(rel_dir STREQUAL "")
    set(other "message(STATUS \"Skipping ${usr_dir} files (install prefix \${CMAKE_INSTALL_PREFIX} is not /usr)\")")
  else()
    set(other "file(INSTALL DESTINATION \"\${CMAKE_INSTALL_PREFIX}/${rel_dir}\" TYPE FILE FILES ${files})")
  endif()
  install(CODE "
if(CMAKE_INSTALL_PREFIX STREQUAL \"/usr\")
  file(INSTALL DESTINATION \"${usr_dir}\" TYPE FILE FILES ${files})
else()
  ${other}
endif()" COMPONENT ${component})
endfunction()

# mxcache_install_etc(COMPONENT FILE...) - config files into /etc/mxcache (prefix /usr) or
# PREFIX/etc/mxcache.
function(mxcache_install_etc component)
  _mxcache_install_at(/etc/mxcache etc/mxcache ${component} ${ARGN})
endfunction()

# mxcache_install_unit(COMPONENT FILE...) - systemd units into /lib/systemd/system, only with
# the prefix /usr.
function(mxcache_install_unit component)
  _mxcache_install_at(/lib/systemd/system "" ${component} ${ARGN})
endfunction()

# mxcache_install_pkgconfig(TEMPLATE COMPONENT) - configures the pkg-config TEMPLATE when
# installing (prefix, libdir and includedir of the install, not of the configure run) into
# LIBDIR/pkgconfig. The template may use @CMAKE_INSTALL_PREFIX@, @CMAKE_INSTALL_FULL_LIBDIR@,
# @CMAKE_INSTALL_FULL_INCLUDEDIR@ and @PROJECT_VERSION@.
function(mxcache_install_pkgconfig template component)
  get_filename_component(tpl "${template}" ABSOLUTE BASE_DIR "${CMAKE_CURRENT_SOURCE_DIR}")
  get_filename_component(name "${tpl}" NAME)
  string(REGEX REPLACE "\\.in$" "" name "${name}")
  set(tmp "${CMAKE_CURRENT_BINARY_DIR}/install-time/${name}")
  install(CODE "
function(_mxcache_pc)
  set(PROJECT_VERSION \"${PROJECT_VERSION}\")
  set(CMAKE_INSTALL_FULL_LIBDIR \"\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_LIBDIR}\")
  set(CMAKE_INSTALL_FULL_INCLUDEDIR \"\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_INCLUDEDIR}\")
  configure_file(\"${tpl}\" \"${tmp}\" @ONLY)
  file(INSTALL DESTINATION \"\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_LIBDIR}/pkgconfig\" TYPE FILE FILES \"${tmp}\")
endfunction()
_mxcache_pc()" COMPONENT ${component})
endfunction()

# ---- files of deploy/ (the configs themselves are installed where their program is built)
set(MXCACHE_DOCDIR ${CMAKE_INSTALL_DATADIR}/doc)
mxcache_install_unit(server ${MXCACHE_DEPLOY_DIR}/systemd/mxcached.service)
mxcache_install_unit(policy ${MXCACHE_DEPLOY_DIR}/systemd/mxcache-policy.service)
install(FILES ${MXCACHE_DEPLOY_DIR}/postfix/main.cf ${MXCACHE_DEPLOY_DIR}/postfix/master.cf
  DESTINATION ${MXCACHE_DOCDIR}/mxcache-policy/examples/postfix COMPONENT policy)
install(FILES ${MXCACHE_DEPLOY_DIR}/prometheus/prometheus.yml ${MXCACHE_DEPLOY_DIR}/prometheus/mxcache-rules.yml
  ${MXCACHE_DEPLOY_DIR}/prometheus/mxcache-rules.test.yml
  DESTINATION ${MXCACHE_DOCDIR}/mxcache-tools/examples/prometheus COMPONENT tools)
install(FILES ${MXCACHE_DEPLOY_DIR}/grafana/mxcache.json
  DESTINATION ${MXCACHE_DOCDIR}/mxcache-tools/examples/grafana COMPONENT tools)
foreach(pkg_comp mxcached:server mxcache-policy:policy mxcache-tools:tools)
  string(REPLACE ":" ";" pc ${pkg_comp})
  list(GET pc 0 pkg)
  list(GET pc 1 comp)
  install(FILES ${MXCACHE_DEPLOY_DIR}/debian/copyright ${PROJECT_SOURCE_DIR}/README.md
    DESTINATION ${MXCACHE_DOCDIR}/${pkg} COMPONENT ${comp})
endforeach()

# ---- CPack
if(MXCACHE_SANITIZE)
  # Robustness: ASan/UBSan binaries must never reach a machine as a package. cpack reads this
  # file first and stops.
  set(CPACK_PROJECT_CONFIG_FILE ${PROJECT_BINARY_DIR}/CPackRefuse.cmake)
  file(WRITE ${CPACK_PROJECT_CONFIG_FILE}
    "message(FATAL_ERROR \"mxcache: this build has MXCACHE_SANITIZE=ON; build packages from a plain build (RelWithDebInfo)\")\n")
endif()

set(MXCACHE_PACKAGE_MAINTAINER "mxcache maintainers <postmaster@localhost>" CACHE STRING
  "Maintainer field of the Debian packages")
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME mxcache)
set(CPACK_PACKAGE_VENDOR mxcache)
# Empty: each package's CPACK_DEBIAN_<COMPONENT>_DESCRIPTION has its own first (summary) line.
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "${MXCACHE_PACKAGE_MAINTAINER}")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL server policy tools)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_RELEASE 1)
set(CPACK_DEBIAN_PACKAGE_SECTION mail)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
# Depends from the ELF files (dpkg-shlibdeps, dpkg-dev). Our own libmxcache.so.0 is found in the
# build tree (-l) and carries no dependency information there: CPack runs dpkg-shlibdeps with
# --ignore-missing-info, and the policy package names mxcache-tools itself. The tools package
# gets a shlibs file (libmxcache 0 mxcache-tools (>= VERSION)) and the ldconfig trigger.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS_PRIVATE_DIRS ${PROJECT_BINARY_DIR}/client)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS_POLICY ">=")
set(MXCACHE_DEB_VERSION "${PROJECT_VERSION}-${CPACK_DEBIAN_PACKAGE_RELEASE}")

# conffiles: every file the package installs under /etc (dpkg keeps the admin's changes).
set(MXCACHE_DEB_CONTROL ${PROJECT_BINARY_DIR}/deb-control)
file(WRITE ${MXCACHE_DEB_CONTROL}/mxcached/conffiles "/etc/mxcache/mxcached.conf\n")
file(WRITE ${MXCACHE_DEB_CONTROL}/mxcache-policy/conffiles "/etc/mxcache/mxcache-policy.conf\n")

set(CPACK_DEBIAN_SERVER_PACKAGE_NAME mxcached)
set(CPACK_DEBIAN_SERVER_PACKAGE_DEPENDS "adduser")
set(CPACK_DEBIAN_SERVER_PACKAGE_SUGGESTS "mxcache-tools, mxcache-policy")
set(CPACK_DEBIAN_SERVER_PACKAGE_CONTROL_EXTRA
  "${MXCACHE_DEB_CONTROL}/mxcached/conffiles;${MXCACHE_DEPLOY_DIR}/debian/mxcached/postinst;${MXCACHE_DEPLOY_DIR}/debian/mxcached/prerm;${MXCACHE_DEPLOY_DIR}/debian/mxcached/postrm")
set(CPACK_DEBIAN_SERVER_DESCRIPTION "mxcache service: shared greylisting and recipient verification for MX clusters
mxcached is the central service of an mxcache cluster: every MX of a domain asks it, through
its Postfix policy hook (package mxcache-policy), whether to take a recipient. It greylists
with postgrey's semantics for the whole cluster, verifies recipients once for all MXes with
SMTP probes to the mailbox backends and caches the answers in RocksDB.
.
The package installs the daemon, its configuration in /etc/mxcache/mxcached.conf and a
sandboxed systemd unit, and creates the system user mxcache and /var/lib/mxcache.")

set(CPACK_DEBIAN_POLICY_PACKAGE_NAME mxcache-policy)
set(CPACK_DEBIAN_POLICY_PACKAGE_DEPENDS "adduser, mxcache-tools (= ${MXCACHE_DEB_VERSION})")
set(CPACK_DEBIAN_POLICY_PACKAGE_SUGGESTS "postfix")
set(CPACK_DEBIAN_POLICY_PACKAGE_CONTROL_EXTRA
  "${MXCACHE_DEB_CONTROL}/mxcache-policy/conffiles;${MXCACHE_DEPLOY_DIR}/debian/mxcache-policy/postinst;${MXCACHE_DEPLOY_DIR}/debian/mxcache-policy/prerm;${MXCACHE_DEPLOY_DIR}/debian/mxcache-policy/postrm")
set(CPACK_DEBIAN_POLICY_DESCRIPTION "mxcache Postfix policy hook (asks the mxcached service)
mxcache-policy runs on every MX. Postfix asks it through check_policy_service; it forwards
each question to the mxcached service and hands the decision back, or a configured fallback
when the service cannot answer in time.
.
The package installs the daemon, /etc/mxcache/mxcache-policy.conf, a sandboxed systemd unit
and example main.cf and master.cf snippets in /usr/share/doc/mxcache-policy/examples.")

set(CPACK_DEBIAN_TOOLS_PACKAGE_NAME mxcache-tools)
set(CPACK_DEBIAN_TOOLS_PACKAGE_SUGGESTS "prometheus")
set(CPACK_DEBIAN_TOOLS_DESCRIPTION "mxcache operator CLI, client library and monitoring files
mxcachectl inspects and changes the state of an mxcached service (stats, list, flush,
whitelists, explain, verify). libmxcache is the client library (with its headers and
pkg-config file) that mxcachectl and mxcache-policy use.
.
Prometheus alerting rules and scrape configuration, and a Grafana dashboard, are in
/usr/share/doc/mxcache-tools/examples.")

include(CPack)
