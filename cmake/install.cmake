# install() rules: `cmake --install build` puts every file where Debian puts
# them. With CMAKE_INSTALL_PREFIX=/usr (as cpack -G DEB always installs):
#
#   /usr/bin/mqtt-sse-bridge                          the daemon
#   /usr/lib/<multiarch>/mosquitto_sse.so             the plugin, beside Debian's
#                                                     mosquitto_dynamic_security.so
#   /etc/mqtt-sse-bridge/mqtt-sse-bridge.conf         the daemon's configuration
#   /lib/systemd/system/mqtt-sse-bridge.service       its systemd unit
#   /usr/share/mqtt-sse-bridge/web/                   web/ (also built into the server)
#   /usr/share/doc/mqtt-sse-bridge/                   README.md, copyright,
#                                                     changelog.Debian.gz, examples/
#   /usr/share/man/man1/mqtt-sse-bridge.1.gz          the man page
#   /usr/share/lintian/overrides/mqtt-sse-bridge      (the plugin has no SONAME)
#
# The configuration and the unit live outside the prefix under /usr (as
# GNUInstallDirs' special case has it); their place and the paths written in
# them are decided when installing (cmake/install_layout.cmake), so that
# `cmake --install build --prefix /usr` and cpack give the Debian layout from
# any build tree, and another prefix (the default /usr/local) gets a layout
# that is consistent within that prefix.
include(GNUInstallDirs)

# Debian's Mosquitto keeps its plugins in the multiarch library directory
# (dpkg -L mosquitto: /usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so).
if(CMAKE_LIBRARY_ARCHITECTURE)
  set(_sb_plugindir "lib/${CMAKE_LIBRARY_ARCHITECTURE}")
else()
  set(_sb_plugindir "${CMAKE_INSTALL_LIBDIR}")
endif()
set(SB_INSTALL_PLUGINDIR "${_sb_plugindir}" CACHE STRING
    "Where mosquitto_sse.so goes, relative to the prefix (Debian: beside mosquitto_dynamic_security.so)")
set(SB_INSTALL_WEBDIR "${CMAKE_INSTALL_DATADIR}/mqtt-sse-bridge/web")
set(SB_SYSTEMD_UNITDIR "" CACHE PATH
    "Where the systemd unit goes; empty: /lib/systemd/system under the prefix /usr (Debian 12), else <prefix>/lib/systemd/system")

install(TARGETS mqtt-sse-bridge RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(TARGETS mosquitto_sse LIBRARY DESTINATION ${SB_INSTALL_PLUGINDIR})

# The same files the server embeds (server/CMakeLists.txt), for web_root.
install(DIRECTORY ${PROJECT_SOURCE_DIR}/web/ DESTINATION ${SB_INSTALL_WEBDIR}
        FILES_MATCHING PATTERN "*.html" PATTERN "*.js" PATTERN "*.css" PATTERN "*.svg"
                       PATTERN "*.ico")
install(FILES ${PROJECT_SOURCE_DIR}/clients/js/src/client/sse-client.js
              ${PROJECT_SOURCE_DIR}/clients/js/src/client/device.js
        DESTINATION ${SB_INSTALL_WEBDIR})

# The man page and Debian's changelog, compressed as Debian wants them
# (gzip -9n: no name, no time stamp, so the package is reproducible).
find_program(SB_GZIP gzip REQUIRED)
set(SB_DEB_VERSION "${PROJECT_VERSION}-1" CACHE STRING "Debian version of the package (upstream-revision)")
set(SB_DEB_MAINTAINER "mqtt-sse-bridge maintainers <maintainers@users.noreply.b-seed-0f4da948.example>"
    CACHE STRING "Maintainer of the Debian package (control file and changelog.Debian)")
set(_sb_pkgdir ${CMAKE_BINARY_DIR}/packaging)
configure_file(${PROJECT_SOURCE_DIR}/packaging/changelog.Debian.in ${_sb_pkgdir}/changelog.Debian @ONLY)
# The man page's option list is made from the option table (core/config.h)
# by man_options, with the words of packaging/options.man.
add_executable(sb_man_options ${PROJECT_SOURCE_DIR}/packaging/man_options.c)
target_link_libraries(sb_man_options PRIVATE sbcore)
configure_file(${PROJECT_SOURCE_DIR}/packaging/mqtt-sse-bridge.1.in ${_sb_pkgdir}/mqtt-sse-bridge.1.in @ONLY)
add_custom_command(OUTPUT ${_sb_pkgdir}/mqtt-sse-bridge.1
  COMMAND sb_man_options ${_sb_pkgdir}/mqtt-sse-bridge.1.in ${PROJECT_SOURCE_DIR}/packaging/options.man
          ${_sb_pkgdir}/mqtt-sse-bridge.1
  DEPENDS sb_man_options ${_sb_pkgdir}/mqtt-sse-bridge.1.in ${PROJECT_SOURCE_DIR}/packaging/options.man
  COMMENT "Writing the man page's options from the option table")
add_custom_command(OUTPUT ${_sb_pkgdir}/mqtt-sse-bridge.1.gz
  COMMAND ${SB_GZIP} -9nc ${_sb_pkgdir}/mqtt-sse-bridge.1 > ${_sb_pkgdir}/mqtt-sse-bridge.1.gz
  DEPENDS ${_sb_pkgdir}/mqtt-sse-bridge.1
  COMMENT "Compressing the man page")
add_custom_command(OUTPUT ${_sb_pkgdir}/changelog.Debian.gz
  COMMAND ${SB_GZIP} -9nc ${_sb_pkgdir}/changelog.Debian > ${_sb_pkgdir}/changelog.Debian.gz
  DEPENDS ${_sb_pkgdir}/changelog.Debian
  COMMENT "Compressing changelog.Debian")
add_custom_target(sb_install_docs ALL DEPENDS
  ${_sb_pkgdir}/mqtt-sse-bridge.1.gz ${_sb_pkgdir}/changelog.Debian.gz)

install(FILES ${_sb_pkgdir}/mqtt-sse-bridge.1.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
install(FILES ${PROJECT_SOURCE_DIR}/README.md ${PROJECT_SOURCE_DIR}/packaging/copyright
              ${_sb_pkgdir}/changelog.Debian.gz
        DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(FILES ${PROJECT_SOURCE_DIR}/conf/mosquitto.acl DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples)
# The reference (configuration, protocol, operations, architecture, migration)
install(DIRECTORY ${PROJECT_SOURCE_DIR}/docs/ DESTINATION ${CMAKE_INSTALL_DOCDIR}/docs
        FILES_MATCHING PATTERN "*.md")
# The plugin beside Debian's has no SONAME (it is loaded by path): said once
# for lintian.
install(FILES ${PROJECT_SOURCE_DIR}/packaging/lintian-overrides
        DESTINATION ${CMAKE_INSTALL_DATADIR}/lintian/overrides RENAME mqtt-sse-bridge)

# /etc/mqtt-sse-bridge/mqtt-sse-bridge.conf, the systemd unit and the
# plugin's example mosquitto.conf snippet: placed and filled in at install
# time, from the prefix in force then.
install(CODE "
  set(SB_SOURCE_DIR \"${PROJECT_SOURCE_DIR}\")
  set(SB_BINDIR \"${CMAKE_INSTALL_BINDIR}\")
  set(SB_PLUGINDIR \"${SB_INSTALL_PLUGINDIR}\")
  set(SB_WEBDIR \"${SB_INSTALL_WEBDIR}\")
  set(SB_DOCDIR \"${CMAKE_INSTALL_DOCDIR}\")
  set(SB_SYSTEMD_UNITDIR \"${SB_SYSTEMD_UNITDIR}\")
  set(SB_WORKDIR \"${_sb_pkgdir}/layout\")
  include(\"${PROJECT_SOURCE_DIR}/cmake/install_layout.cmake\")")
