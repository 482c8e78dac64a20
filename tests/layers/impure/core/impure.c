/* A core file that breaks the layering twice: cmake/check_layers.cmake must
 * refuse it (tests/layers/CMakeLists.txt). Never built. */
#include <microhttpd.h>
#include <pthread.h>

#include "server.h"
