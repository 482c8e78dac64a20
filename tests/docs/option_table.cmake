# Included by the checks of the option table (check_options.cmake,
# check_reference.cmake): runs LIST (list_options) and reads FILES (paths
# joined by '|'). Sets
#   rows   the table, one list item a line: name, forms, reload class and
#          default, separated by tabs
#   files  FILES as a CMake list
#   shown  FILES joined by ", ", for messages
#   text   the files' contents one after the other, each ending in a newline,
#          after a newline (so that "\n<start of a line>" finds the first line)
# Stops with an error if list_options fails or prints nothing, or a file is
# missing.
execute_process(COMMAND "${LIST}" OUTPUT_VARIABLE table RESULT_VARIABLE rc)
if(NOT rc EQUAL 0 OR table STREQUAL "")
  message(FATAL_ERROR "${LIST} failed (${rc})")
endif()
string(REPLACE "|" ";" files "${FILES}")
string(REPLACE ";" ", " shown "${files}")
set(text "\n")
foreach(f IN LISTS files)
  if(NOT EXISTS "${f}")
    message(FATAL_ERROR "no file ${f}")
  endif()
  file(READ "${f}" content)
  string(APPEND text "${content}\n")
endforeach()

string(REGEX REPLACE "\n$" "" table "${table}")
string(REPLACE "\n" ";" rows "${table}")
