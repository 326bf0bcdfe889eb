# System integration install rules and the Debian package (CPack DEB). Included last by the top-level
# CMakeLists. Binaries and plugins are installed by their own folders; this file installs:
#   <prefix>/lib/systemd/system/zayad.service, zayad.socket   (ExecStart points at <bindir>/zayad)
#   <prefix>/lib/sysusers.d/zayad.conf, <prefix>/lib/tmpfiles.d/zayad.conf
#   /etc/zayad/zayad.toml        the shipped config with model.path set to the installed model
#   ${ZAYA_DATA_INSTALL_DIR}/models/...                        when models/ exists in the source tree
#   <docdir>/*.md and <docdir>/examples/zayad-hip.conf         the HIP drop-in, not active by default
# Paths are fixed at configure time, as the binaries' compiled-in plugin/data folders are: configure
# with -DCMAKE_INSTALL_PREFIX=/usr for a system install or the package (`cpack -G DEB` then makes
# zayad_<version>_<arch>.deb).
#
# The maintainer scripts (systemd/debian/) honour DPKG_ROOT, so the package can be installed
# chrootless into a throw-away root; tests/integration/package_test.sh does that (ctest label
# `package`).
#
# Everything here is in the install component "system", so it can be installed or packaged alone:
#   cmake --install build --component system --prefix /usr   (with DESTDIR=... to stage it)

set(ZAYA_SYSTEMD_UNIT_DIR "lib/systemd/system" CACHE STRING
    "systemd unit folder, relative to the install prefix")
set(ZAYA_CONFIG_INSTALL_DIR "/etc/zayad" CACHE PATH "Folder of the installed zayad.toml")

set(_zaya_pkg_dir "${CMAKE_BINARY_DIR}/packaging")

# Writes CONTENT to FILE only when it changed, so reconfiguring does not touch timestamps. (Not
# file(CONFIGURE): the contents must stay literal, '@' and '${' included.)
function(_zaya_write_if_changed file content)
  file(WRITE "${file}.tmp" "${content}")
  file(COPY_FILE "${file}.tmp" "${file}" ONLY_IF_DIFFERENT)
  file(REMOVE "${file}.tmp")
endfunction()
set(_zaya_model "${ZAYA_DATA_INSTALL_DIR}/models/zaya-tiny-reasoner")

# --- generated files -------------------------------------------------------------------------
# The installed config: the clone-relative model path becomes the installed model folder. Fail the
# configure step if the shipped file no longer has the lines this rewrites, rather than install a
# config that points nowhere.
file(READ "${PROJECT_SOURCE_DIR}/config/zayad.toml" _zaya_toml)
set(_zaya_path_line "path = \"../models/zaya-tiny-reasoner\"")
set(_zaya_endpoint_line "endpoint = \"ipc:///run/zayad/zayad.sock\"")
foreach(_line IN ITEMS "${_zaya_path_line}" "${_zaya_endpoint_line}")
  string(FIND "${_zaya_toml}" "\n${_line}\n" _pos)
  if(_pos EQUAL -1)
    message(FATAL_ERROR "config/zayad.toml has no line '${_line}'; update cmake/ZayaInstall.cmake")
  endif()
endforeach()
string(REPLACE "\n${_zaya_path_line}\n" "\npath = \"${_zaya_model}\"\n" _zaya_toml "${_zaya_toml}")
_zaya_write_if_changed("${_zaya_pkg_dir}/zayad.toml" "${_zaya_toml}")

# The service runs the installed daemon.
file(READ "${PROJECT_SOURCE_DIR}/systemd/zayad.service" _zaya_unit)
string(FIND "${_zaya_unit}" "\nExecStart=/usr/bin/zayad " _pos)
if(_pos EQUAL -1)
  message(FATAL_ERROR "systemd/zayad.service has no 'ExecStart=/usr/bin/zayad' line")
endif()
string(REPLACE "\nExecStart=/usr/bin/zayad " "\nExecStart=${CMAKE_INSTALL_FULL_BINDIR}/zayad "
               _zaya_unit "${_zaya_unit}")
string(REPLACE "/usr/share/doc/zayad/" "${CMAKE_INSTALL_FULL_DOCDIR}/" _zaya_unit "${_zaya_unit}")
string(REPLACE "/etc/zayad/" "${ZAYA_CONFIG_INSTALL_DIR}/" _zaya_unit "${_zaya_unit}")
_zaya_write_if_changed("${_zaya_pkg_dir}/zayad.service" "${_zaya_unit}")

# --- install rules ---------------------------------------------------------------------------
install(FILES "${_zaya_pkg_dir}/zayad.service" "${PROJECT_SOURCE_DIR}/systemd/zayad.socket"
        DESTINATION "${ZAYA_SYSTEMD_UNIT_DIR}" COMPONENT system)
install(FILES "${PROJECT_SOURCE_DIR}/systemd/sysusers.d/zayad.conf"
        DESTINATION lib/sysusers.d COMPONENT system)
install(FILES "${PROJECT_SOURCE_DIR}/systemd/tmpfiles.d/zayad.conf"
        DESTINATION lib/tmpfiles.d COMPONENT system)
install(FILES "${_zaya_pkg_dir}/zayad.toml" DESTINATION "${ZAYA_CONFIG_INSTALL_DIR}"
        PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ COMPONENT system)
install(FILES "${PROJECT_SOURCE_DIR}/systemd/zayad-hip.conf"
        DESTINATION "${CMAKE_INSTALL_DOCDIR}/examples" COMPONENT system)
file(GLOB _zaya_docs "${PROJECT_SOURCE_DIR}/docs/*.md")
if(_zaya_docs)
  install(FILES ${_zaya_docs} DESTINATION "${CMAKE_INSTALL_DOCDIR}" COMPONENT system)
endif()
if(IS_DIRECTORY "${PROJECT_SOURCE_DIR}/models")
  install(DIRECTORY "${PROJECT_SOURCE_DIR}/models/" DESTINATION "${ZAYA_DATA_INSTALL_DIR}/models"
          COMPONENT system PATTERN ".*" EXCLUDE)
endif()

# --- Debian package --------------------------------------------------------------------------
# dpkg keeps an edited /etc/zayad/zayad.toml across upgrades because it is a conffile.
_zaya_write_if_changed("${_zaya_pkg_dir}/conffiles" "${ZAYA_CONFIG_INSTALL_DIR}/zayad.toml\n")

set(CPACK_GENERATOR "DEB")
set(CPACK_PACKAGE_NAME "zayad")
set(CPACK_PACKAGE_VERSION "${PROJECT_VERSION}")
set(CPACK_PACKAGE_VENDOR "zayad developers")
set(CPACK_PACKAGE_CONTACT "zayad developers <zayad@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
    "inference daemon for ZAYA1 mixture-of-experts models with Markovian RSA")
set(CPACK_PACKAGE_DESCRIPTION
    "zayad serves ZAYA1 mixture-of-experts language models over a local ZeroMQ socket, with \
in-engine Markovian recursive self-aggregation (RSA) for test-time compute. It runs under \
systemd (Type=notify, hardened sandbox) and ships the zaya command-line client.")
set(CPACK_PACKAGING_INSTALL_PREFIX "${CMAKE_INSTALL_PREFIX}")
set(CPACK_DEBIAN_FILE_NAME "DEB-DEFAULT")
set(CPACK_DEBIAN_PACKAGE_SECTION "misc")
set(CPACK_DEBIAN_PACKAGE_PRIORITY "optional")
set(CPACK_DEBIAN_PACKAGE_DEPENDS
    "libc6 (>= 2.36), libstdc++6 (>= 12), libzmq5, libsystemd0, libopenblas0, systemd")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "libamdhip64-5")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    "${PROJECT_SOURCE_DIR}/systemd/debian/postinst"
    "${PROJECT_SOURCE_DIR}/systemd/debian/prerm"
    "${PROJECT_SOURCE_DIR}/systemd/debian/postrm"
    "${_zaya_pkg_dir}/conffiles")
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION TRUE)
# Debian ships stripped binaries (RelWithDebInfo ones are ~10x larger with their debug info).
set(CPACK_STRIP_FILES TRUE)
include(CPack)
