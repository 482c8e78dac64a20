#include "webfiles.h"

#include <string.h>

const struct sb_webfile *sb_webfile_find(const char *name)
{
  for (const struct sb_webfile *f = sb__webfiles; f->name; f++)
    if (strcmp(f->name, name) == 0)
      return f;
  return NULL;
}
