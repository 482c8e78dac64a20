# Fails when FILE has MAX lines or more (as wc -l counts them).
#   cmake -DFILE=README.md -DMAX=200 -P check_lines.cmake
cmake_policy(VERSION 3.18)
if(NOT EXISTS "${FILE}")
  message(FATAL_ERROR "no file ${FILE}")
endif()
file(READ "${FILE}" content)
string(REGEX MATCHALL "\n" newlines "${content}")
list(LENGTH newlines n)
if(NOT n LESS MAX)
  message(FATAL_ERROR "${FILE} has ${n} lines; keep it under ${MAX} (the reference goes to docs/)")
endif()
message(STATUS "${FILE}: ${n} lines, under ${MAX}")
