# Runs one libFuzzer target for SECONDS over its seed corpus (read-only,
# SEEDS) and its working corpus in the build directory (WORK, where new
# inputs go). Fails with the reproducer's place when the fuzzer finds one.
#   cmake -DFUZZER=... -DSEEDS=... -DWORK=... -DARTIFACTS=... [-DDICT=...]
#         -DSECONDS=20 -P run_fuzzer.cmake
file(REMOVE_RECURSE "${ARTIFACTS}")
file(MAKE_DIRECTORY "${WORK}" "${ARTIFACTS}")
set(args -max_total_time=${SECONDS} -rss_limit_mb=2048 -timeout=10 -print_final_stats=1
         -artifact_prefix=${ARTIFACTS}/)
if(DICT)
  list(APPEND args -dict=${DICT})
endif()
execute_process(COMMAND "${FUZZER}" ${args} "${WORK}" "${SEEDS}" RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  file(GLOB found "${ARTIFACTS}/*")
  string(REPLACE ";" "\n  " found "${found}")
  message(FATAL_ERROR "${FUZZER} failed (${rc}); reproducer:\n  ${found}\n"
                      "Run it again with: ${FUZZER} <reproducer>")
endif()
