# Fails when a file lacks an option of the table: every name that
# list_options prints must occur in one of FILES as PATTERN says (@NAME@
# stands for the name).
#   cmake -DLIST=<list_options> -DFILES="a.md|b.md" -DPATTERN="`@NAME@`"
#         -P check_options.cmake
cmake_policy(VERSION 3.18)
include(${CMAKE_CURRENT_LIST_DIR}/option_table.cmake)

set(missing "")
set(count 0)
foreach(row IN LISTS rows)
  string(REPLACE "\t" ";" cols "${row}")
  list(GET cols 0 name)
  list(GET cols 1 forms)
  string(REPLACE "@NAME@" "${name}" want "${PATTERN}")
  string(FIND "${text}" "${want}" at)
  if(at EQUAL -1)
    string(APPEND missing "\n  ${name} (${forms}): no ${want}")
  endif()
  math(EXPR count "${count} + 1")
endforeach()
if(missing)
  message(FATAL_ERROR "options of config.c missing from ${shown}:${missing}")
endif()
message(STATUS "all ${count} options found in ${FILES}")
