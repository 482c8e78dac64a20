# Run by `cmake --install` (and cpack) through cmake/install.cmake: installs
# the files whose place lies outside the prefix under /usr, with the paths in
# them made to match the prefix in force now (CMAKE_INSTALL_PREFIX; cpack
# installs with /usr into a staging DESTDIR, which file(INSTALL) honours).
#
#   prefix /usr:   /etc/mqtt-sse-bridge/, /lib/systemd/system/ (Debian 12)
#   other prefix:  <prefix>/etc/mqtt-sse-bridge/, <prefix>/lib/systemd/system/
#
# The sources under conf/ are written with the Debian paths; for another
# prefix those paths are rewritten. In: SB_SOURCE_DIR, SB_BINDIR,
# SB_PLUGINDIR, SB_WEBDIR, SB_DOCDIR (relative to the prefix, or absolute),
# SB_SYSTEMD_UNITDIR (empty: as above), SB_WORKDIR (scratch, in the build).
string(REGEX REPLACE "/+$" "" _prefix "${CMAKE_INSTALL_PREFIX}")
if(_prefix STREQUAL "/usr" OR _prefix STREQUAL "")
  set(_usr "/usr")
  set(_etc "/etc")
  set(_unitdir "/lib/systemd/system")
else()
  set(_usr "${_prefix}")
  set(_etc "${_prefix}/etc")
  set(_unitdir "${_prefix}/lib/systemd/system")
endif()
if(SB_SYSTEMD_UNITDIR)
  set(_unitdir "${SB_SYSTEMD_UNITDIR}")
endif()

function(_sb_full var rel)
  if(IS_ABSOLUTE "${rel}")
    set(${var} "${rel}" PARENT_SCOPE)
  else()
    set(${var} "${_usr}/${rel}" PARENT_SCOPE)
  endif()
endfunction()
_sb_full(_bindir "${SB_BINDIR}")
_sb_full(_plugindir "${SB_PLUGINDIR}")
_sb_full(_webdir "${SB_WEBDIR}")
_sb_full(_docdir "${SB_DOCDIR}")

# Debian path in the sources -> path under this prefix
set(_map
  "/usr/bin/mqtt-sse-bridge" "${_bindir}/mqtt-sse-bridge"
  "/etc/mqtt-sse-bridge" "${_etc}/mqtt-sse-bridge"
  "/usr/share/mqtt-sse-bridge/web" "${_webdir}"
  "/usr/share/doc/mqtt-sse-bridge" "${_docdir}")

function(_sb_layout_file src out)
  file(READ "${src}" text)
  set(map ${_map})
  while(map)
    list(POP_FRONT map from to)
    string(REPLACE "${from}" "${to}" text "${text}")
  endwhile()
  string(REPLACE "@SB_PLUGIN_PATH@" "${_plugindir}/mosquitto_sse.so" text "${text}")
  file(WRITE "${out}" "${text}")
endfunction()

file(MAKE_DIRECTORY "${SB_WORKDIR}")
_sb_layout_file("${SB_SOURCE_DIR}/conf/mqtt-sse-bridge.conf" "${SB_WORKDIR}/mqtt-sse-bridge.conf")
_sb_layout_file("${SB_SOURCE_DIR}/conf/mqtt-sse-bridge.service" "${SB_WORKDIR}/mqtt-sse-bridge.service")
_sb_layout_file("${SB_SOURCE_DIR}/packaging/mosquitto-sse.conf" "${SB_WORKDIR}/mosquitto.conf")

file(INSTALL "${SB_WORKDIR}/mqtt-sse-bridge.conf" DESTINATION "${_etc}/mqtt-sse-bridge"
     FILE_PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
file(INSTALL "${SB_WORKDIR}/mqtt-sse-bridge.service" DESTINATION "${_unitdir}"
     FILE_PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
file(INSTALL "${SB_WORKDIR}/mosquitto.conf" DESTINATION "${_docdir}/examples"
     FILE_PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
