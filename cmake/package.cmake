# CPack: `cpack -G DEB` (or plain `cpack`) in a build directory makes
# mqtt-sse-bridge_<version>-<revision>_<arch>.deb from the install() rules of
# cmake/install.cmake, installed with the prefix /usr whatever the build
# tree's own prefix. Needs dpkg-dev (dpkg-shlibdeps); CPack writes the
# archive itself, with root as the owner of every file. Check with lintian.
set(CPACK_GENERATOR "DEB")
set(CPACK_PACKAGE_NAME "mqtt-sse-bridge")
set(CPACK_PACKAGE_VENDOR "mqtt-sse-bridge")
set(CPACK_PACKAGE_VERSION "${PROJECT_VERSION}")
set(CPACK_PACKAGE_CONTACT "${SB_DEB_MAINTAINER}")
set(CPACK_PACKAGING_INSTALL_PREFIX "/usr")
set(CPACK_STRIP_FILES ON)
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "MQTT to Server-Sent Events bridge, daemon and Mosquitto plugin")

# Debian's version is <upstream>-<revision>: SB_DEB_VERSION and
# SB_DEB_MAINTAINER are set in cmake/install.cmake (changelog.Debian has them).
string(REGEX REPLACE "^(.*)-([^-]*)$" "\\1" CPACK_DEBIAN_PACKAGE_VERSION "${SB_DEB_VERSION}")
string(REGEX REPLACE "^(.*)-([^-]*)$" "\\2" CPACK_DEBIAN_PACKAGE_RELEASE "${SB_DEB_VERSION}")
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "${SB_DEB_MAINTAINER}")
set(CPACK_DEBIAN_PACKAGE_SECTION "net")
set(CPACK_DEBIAN_PACKAGE_PRIORITY "optional")
# The shared libraries' packages come from dpkg-shlibdeps; adduser for the
# maintainer scripts.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "adduser")
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "mosquitto")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "mosquitto-clients")
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION "Backends publish sync events over MQTT (topic <prefix>/<userId>/<channel>,
a JSON payload); browsers receive them over Server-Sent Events. The bridge
relays each event to every SSE connection of the event's user, except the
connections of the device that caused it, with JWT authentication, a replay
buffer for Last-Event-ID, presence records and Prometheus metrics.
.
This package holds both forms: the daemon mqtt-sse-bridge, a client of any
MQTT broker run by systemd as the user mqtt-sse-bridge, and the Mosquitto
2.0 plugin mosquitto_sse.so, which serves SSE from inside the broker.")

# Maintainer scripts and conffiles, mode 0755 and 0644 as Debian wants.
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION TRUE)
file(WRITE ${CMAKE_BINARY_DIR}/packaging/conffiles "/etc/mqtt-sse-bridge/mqtt-sse-bridge.conf\n")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
  ${PROJECT_SOURCE_DIR}/packaging/postinst
  ${PROJECT_SOURCE_DIR}/packaging/prerm
  ${PROJECT_SOURCE_DIR}/packaging/postrm
  ${CMAKE_BINARY_DIR}/packaging/conffiles)

set(CPACK_SOURCE_IGNORE_FILES "/build[^/]*/" "/\\\\.git/" "/node_modules/")
include(CPack)
