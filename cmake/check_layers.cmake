# Checks that each layer includes only what it may. Run with cmake -P:
#   cmake -DROOT=<tree> [-DSTAMP=<file>] -P check_layers.cmake
# Layers, lowest first: core (pure), server, daemon and plugin (side by side).
# The include paths of the CMake targets already keep a layer from reaching
# the headers of the layers above it; this also refuses, in the core, the
# system headers of what the core must not do (sockets, threads, event loops,
# libmicrohttpd, libmosquitto), and in the server the broker's headers.
# Fails naming the file and the include.
if(NOT ROOT)
  message(FATAL_ERROR "check_layers: ROOT is not set")
endif()

# <layer>: project folders it may include from, and system headers it may not.
set(core_may core)
set(core_not "microhttpd\\.h|mosquitto[a-z_]*\\.h|pthread\\.h|threads\\.h|sys/socket\\.h|sys/epoll\\.h|sys/eventfd\\.h|sys/select\\.h|poll\\.h|netdb\\.h|netinet/.*|signal\\.h")
set(server_may core server)
set(server_not "mosquitto[a-z_]*\\.h")
set(daemon_may core server daemon)
set(daemon_not "mosquitto_broker\\.h|mosquitto_plugin\\.h")
set(plugin_may core server plugin)
set(plugin_not "^$")

set(errors "")
foreach(layer core server daemon plugin)
  file(GLOB files "${ROOT}/${layer}/*.c" "${ROOT}/${layer}/*.h")
  foreach(f IN LISTS files)
    file(STRINGS "${f}" lines REGEX "^[ \t]*#[ \t]*include")
    foreach(line IN LISTS lines)
      if(line MATCHES "<([^>]+)>")
        set(h "${CMAKE_MATCH_1}")
        if(h MATCHES "^(${${layer}_not})$")
          string(APPEND errors "  ${f}: includes <${h}>, which the ${layer} layer must not use\n")
        endif()
      elseif(line MATCHES "\"([^\"]+)\"")
        set(h "${CMAKE_MATCH_1}")
        get_filename_component(hname "${h}" NAME)
        set(found "")
        foreach(dir IN LISTS ${layer}_may)
          if(EXISTS "${ROOT}/${dir}/${hname}" AND NOT h MATCHES "\\.\\.")
            set(found "${dir}")
          endif()
        endforeach()
        if(NOT found)
          string(APPEND errors "  ${f}: includes \"${h}\", not a header of ${${layer}_may}\n")
        endif()
      endif()
    endforeach()
  endforeach()
endforeach()

if(errors)
  message(FATAL_ERROR "Layer check failed (core < server < daemon, plugin):\n${errors}")
endif()
if(STAMP)
  file(WRITE "${STAMP}" "ok\n")
endif()
