# The tests that run the bridge in one form (daemon, or the plugin inside
# mosquitto) against a mosquitto of their own: the integration suites and the
# client libraries' suites (tests/integration, tests/clients, tests/clients_js).

# SB_PRELOAD: the sanitizer runtimes that mosquitto (not instrumented) must
# preload to load a plugin built with them, joined by ':'. ASan first in the
# initial library list, then UBSan (the plugin's other sanitizer runtime, see
# ldd); TSan's runtime cannot be dlopened at all ("cannot allocate memory in
# static TLS block").
function(sb__find_preload)
  set(libs "")
  if(SB_SANITIZE)
    set(libs libasan.so libubsan.so)
  elseif(SB_TSAN)
    set(libs libtsan.so)
  endif()
  set(found "")
  foreach(lib IN LISTS libs)
    execute_process(COMMAND ${CMAKE_C_COMPILER} -print-file-name=${lib}
                    OUTPUT_VARIABLE path OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
    if(IS_ABSOLUTE "${path}" AND EXISTS "${path}")
      list(APPEND found "${path}")
    else()
      message(WARNING "${CMAKE_C_COMPILER} does not know ${lib}: the plugin's integration "
                      "tests run mosquitto without it")
    endif()
  endforeach()
  list(JOIN found ":" found)
  set(SB_PRELOAD "${found}" PARENT_SCOPE)
endfunction()
sb__find_preload()

# sb_add_form_test(<name> <form> COMMAND <command>... WORKING_DIRECTORY <dir>
#                  [ENV <var=value>...] [MOSQUITTO_PUB] [SANITIZED <var=value>...])
# Adds the test <name> of the bridge in <form> (daemon or plugin), labelled
# integration and <form>, with 300 s to run. Its environment: ENV, then what
# the harnesses start the bridge and mosquitto with (SB_FORM, SB_BRIDGE_BIN,
# SB_PLUGIN, SB_MOSQUITTO, and SB_MOSQUITTO_PUB with MOSQUITTO_PUB), SB_PRELOAD
# in the plugin form when there is one, and SANITIZED in a sanitizer build
# (SB_SANITIZE or SB_TSAN).
function(sb_add_form_test name form)
  cmake_parse_arguments(PARSE_ARGV 2 arg "MOSQUITTO_PUB" "WORKING_DIRECTORY" "COMMAND;ENV;SANITIZED")
  add_test(NAME ${name} COMMAND ${arg_COMMAND} WORKING_DIRECTORY ${arg_WORKING_DIRECTORY})
  set(env ${arg_ENV} SB_FORM=${form} SB_BRIDGE_BIN=$<TARGET_FILE:mqtt-sse-bridge>
          SB_PLUGIN=$<TARGET_FILE:mosquitto_sse> SB_MOSQUITTO=${SB_MOSQUITTO_BROKER})
  if(arg_MOSQUITTO_PUB)
    list(APPEND env SB_MOSQUITTO_PUB=${SB_MOSQUITTO_PUB})
  endif()
  if(form STREQUAL "plugin" AND SB_PRELOAD)
    list(APPEND env SB_PRELOAD=${SB_PRELOAD})
  endif()
  if(SB_SANITIZE OR SB_TSAN)
    list(APPEND env ${arg_SANITIZED})
  endif()
  set_tests_properties(${name} PROPERTIES
    LABELS "integration;${form}"
    TIMEOUT 300
    ENVIRONMENT "${env}")
endfunction()
