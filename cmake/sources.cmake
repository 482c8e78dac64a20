# sb_find_sources(<out> <file>...): the paths of core and server sources named
# without their folder (core/ first, then server/), for the unit tests and
# the fuzz targets, which compile only the modules they exercise.
set(SB_SRC_DIRS ${PROJECT_SOURCE_DIR}/core ${PROJECT_SOURCE_DIR}/server)
function(sb_find_sources out)
  set(found)
  foreach(s IN LISTS ARGN)
    if(EXISTS ${PROJECT_SOURCE_DIR}/core/${s})
      list(APPEND found ${PROJECT_SOURCE_DIR}/core/${s})
    elseif(EXISTS ${PROJECT_SOURCE_DIR}/server/${s})
      list(APPEND found ${PROJECT_SOURCE_DIR}/server/${s})
    else()
      message(FATAL_ERROR "no source ${s} in core/ or server/")
    endif()
  endforeach()
  set(${out} ${found} PARENT_SCOPE)
endfunction()
